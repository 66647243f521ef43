"""Pipeline folders for SDXL (the student as remote-code ``text_encoder_2``) and PixArt (a stock text encoder).

SD 1.x and SD 2.x are exported by `polyiap.export.pipeline.export_stable_diffusion`.
"""

import shutil
from pathlib import Path

import torch

from polyiap.backbones import Backbone
from polyiap.encoders import StudentEncoder
from polyiap.export import sdxl_text_encoder
from polyiap.export.pipeline import (PIPELINE_EXPORTERS, ExportedLayout, check_context_width, copy_components,
                                     write_model_index, write_student_components, write_tokenizer_component)
from polyiap.export.text_encoder import CHECK_PROMPTS, ExportError

SDXL_MODULE = "polyiap_sdxl_text_encoder"  # file name of the remote code in text_encoder_2/, without ".py"
SDXL_REMOTE_CODE_NOTE = (
    "the SDXL pipeline reads its sequence from hidden_states[-2] and its pooled embedding from output[0] of a "
    "text encoder that it calls without an attention mask; no stock transformers class computes the student's "
    "projected sequence and masked-mean pooled embedding there, so text_encoder_2 is a small module shipped in "
    "the folder: load it with DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)")


def export_sdxl(student: StudentEncoder, backbone: Backbone, folder: Path) -> ExportedLayout:
    """Write an SDXL pipeline whose only text encoder is the student, as remote-code ``text_encoder_2``.

    The first text encoder and tokenizer are left out (None), so the pipeline reads the whole 2048-wide
    sequence and the pooled embedding from ``text_encoder_2``.
    """
    check_context_width(student, backbone)
    if student.pooled_head is None or student.pooled_dim != backbone.pooled_dim:
        raise ExportError(f"SDXL needs a pooled embedding {backbone.pooled_dim} wide, and the student's pooled head is "
                          f"{student.pooled_dim or 'missing'}; export a student trained for this backbone")
    index = copy_components(Path(backbone.source), folder,
                            {"text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"})
    encoder = sdxl_student_encoder(student)
    encoder.save_pretrained(folder / "text_encoder_2")
    shutil.copy2(sdxl_text_encoder.__file__, folder / "text_encoder_2" / f"{SDXL_MODULE}.py")
    tokenizer_class, notes = write_tokenizer_component(student, folder / "tokenizer_2")
    force_zeros, zeros_notes = empty_prompt_zeros(student, backbone)
    index.update({"text_encoder": [None, None], "tokenizer": [None, None],
                  "text_encoder_2": [SDXL_MODULE, type(encoder).__name__],
                  "tokenizer_2": ["transformers", tokenizer_class], "force_zeros_for_empty_prompt": force_zeros})
    write_model_index(folder, index)
    return ExportedLayout([SDXL_REMOTE_CODE_NOTE, *notes, *zeros_notes], load_options={"trust_remote_code": True})


def sdxl_student_encoder(student: StudentEncoder) -> torch.nn.Module:
    """Return the student as a `PolyiapSDXLTextEncoder`, checked against the student on `CHECK_PROMPTS`."""
    config = student.encoder.config.to_dict()
    config["architectures"] = [type(student.encoder).__name__]
    wrapper_config = sdxl_text_encoder.PolyiapSDXLTextEncoderConfig(
        encoder=config, context_dim=student.context_dim, projection_dim=student.pooled_dim,
        has_projection=student.projection is not None, use_attention_mask=student.use_attention_mask,
        pad_token_id=student.tokenizer.pad_token_id,
        architectures=["PolyiapSDXLTextEncoder"],
        auto_map={"AutoConfig": f"{SDXL_MODULE}.PolyiapSDXLTextEncoderConfig",
                  "AutoModel": f"{SDXL_MODULE}.PolyiapSDXLTextEncoder"})
    model = sdxl_text_encoder.PolyiapSDXLTextEncoder(wrapper_config).eval()
    missing, unexpected = model.encoder.load_state_dict(student.encoder.state_dict(), strict=False)
    # A student encoder without a pooler leaves the rebuilt encoder's pooler unused, with random weights.
    missing = [key for key in missing if not key.startswith("pooler.")]
    if missing or unexpected:
        raise ExportError(f"cannot rebuild the student's {config.get('model_type')} encoder from its config: missing "
                          f"{missing}, unexpected {unexpected}; export needs a standard transformers encoder")
    with torch.no_grad():
        if student.projection is not None:
            model.projection.load_state_dict(student.projection.state_dict())
        model.pooled_head.load_state_dict(student.pooled_head.state_dict())
    check_sdxl_output(student, model)
    return model


@torch.no_grad()
def check_sdxl_output(student: StudentEncoder, model: torch.nn.Module) -> None:
    """Raise `ExportError` when ``model``, called as the SDXL pipeline calls it, differs from the student."""
    was_training = student.training
    student.eval()
    tokens = student.tokenize(CHECK_PROMPTS)
    expected = student(**tokens, conditioning=True)
    student.train(was_training)
    output = model(tokens["input_ids"], output_hidden_states=True)
    pairs = {"sequence": (output.hidden_states[-2], expected.sequence), "pooled": (output[0], expected.pooled)}
    for name, (actual, wanted) in pairs.items():
        if actual.shape != wanted.shape or not torch.allclose(actual, wanted, rtol=1e-5, atol=1e-5):
            raise ExportError(f"the exported SDXL text encoder's {name} differs from the student's. The usual cause "
                              "is a tokenizer that pads with a token it also uses in text (such as CLIP's end-of-text "
                              "token), so the padding mask rebuilt from the pad token id is wrong")


def empty_prompt_zeros(student: StudentEncoder, backbone: Backbone) -> tuple[bool, list[str]]:
    """Return the folder's ``force_zeros_for_empty_prompt`` and a note on it.

    With the flag set, the SDXL pipeline uses zeros for an omitted negative prompt instead of encoding "".
    A student trained on the empty prompt gets the flag cleared, so the pipeline encodes "" with it as
    `polyiap generate` does. A run that uses the teacher's unconditional embedding keeps the base model's
    flag; `polyiap generate` then uses zeros as well when the flag is set.
    """
    base_flag = bool(getattr(backbone, "force_zeros_for_empty_prompt", True))
    if student.metadata.get("unconditional", "student") == "student":
        return False, []
    if base_flag:
        return True, ["force_zeros_for_empty_prompt stays true: without a negative prompt the pipeline uses zeros, "
                      "as `polyiap generate` does for this run; an explicit negative prompt \"\" is encoded by the "
                      "student and differs"]
    return False, []


def export_pixart(student: StudentEncoder, backbone: Backbone, folder: Path) -> ExportedLayout:
    """Write a PixArt pipeline with the student as a stock ``text_encoder`` that reads the padding mask."""
    check_context_width(student, backbone)
    if not student.use_attention_mask:
        raise ExportError("the PixArt pipelines always pass the padding mask to their text encoder, and this "
                          "student was trained without it (student.attention_mask: false), so a stock pipeline "
                          "would encode prompts differently; retrain with student.attention_mask: true")
    index = copy_components(Path(backbone.source), folder, {"text_encoder", "tokenizer"})
    encoder_class, tokenizer_class, *notes = write_student_components(student, folder)
    index["text_encoder"] = ["transformers", encoder_class]
    index["tokenizer"] = ["transformers", tokenizer_class]
    write_model_index(folder, index)
    notes += lowercase_notes(student, folder / "tokenizer")
    call_options = {"clean_caption": False, "max_sequence_length": student.max_length,
                    "use_resolution_binning": False}
    notes.append(f"call the pipeline with {call_options}: the PixArt pipelines pad prompts to max_sequence_length "
                 f"tokens (120 by default, the student uses {student.max_length}), clean_caption rewrites prompts "
                 "when bs4 and ftfy are installed, and `polyiap generate` samples without resolution binning")
    return ExportedLayout(notes, call_options=call_options)


def lowercase_notes(student: StudentEncoder, tokenizer_folder: Path) -> list[str]:
    """Return a note when lower-casing prompts, as the PixArt pipelines do before tokenising, changes the tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    prompts = CHECK_PROMPTS + ["一隻熊 站在ＲＥＤ car 旁", "A Red Car"]
    options = {"padding": "max_length", "max_length": student.max_length, "truncation": True}
    as_typed = tokenizer(prompts, **options)["input_ids"]
    lowered = tokenizer([prompt.lower().strip() for prompt in prompts], **options)["input_ids"]
    if as_typed == lowered:
        return []
    return ["the PixArt pipelines lower-case prompts before tokenising, and the student's tokenizer is case-sensitive, "
            "so prompts with capital letters encode differently than in `polyiap generate`"]


PIPELINE_EXPORTERS.register("sdxl")(export_sdxl)
PIPELINE_EXPORTERS.register("tiny-sdxl")(export_sdxl)
PIPELINE_EXPORTERS.register("pixart")(export_pixart)
PIPELINE_EXPORTERS.register("tiny-pixart")(export_pixart)
