"""Prompt handling shared by generate, eval and export: normalisation, truncation warnings, encoding.

Prompts are normalised by the language pack's rules saved with the student and padded to the
student's training length, so the student receives the same token sequences as in training.
"""

import logging

import torch

from polyiap.backbones import Backbone, TextConditioning
from polyiap.encoders import StudentEncoder, check_unconditional
from polyiap.packs import Normalization, normalize_text

logger = logging.getLogger(__name__)


def student_normalization(student: StudentEncoder) -> Normalization:
    """Return the normalisation rules the student was trained with."""
    return Normalization(**student.metadata.get("normalization", {}))


def count_dropped_tokens(student: StudentEncoder, prompts: list[str]) -> list[int]:
    """Return, per prompt, how many tokens truncation to the student's length drops (0 when it fits)."""
    lengths = [len(ids) for ids in student.tokenizer(list(prompts), truncation=False)["input_ids"]]
    return [max(0, length - student.max_length) for length in lengths]


class PromptEncoder:
    """Normalises, checks and encodes prompts the way the student was trained.

    The first call of `normalize` or `encode` that meets prompts longer than the student's length logs
    one warning for all of them. Set ``warn_truncation`` to False to check without warning.
    """

    def __init__(self, student: StudentEncoder, backbone: Backbone, unconditional: str):
        check_unconditional(student.max_length, backbone.max_length, unconditional)
        self.student, self.backbone, self.unconditional = student, backbone, unconditional
        self.warn_truncation = True
        self.rules = student_normalization(student)

    def normalize(self, prompts: list[str]) -> list[str]:
        normalized = [normalize_text(p, self.rules) for p in prompts]
        if self.warn_truncation:
            self._warn_truncation(normalized)
        return normalized

    def _warn_truncation(self, prompts: list[str]) -> None:
        dropped = [count for count in count_dropped_tokens(self.student, prompts) if count]
        if dropped:
            logger.warning("%d prompt(s) exceed the student's %d tokens; dropped up to %d tokens at the end",
                           len(dropped), self.student.max_length, max(dropped))
            self.warn_truncation = False

    @torch.no_grad()
    def encode(self, prompts: list[str], negative: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (prompt_embeds, negative_prompt_embeds) for the pipeline."""
        positive, uncond = self.encode_conditioning(prompts, negative)
        return positive.sequence, uncond.sequence

    @torch.no_grad()
    def encode_conditioning(self, prompts: list[str], negative: str) -> tuple[TextConditioning, TextConditioning]:
        """Return the conditioning of ``prompts`` and of the negative prompt (or the unconditional one)."""
        # One normalize call for prompts and negative prompt, so that truncation warns once.
        normalized = self.normalize(list(prompts) + [negative])
        positive = self.student.encode(normalized[:-1])
        if negative or self.unconditional == "student":
            uncond = self.student.encode([normalized[-1]] * len(prompts))
        else:
            uncond = self.backbone.teacher_unconditional(len(prompts))
        return positive, uncond.to(positive.sequence.device, positive.sequence.dtype)

    def pipeline_inputs(self, prompts: list[str], negative: str) -> dict:
        """Return the keyword arguments that give the pipeline the conditioning of ``prompts``."""
        return {**self.backbone.pipeline_inputs(*self.encode_conditioning(prompts, negative)),
                **self.backbone.pipeline_options()}
