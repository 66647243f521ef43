"""A pretrained student initialisation: a small BERT trained with masked language modelling on captions."""

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)


def pretrain_masked_lm(captions: list[str], output: Path, hidden_size: int = 128, layers: int = 2,
                       max_length: int = 24, steps: int = 300, batch_size: int = 64, seed: int = 0) -> Path:
    """Train a BERT masked language model on ``captions`` and save it with its tokenizer to ``output``.

    The architecture equals the recipe's ``tiny`` student, so the two initialisations differ only in
    their weights. The folder is written under a temporary name and renamed when complete.
    """
    from transformers import BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling

    from polyiap.encoders import TINY_VOCAB_SIZE
    from polyiap.tokenizer_build import train_wordpiece

    tokenizer = train_wordpiece(captions, TINY_VOCAB_SIZE, max_length)
    torch.manual_seed(seed)
    model = BertForMaskedLM(BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden_size, max_position_embeddings=max_length,
        pad_token_id=tokenizer.pad_token_id))
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    encoded = tokenizer(captions, padding="max_length", max_length=max_length, truncation=True)["input_ids"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    model.train()
    for step in range(steps):
        batch = collator([{"input_ids": encoded[i]} for i in rng.integers(0, len(encoded), size=batch_size)])
        loss = model(input_ids=batch["input_ids"], labels=batch["labels"],
                     attention_mask=(batch["input_ids"] != tokenizer.pad_token_id).long()).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            logger.info("masked-LM step %d: loss %.4f", step, loss.item())

    staging = output.with_name(output.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.bert.save_pretrained(staging)  # the encoder alone: the student has no use for the masked-LM head
    tokenizer.save_pretrained(staging)
    if output.exists():
        shutil.rmtree(output)
    os.replace(staging, output)
    return output
