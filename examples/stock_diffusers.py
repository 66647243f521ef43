"""Generate an image from an exported polyiap pipeline folder with stock diffusers only.

    python examples/stock_diffusers.py --pipeline runs/demo-export --prompt "一隻熊" --seed 5 --output bear.png

The script never imports polyiap, and prints whether anything else imported it, so it shows that the
exported folder works where polyiap is not installed.
"""

import argparse
import sys

import numpy as np
import torch
from diffusers import DiffusionPipeline
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", required=True, help="folder written by `polyiap export`")
    parser.add_argument("--prompt", required=True, help="prompt in the student's language")
    parser.add_argument("--negative-prompt", default=None, help="negative prompt in the student's language")
    parser.add_argument("--seed", type=int, default=0, help="seed of the CPU generator")
    parser.add_argument("--steps", type=int, default=20, help="sampling steps")
    parser.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
    parser.add_argument("--output", required=True, help="PNG file to write")
    parser.add_argument("--compare", default=None, help="an image (from `polyiap generate`) to compare pixels with")
    args = parser.parse_args()

    pipe = DiffusionPipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    tokens = pipe.tokenizer(args.prompt)["input_ids"]
    print(f"pipeline: {type(pipe).__name__}")
    print(f"text_encoder: {type(pipe.text_encoder).__name__}, "
          f"use_attention_mask={getattr(pipe.text_encoder.config, 'use_attention_mask', False)}")
    print(f"tokenizer: {type(pipe.tokenizer).__name__}, model_max_length={pipe.tokenizer.model_max_length}")
    print(f"normalized prompt: {pipe.tokenizer.backend_tokenizer.normalizer.normalize_str(args.prompt)!r}")
    print(f"prompt tokens: {pipe.tokenizer.convert_ids_to_tokens(tokens)}")

    image = pipe(args.prompt, negative_prompt=args.negative_prompt, num_inference_steps=args.steps,
                 guidance_scale=args.guidance, generator=torch.Generator().manual_seed(args.seed)).images[0]
    image.save(args.output)
    print(f"image: {image.size[0]}x{image.size[1]} written to {args.output}")
    if args.compare:
        with Image.open(args.compare) as other:
            same = np.array_equal(np.asarray(image.convert("RGB")), np.asarray(other.convert("RGB")))
        print(f"same pixels as {args.compare}: {same}")
    print(f"polyiap imported: {'polyiap' in sys.modules}")


if __name__ == "__main__":
    main()
