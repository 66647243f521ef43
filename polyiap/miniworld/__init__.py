"""The miniature world: rendered shape scenes, multilingual captions, a tiny trained teacher and a judge.

It is small enough to train on a CPU and goes through the same backbone, student, pivot and sampling
code as a real Stable Diffusion model, so its results test the method rather than a mock of it.
"""

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
TEACHER_FOLDER = ASSETS / "teacher"  # the shipped teacher, a diffusers SD 1.x folder
JUDGE_FOLDER = ASSETS / "judge"
