"""Generate an image from an exported polyiap pipeline folder with stock diffusers only.

    python examples/stock_diffusers.py --pipeline runs/demo-export --prompt "一隻熊" --seed 5 --output bear.png

The script never imports polyiap, and prints whether anything else imported it, so it shows that the
exported folder works where polyiap is not installed. It reads ``polyiap_export.json`` in the folder
for the ``from_pretrained`` options (``trust_remote_code`` for SDXL) and the call options (PixArt's
``max_sequence_length`` and ``clean_caption``) that reproduce `polyiap generate`, and prints them.
"""

import argparse
import json
import sys
from pathlib import Path

import diffusers

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
    parser.add_argument("--run-scheduler", action="store_true",
                        help="sample with the run's scheduler recorded in polyiap_export.json instead of the folder's")
    parser.add_argument("--output", required=True, help="PNG file to write")
    parser.add_argument("--compare", default=None, help="an image (from `polyiap generate`) to compare pixels with")
    args = parser.parse_args()

    record_file = Path(args.pipeline) / "polyiap_export.json"
    record = json.loads(record_file.read_text(encoding="utf-8")) if record_file.is_file() else {}
    load_options, call_options = record.get("load_options", {}), record.get("call_options", {})
    print(f"from_pretrained options: {load_options}")
    print(f"call options: {call_options}")
    pipe = DiffusionPipeline.from_pretrained(args.pipeline, **load_options)
    pipe.set_progress_bar_config(disable=True)
    if args.run_scheduler:
        scheduler = record["scheduler"]
        print(f"run scheduler: {scheduler['class']} with {scheduler['config']}")
        pipe.scheduler = getattr(diffusers, scheduler["class"]).from_config(pipe.scheduler.config, **scheduler["config"])
    # SDXL folders written by polyiap export have the student as text_encoder_2 and no first text encoder.
    tokenizer = pipe.tokenizer if pipe.tokenizer is not None else pipe.tokenizer_2
    text_encoder = pipe.text_encoder if pipe.text_encoder is not None else pipe.text_encoder_2
    tokens = tokenizer(args.prompt)["input_ids"]
    print(f"pipeline: {type(pipe).__name__}, scheduler: {type(pipe.scheduler).__name__}")
    print(f"text_encoder: {type(text_encoder).__name__}, "
          f"use_attention_mask={getattr(text_encoder.config, 'use_attention_mask', False)}")
    print(f"tokenizer: {type(tokenizer).__name__}, model_max_length={tokenizer.model_max_length}")
    print(f"normalized prompt: {tokenizer.backend_tokenizer.normalizer.normalize_str(args.prompt)!r}")
    print(f"prompt tokens: {tokenizer.convert_ids_to_tokens(tokens)}")

    if args.negative_prompt is not None:
        call_options = {**call_options, "negative_prompt": args.negative_prompt}
    image = pipe(args.prompt, num_inference_steps=args.steps, guidance_scale=args.guidance,
                 generator=torch.Generator().manual_seed(args.seed), **call_options).images[0]
    image.save(args.output)
    print(f"image: {image.size[0]}x{image.size[1]} written to {args.output}")
    if args.compare:
        with Image.open(args.compare) as other:
            same = np.array_equal(np.asarray(image.convert("RGB")), np.asarray(other.convert("RGB")))
        print(f"same pixels as {args.compare}: {same}")
    print(f"polyiap imported: {'polyiap' in sys.modules}")


if __name__ == "__main__":
    main()
