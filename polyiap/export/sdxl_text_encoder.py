"""A polyiap student as the ``text_encoder_2`` of a stock ``StableDiffusionXLPipeline`` (remote code).

This file is copied into exported SDXL folders and loaded by diffusers with ``trust_remote_code=True``,
so it imports only torch and transformers, never polyiap.

``StableDiffusionXLPipeline.encode_prompt`` (diffusers 0.42) calls each text encoder as
``encoder(input_ids, output_hidden_states=True)`` without an attention mask. It reads the sequence from
``hidden_states[-2]`` and the pooled embedding from ``output[0]`` when that is 2-D. With ``text_encoder``
and ``tokenizer`` set to None it uses ``text_encoder_2`` alone, and the added time embedding width comes
from ``config.projection_dim``. The student's sequence is a linear projection after its encoder's last
layer, and its pooled embedding projects the masked mean of that layer. No stock transformers class
returns either in those places, so this class does.
"""

from dataclasses import dataclass

import torch
import transformers
from torch import nn
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ModelOutput


class PolyiapSDXLTextEncoderConfig(PretrainedConfig):
    """The student's encoder config plus its projection, pooled head and padding convention.

    Args:
        encoder: the wrapped transformers encoder's config as a dict (``model_type`` and ``architectures`` set).
        context_dim: width of the sequence the UNet reads (2048 for SDXL).
        projection_dim: width of the pooled embedding; the SDXL pipeline reads this attribute.
        has_projection: whether a linear projection maps the encoder's width to ``context_dim``.
        use_attention_mask: whether padding tokens are masked inside the encoder.
        pad_token_id: the tokenizer's padding id, from which the padding mask is rebuilt.
    """

    model_type = "polyiap_sdxl_text_encoder"

    def __init__(self, encoder: dict | None = None, context_dim: int = 2048, projection_dim: int = 1280,
                 has_projection: bool = True, use_attention_mask: bool = True, pad_token_id: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        self.pad_token_id = pad_token_id
        self.encoder = dict(encoder or {})
        self.context_dim = context_dim
        self.projection_dim = projection_dim
        self.has_projection = has_projection
        self.use_attention_mask = use_attention_mask


@dataclass
class PolyiapSDXLTextEncoderOutput(ModelOutput):
    """``text_embeds`` comes first, so ``output[0]`` is the 2-D pooled embedding the pipeline looks for."""

    text_embeds: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class PolyiapSDXLTextEncoder(PreTrainedModel):
    """A transformers encoder, a linear projection to the UNet's context width and a masked-mean pooled head."""

    config_class = PolyiapSDXLTextEncoderConfig
    base_model_prefix = "polyiap_student"

    def __init__(self, config: PolyiapSDXLTextEncoderConfig):
        super().__init__(config)
        settings = dict(config.encoder)
        architecture = settings["architectures"][0]
        encoder_config = AutoConfig.for_model(**settings)
        self.encoder = getattr(transformers, architecture)(encoder_config)
        width = getattr(encoder_config, "hidden_size", None) or encoder_config.d_model
        self.projection = nn.Linear(width, config.context_dim) if config.has_projection else None
        self.pooled_head = nn.Linear(width, config.projection_dim)
        self.post_init()

    def _init_weights(self, module):
        """Leave weights as constructed: every weight is loaded from the exported checkpoint."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None,
                **kwargs) -> PolyiapSDXLTextEncoderOutput:
        """Return the pooled embedding first and the sequence as ``last_hidden_state`` and ``hidden_states[-2]``.

        The SDXL pipeline passes no ``attention_mask``, so the padding mask is rebuilt as every position
        whose id is not the pad token id. That equals the tokenizer's mask when padding is its only use of
        that id, which the export checks.
        """
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        encoder_mask = attention_mask if self.config.use_attention_mask else None
        hidden = self.encoder(input_ids=input_ids, attention_mask=encoder_mask).last_hidden_state  # (B, L, width)
        sequence = self.projection(hidden) if self.projection is not None else hidden  # (B, L, context_dim)
        weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
        mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        pooled = self.pooled_head(mean)  # (B, projection_dim)
        # Two entries, so that hidden_states[-2] (what the pipeline reads without clip_skip) is the sequence.
        return PolyiapSDXLTextEncoderOutput(text_embeds=pooled, last_hidden_state=sequence,
                                            hidden_states=(sequence, sequence))
