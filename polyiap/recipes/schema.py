"""Schema of a training recipe (``recipes/<name>.yaml``): what to train and how."""

from typing import Literal

from pydantic import Field

from polyiap.config import StrictModel


class BackboneConfig(StrictModel):
    """The frozen English model."""

    family: str = Field("sd1", description="backbone family, see `polyiap backbones list`; `auto` reads it from "
                                            "the source folder's model_index.json")
    source: str | None = Field(None, description="local diffusers folder or hub id; unused by `tiny`")
    revision: str | None = None


class StudentConfig(StrictModel):
    """The new text encoder that is trained."""

    init: str = Field("tiny", description="local folder or hub id of a transformers encoder, or `tiny`")
    kind: str = Field("auto", description="encoder loader, see `polyiap encoders list`; auto picks by model type")
    max_length: int | None = Field(None, gt=1, description="tokens per caption; default: the language pack's")
    attention_mask: bool = Field(True, description="pass the padding mask to the student encoder")
    random_init: bool = Field(False, description="keep the architecture of `init` but start from random weights")
    gradient_checkpointing: bool = Field(
        False, description="recompute the student's activations in the backward pass: less memory, more time")
    tiny_hidden_size: int = Field(64, gt=0)
    tiny_layers: int = Field(2, gt=0)


class DataConfig(StrictModel):
    """Location and columns of the (image, English caption, target caption) triplets."""

    source: str | None = Field(None, description="triplet file (JSONL or CSV) or folder of WebDataset shards "
                                                 "(`polyiap prepare`); relative to the recipe file")
    format: Literal["auto", "jsonl", "csv"] = "auto"
    image_field: str = "image"
    english_field: str = "en"
    target_field: str | None = Field(None, description="column of the target caption; default: the language code")
    resolution: int | None = Field(None, gt=0, description="image side in pixels; default: the backbone's")
    heldout_images: int | float = Field(0.1, ge=0, description="share (< 1) or count (>= 1) of images held out")
    heldout_max_samples: int = Field(
        512, gt=0, description="held-out triplets evaluated; their latents and teacher embeddings stay in memory")
    empty_prompt_rate: float = Field(0.1, ge=0, le=1, description="share of samples trained as empty prompts")
    latents_cache: str | None = Field(None, description="folder written by `polyiap cache latents` for this data")
    teacher_cache: str | None = Field(None, description="folder written by `polyiap cache teacher` for this data")


class LossConfig(StrictModel):
    """The training objective."""

    name: str = Field("pivot", description="`pivot` (IAP) or `denoise` (the plain-loss baseline)")
    compare: Literal["pre_out", "post_out"] = "pre_out"
    queries: Literal["shared", "two-pass"] = Field(
        "shared", description="shared: one denoiser pass, the student attends from the teacher's queries; "
                              "two-pass: a second, student-conditioned pass with gradients through the denoiser")
    fused_kv: bool = Field(True, description="compute the student's keys and values of all layers in one product")
    pooled_weight: float = Field(
        1.0, ge=0, description="weight of the MSE between the student's and the teacher's pooled embeddings, added "
                               "to the pivot loss for backbones with a pooled embedding (SDXL)")


class TrainConfig(StrictModel):
    """Optimisation and bookkeeping."""

    max_steps: int = Field(1000, gt=0, description="optimizer steps")
    batch_size: int = Field(32, gt=0, description="samples per optimizer step over all processes")
    gradient_accumulation_steps: int = Field(1, gt=0)
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float | None = 1.0
    lr_scheduler: Literal["constant", "constant_with_warmup", "linear", "cosine"] = "constant_with_warmup"
    warmup_steps: int = Field(0, ge=0)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    seed: int = 0
    num_workers: int = Field(0, ge=0, description="data loader worker processes")
    prefetch_factor: int = Field(2, gt=0, description="batches each data loader worker loads ahead")
    compile: bool = Field(False, description="run the student through torch.compile")
    log_every: int = Field(10, gt=0)
    eval_every: int = Field(100, gt=0)
    checkpoint_every: int = Field(500, gt=0)
    checkpoints_total_limit: int | None = Field(3, gt=0)


class SamplesConfig(StrictModel):
    """Progress samples; the sampler settings depend on the backbone, so they live in the recipe."""

    every: int = Field(0, ge=0, description="steps between sample grids; 0 writes one grid at the end only")
    scheduler: Literal["pndm", "ddim", "euler", "dpm++"] = "pndm"
    steps: int = Field(50, gt=0)
    guidance: float = Field(7.5, ge=0)
    unconditional: Literal["student", "teacher"] = Field(
        "student", description="where the classifier-free guidance embedding comes from")
    num_prompts: int = Field(4, ge=0)
    seed: int = 0


class Recipe(StrictModel):
    """A complete training recipe."""

    name: str
    description: str = ""
    backbone: BackboneConfig = BackboneConfig()
    student: StudentConfig = StudentConfig()
    data: DataConfig = DataConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    samples: SamplesConfig = SamplesConfig()
