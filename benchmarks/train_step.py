"""Time and memory of one pivot training step: shared queries against two passes, with and without caches.

Every case runs in a fresh subprocess with randomly initialised models built from config:

* ``sd15``: the Stable Diffusion 1.5 UNet, VAE and CLIP ViT-L/14 text encoder architectures, and a
  BERT-base-sized student (12 layers, 768 wide);
* ``tiny``: polyiap's tiny SD 1.x backbone and the demo recipe's small student.

A step is what training does per micro-batch. It encodes the images with the VAE (or reads a cached
posterior) and adds noise. It encodes the English captions with the teacher and the target captions
with the student. Then it computes the pivot loss, backpropagates and takes an AdamW step.

Memory is given twice, from the resident set size (CPU) or allocated CUDA memory. ``above frozen`` is
the peak over the whole run minus the memory of the frozen weights alone: student, its gradients and
optimizer state, and activations. ``per step`` is the peak during the timed steps minus the memory
after the warm-up step, so it leaves out what stays resident between steps.

Usage::

    python benchmarks/train_step.py --config sd15 --latent 64 32 --batch 1 --steps 3 --output docs/bench.json
"""

import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    # name: (queries, cached latents, fused key/value projection)
    "two-pass": ("two-pass", False, True),
    "shared": ("shared", False, True),
    "shared, per-layer K/V": ("shared", False, False),
    "two-pass + cached latents": ("two-pass", True, True),
    "shared + cached latents": ("shared", True, True),
}
CAPTIONS = ["a brown bear sitting on the grass", "a small boat at sunset by the sea",
            "a bowl of fruit on a wooden table", "a man skiing down a snowy slope"]
TARGETS = ["一只坐在草地上的棕熊", "海边日落时分的一艘小船", "木桌上放着一碗水果", "一个男人在雪坡上滑雪"]


def build(config: str, latent: int, device: str):
    """Return (backbone, student) with random weights for ``config`` at ``latent`` x ``latent`` latents."""
    backbone = build_backbone(config, latent, device)
    return backbone, build_student(config, backbone, device)


def build_student(config: str, backbone, device: str):
    """Return a randomly initialised student: BERT-base for ``sd15``, the demo's small BERT for ``tiny``."""
    import torch
    from transformers import BertConfig, BertModel

    from polyiap.encoders import StudentEncoder
    from polyiap.tokenizer_build import train_wordpiece

    torch.manual_seed(1)
    if config == "tiny":
        encoder = BertModel(BertConfig(vocab_size=4000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=128, max_position_embeddings=64))
        return StudentEncoder(encoder, train_wordpiece(TARGETS, 4000, 32), backbone.context_dim, 32).to(device)
    return StudentEncoder(BertModel(BertConfig()), train_wordpiece(TARGETS, 30522, 77), 768, 77).to(device)


def build_backbone(config: str, latent: int, device: str):
    """Return the frozen backbone with random weights: SD 1.5's architecture or polyiap's tiny one."""
    import torch

    from polyiap.backbones.sd1 import SD1Backbone
    from polyiap.tokenizer_build import train_clip_bpe

    torch.manual_seed(0)
    if config == "tiny":
        from polyiap.backbones import load_backbone

        return load_backbone("tiny", None).to(device)

    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = UNet2DConditionModel(sample_size=latent, cross_attention_dim=768)  # the SD 1.x block layout
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2,
                        sample_size=latent * 8)
    text_encoder = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                                num_attention_heads=12, max_position_embeddings=77,
                                                projection_dim=768))
    tokenizer = train_clip_bpe(CAPTIONS, 1000, 77)
    scheduler = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
                 "beta_schedule": "scaled_linear", "prediction_type": "epsilon"}
    backbone = SD1Backbone(Path("random-sd15"), tokenizer, text_encoder, vae, unet, scheduler)
    for module in backbone.frozen_modules().values():
        module.requires_grad_(False).eval()
    return backbone.to(device)


class Step:
    """One training step of the real pivot objective with the given options."""

    def __init__(self, backbone, student, queries: str, cached: bool, fused: bool, batch: int, device: str):
        import torch

        from polyiap.pivot import PivotContext

        self.backbone, self.student, self.cached, self.batch, self.device = backbone, student, cached, batch, device
        self.context = PivotContext(queries=queries, fused_kv=fused)
        self.optimizer = torch.optim.AdamW(student.parameters(), lr=1e-5)
        self.scheduler = backbone.noise_scheduler()
        side = backbone.resolution
        dtype = next(backbone.latent_encoder().parameters()).dtype
        self.pixels = (torch.rand(batch, 3, side, side, device=device) * 2 - 1).to(dtype)
        self.posterior = backbone.encode_posterior(self.pixels)
        self.english = [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)]
        self.targets = [TARGETS[i % len(TARGETS)] for i in range(batch)]

    def __call__(self) -> None:
        import torch

        from polyiap.backbones import TextConditioning
        from polyiap.pivot import LossInputs, PivotLoss

        if self.cached:
            latents = self.backbone.latents_from_posterior(*self.posterior)
        else:
            latents = self.backbone.encode_images(self.pixels)
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, 1000, (self.batch,), device=self.device)
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        tokens = {k: v.to(self.device) for k, v in self.student.tokenize(self.targets).items()}
        with torch.no_grad():
            teacher = self.backbone.encode_teacher(self.english)
        inputs = LossInputs(latents, noise, timesteps, noisy, teacher, TextConditioning(self.student(**tokens)))
        loss = PivotLoss(self.backbone, self.context)(inputs)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def resident_mb() -> float:
    if sys.platform != "linux":
        return float("nan")
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    """Release free heap pages and start a new peak measurement from the current resident size."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")


def memory_mark(device: str) -> float:
    """Return the memory in use now and start a new peak measurement from it, in MiB."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    reset_peak()
    return resident_mb()


def memory_peak(device: str) -> float:
    """Return the peak memory since the last `memory_mark`, in MiB."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    return peak_mb()


def run_case(args) -> dict:
    """Measure one case in this process and return its figures."""
    import torch

    from polyiap.pivot import pivot_processors

    queries, cached, fused = CASES[args.case]
    backbone = build_backbone(args.config, args.latent, args.device)
    dtype = getattr(torch, args.dtype)
    if dtype != torch.float32:
        backbone.to(args.device, dtype)
    frozen = memory_mark(args.device)  # the resident frozen weights
    student = build_student(args.config, backbone, args.device)
    step = Step(backbone, student, queries, cached, fused, args.batch, args.device)
    autocast = torch.autocast(args.device, dtype=dtype, enabled=dtype != torch.float32)
    with pivot_processors(backbone.cross_attention_layers(), step.context), autocast:
        step()  # warm-up: allocates the optimizer state
        above_frozen = memory_peak(args.device) - frozen
        base = memory_mark(args.device)
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            step()
            if args.device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        peak = memory_peak(args.device)
    latent = backbone.unet.config.sample_size
    return {"case": args.case, "config": args.config, "latent": latent, "batch": args.batch, "dtype": args.dtype,
            "step_s": statistics.median(times), "times_s": times, "frozen_mb": frozen, "resident_mb": base,
            "step_memory_mb": peak - base, "above_frozen_mb": max(above_frozen, peak - frozen)}


def flop_counts(config: str, latent: int, batch: int) -> dict:
    """Count forward FLOPs of each part once, with torch's FLOP counter on the CPU."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    backbone, student = build(config, latent, "cpu")
    step = Step(backbone, student, "shared", False, True, batch, "cpu")
    counts = {}

    def count(name, function):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            function()
        counts[name] = counter.get_total_flops()

    latents = backbone.encode_images(step.pixels)
    timesteps = torch.full((batch,), 500)
    teacher = backbone.encode_teacher(step.english)
    tokens = student.tokenize(step.targets)
    count("vae_encoder", lambda: backbone.encode_images(step.pixels))
    count("teacher_text_encoder", lambda: backbone.encode_teacher(step.english))
    count("student", lambda: student(**tokens))
    count("unet", lambda: backbone.denoise(latents, timesteps, teacher))

    from polyiap.backbones import TextConditioning
    from polyiap.pivot import PivotContext, pivot_processors

    context = PivotContext()
    states = student(**tokens).detach()
    with pivot_processors(backbone.cross_attention_layers(), context):
        def shared_pass():
            context.begin(states, grad=False)
            backbone.denoise(latents, timesteps, teacher)
            context.end()
        count("unet_with_student_branch", shared_pass)
    counts["student_branch"] = counts.pop("unet_with_student_branch") - counts["unet"]
    del TextConditioning
    return counts


def bounds(flops: dict) -> dict:
    """Analytic speed ratios: backward of a frozen network (input gradients only) costs about one forward,
    backward through trained weights about two forwards."""
    unet, vae, teacher = flops["unet"], flops["vae_encoder"], flops["teacher_text_encoder"]
    student = 3 * flops["student"]  # forward + backward with weight gradients
    branch = 3 * flops["student_branch"]
    two_pass = vae + teacher + student + 3 * unet
    shared = vae + teacher + student + unet + branch
    return {"two_pass_over_shared": two_pass / shared,
            "two_pass_over_shared_cached": two_pass / (shared - vae)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=["tiny", "sd15"], default="tiny")
    parser.add_argument("--latent", type=int, nargs="+", default=[64], help="latent side(s); 64 is 512 px")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                        help="frozen weights' type; other than float32 the step runs under autocast")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--output", type=Path, help="write all figures as JSON here")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--flops", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case or args.flops:
        args.latent = args.latent[0]
        result = flop_counts(args.config, args.latent, args.batch) if args.flops else run_case(args)
        print(json.dumps(result))
        return
    report = {"machine": _machine(), "command": " ".join(sys.argv), "runs": []}
    for latent in args.latent:
        rows = [_subprocess(args, latent, ["--case", case]) for case in args.cases]
        flops = _subprocess(args, latent, ["--flops"]) if args.device == "cpu" else None
        report["runs"].append({"latent": rows[0]["latent"], "rows": rows, "flops": flops,
                               "bounds": bounds(flops) if flops else None})
        _print_run(report["runs"][-1])
    if args.output:
        args.output.write_text(json.dumps(report, indent=1) + "\n")


def _subprocess(args, latent: int, extra: list[str]) -> dict:
    command = [sys.executable, __file__, "--config", args.config, "--latent", str(latent), "--batch",
               str(args.batch), "--steps", str(args.steps), "--device", args.device, "--dtype", args.dtype, *extra]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}  # large blocks go back to the system when freed
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def _print_run(run: dict) -> None:
    rows = {row["case"]: row for row in run["rows"]}
    reference = rows.get("two-pass")
    side = run["rows"][0]["latent"]
    print(f"latents {side}x{side}, batch {run['rows'][0]['batch']}")
    for name, row in rows.items():
        line = (f"  {name:28s} {row['step_s']:8.3f} s/step  above frozen {row['above_frozen_mb']:8.0f} MiB"
                f"  per step {row['step_memory_mb']:8.0f} MiB")
        if reference and name != "two-pass":
            line += (f"   speed-up {reference['step_s'] / row['step_s']:.2f}x"
                     f"   memory {row['above_frozen_mb'] / reference['above_frozen_mb']:.2f}x"
                     f" / {row['step_memory_mb'] / reference['step_memory_mb']:.2f}x")
        print(line)
    if run["bounds"]:
        print("  analytic two-pass/shared: {two_pass_over_shared:.2f}x, with cached latents "
              "{two_pass_over_shared_cached:.2f}x".format(**run["bounds"]))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _machine() -> dict:
    import torch

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


if __name__ == "__main__":
    main()
