"""Overhead of `polyiap generate` and `polyiap eval` over calling the diffusers pipeline directly.

Both sides use the tiny SD 1.x backbone, one randomly initialised student, the same prompts, sampler,
steps, guidance and per-prompt generators. The direct side encodes the prompts with the student and
calls the pipeline once; polyiap adds prompt normalisation, the truncation check and its own batching.

Usage::

    python benchmarks/generate_speed.py --prompts 16 --steps 20 --repeats 5
"""

import argparse
import statistics
import time

import torch

PROMPTS = ["一只坐在草地上的棕熊", "海边日落时分的一艘小船", "桌子上放着一碗水果", "一个男人在雪地里滑雪",
           "两只狗在雪地里玩耍", "一辆红色的公共汽车停在路边", "厨房里有一个白色的冰箱", "一个女孩在放风筝"]


def main() -> None:
    from transformers import BertConfig, BertModel

    from polyiap.backbones import load_backbone
    from polyiap.encoders import StudentEncoder
    from polyiap.eval.systems import StudentSystem
    from polyiap.generate import SamplerSettings, generate_images
    from polyiap.tokenizer_build import train_wordpiece

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(0)
    backbone = load_backbone("tiny", None)
    encoder = BertModel(BertConfig(vocab_size=2000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=128, max_position_embeddings=64))
    student = StudentEncoder(encoder, train_wordpiece(PROMPTS, 2000, 32), backbone.context_dim, 32,
                             metadata={"normalization": {"opencc": "t2s"}}).eval()
    settings = SamplerSettings("pndm", args.steps, 7.5, "student")
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.prompts)]
    seeds = list(range(len(prompts)))
    pipeline = backbone.pipeline("pndm")
    pipeline.set_progress_bar_config(disable=True)
    system = StudentSystem(student, backbone, settings)

    @torch.no_grad()
    def direct():
        positive = student.encode(prompts).sequence
        negative = student.encode([""] * len(prompts)).sequence
        generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        pipeline(prompt_embeds=positive, negative_prompt_embeds=negative, num_inference_steps=args.steps,
                 guidance_scale=7.5, generator=generators, height=64, width=64)

    cases = {"diffusers pipeline, direct": direct,
             "polyiap generate": lambda: generate_images(student, backbone, prompts, settings, "", 0, 1),
             "polyiap eval (StudentSystem)": lambda: system.generate(prompts, seeds)}
    times = {name: [] for name in cases}
    for function in cases.values():
        function()  # warm-up
    for _ in range(args.repeats):  # interleaved, so drifting machine load affects every case alike
        for name, function in cases.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    reference = statistics.median(times["diffusers pipeline, direct"])
    print(f"{args.prompts} prompts, {args.steps} PNDM steps, tiny backbone, median of {args.repeats}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:30s} {median:7.3f} s   {median / reference:.3f}x")


if __name__ == "__main__":
    main()
