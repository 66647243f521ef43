"""Shared fixtures: offline mode, one tiny backbone per session, tiny student folders."""

import json
import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
DEMO_TRIPLETS = REPO / "recipes" / "data" / "coco-cc" / "triplets.jsonl"


@pytest.fixture(scope="session", autouse=True)
def polyiap_cache(tmp_path_factory) -> Path:
    """A session-wide cache folder so the tiny backbone is built once and never in the user's home."""
    cache = tmp_path_factory.mktemp("polyiap-cache")
    os.environ["POLYIAP_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def tiny_backbone_dir(polyiap_cache) -> Path:
    from polyiap.backbones.tiny import tiny_backbone_folder

    return tiny_backbone_folder()


@pytest.fixture(scope="session")
def tiny_backbone(tiny_backbone_dir):
    from polyiap.backbones import load_backbone

    return load_backbone("sd1", str(tiny_backbone_dir))


@pytest.fixture(scope="session")
def demo_rows() -> list[dict]:
    return [json.loads(line) for line in DEMO_TRIPLETS.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="session")
def small_triplets(tmp_path_factory, demo_rows) -> Path:
    """A JSONL triplet file of 8 shipped photos (40 captions) with absolute image paths."""
    folder = tmp_path_factory.mktemp("triplets")
    images = sorted({row["image"] for row in demo_rows})[:8]
    lines = [json.dumps({**row, "image": str(DEMO_TRIPLETS.parent / row["image"])}, ensure_ascii=False)
             for row in demo_rows if row["image"] in images]
    path = folder / "triplets.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def bert_student_dir(tmp_path_factory, demo_rows) -> Path:
    """A tiny BERT encoder and WordPiece tokenizer saved with ``save_pretrained``, as a hub checkpoint would be."""
    from transformers import BertConfig, BertModel

    from polyiap.tokenizer_build import train_wordpiece

    folder = tmp_path_factory.mktemp("bert-student")
    tokenizer = train_wordpiece([row["zh"] for row in demo_rows], 2000, 77)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=48, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=96, max_position_embeddings=80, pad_token_id=tokenizer.pad_token_id)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A demo run trained for two steps: a complete run folder with a student, made once per session."""
    from typer.testing import CliRunner

    from polyiap.cli.app import app

    run = tmp_path_factory.mktemp("trained") / "run"
    result = CliRunner().invoke(app, ["transfer", "--lang", "zh", "--recipe", "demo", "--output", str(run),
                                      "--set", "train.max_steps=2", "--set", "data.heldout_images=4",
                                      "--set", "samples.num_prompts=0"])
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture(scope="session")
def random_scorers(tmp_path_factory, demo_rows) -> dict[str, Path]:
    """Randomly initialised scorers: torch-fidelity's full-size InceptionV3 and a small Chinese CLIP."""
    from polyiap.eval.clip_score import write_random_chinese_clip
    from polyiap.eval.fid import write_random_inception

    folder = tmp_path_factory.mktemp("scorers")
    return {"inception": write_random_inception(folder / "inception.pth"),
            "clip": write_random_chinese_clip(folder / "clip", [row["zh"] for row in demo_rows])}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's shared real data folder; tests that need it skip when it is absent."""
    folder = REPO.parent / "shared" / "data"
    if not folder.is_dir():
        pytest.skip(f"shared data folder {folder} not found; these tests read real captions from it")
    return folder


@pytest.fixture(scope="session")
def tiny_mt_dir(tmp_path_factory, demo_rows) -> Path:
    """A tiny MarianMT English-to-Japanese model trained for seconds on the shipped en/ja caption pairs.

    It memorises the 111 pairs well enough that its outputs are Japanese text, which passes the filters
    of `polyiap prepare`. Saved with ``save_pretrained`` like a hub checkpoint.
    """
    import torch
    from transformers import MarianConfig, MarianMTModel

    from polyiap.tokenizer_build import train_wordpiece

    pairs = [(row["en"], row["ja"]) for row in demo_rows if "ja" in row]
    tokenizer = train_wordpiece([english for english, _ in pairs] + [ja for _, ja in pairs], 4000, 128)
    config = MarianConfig(vocab_size=len(tokenizer), d_model=64, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
                          decoder_ffn_dim=128, max_position_embeddings=128, dropout=0.0,
                          pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id,
                          forced_eos_token_id=tokenizer.sep_token_id, bos_token_id=tokenizer.cls_token_id,
                          decoder_start_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = MarianMTModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    inputs = tokenizer([english for english, _ in pairs], padding=True, return_tensors="pt")
    labels = tokenizer([ja for _, ja in pairs], padding=True, return_tensors="pt")["input_ids"]
    labels[labels == tokenizer.pad_token_id] = -100
    generator = torch.Generator().manual_seed(0)
    for _ in range(400):
        batch = torch.randperm(len(pairs), generator=generator)[:32]
        loss = model(input_ids=inputs["input_ids"][batch], attention_mask=inputs["attention_mask"][batch],
                     labels=labels[batch]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    folder = tmp_path_factory.mktemp("tiny-mt")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_photo_shards(folder: Path, demo_rows: list[dict], shards: int, damage=None) -> Path:
    """Write the shipped photos as a WebDataset folder (jpg, txt, json per photo), one English caption each.

    ``damage(index, image_bytes)`` may return replacement bytes, or None to leave the image out.
    """
    import io
    import tarfile

    firsts = [row for row in demo_rows if "ja" in row]
    folder.mkdir(parents=True, exist_ok=True)
    per_shard = -(-len(firsts) // shards)
    for shard in range(shards):
        with tarfile.open(folder / f"{shard:05d}.tar", "w") as archive:
            for index in range(shard * per_shard, min((shard + 1) * per_shard, len(firsts))):
                row = firsts[index]
                image = (DEMO_TRIPLETS.parent / row["image"]).read_bytes()
                if damage is not None:
                    image = damage(index, image)
                members = {"txt": row["en"].encode(), "json": json.dumps({"caption": row["en"]}).encode()}
                if image is not None:
                    members["jpg"] = image
                for extension, data in members.items():
                    info = tarfile.TarInfo(f"{index:09d}.{extension}")
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
    return folder


@pytest.fixture(scope="session")
def photo_shards(tmp_path_factory, demo_rows) -> Path:
    """The 111 shipped photos with their first English caption, as four img2dataset-style tar shards."""
    return write_photo_shards(tmp_path_factory.mktemp("photos-wds") / "wds", demo_rows, 4)


@pytest.fixture(scope="session")
def prepared_ja(tmp_path_factory, photo_shards, tiny_mt_dir) -> Path:
    """`polyiap prepare --lang ja` output of the photo shards, translated by the tiny MT model."""
    from typer.testing import CliRunner

    from polyiap.cli.app import app

    output = tmp_path_factory.mktemp("prepared") / "ja"
    result = CliRunner().invoke(app, ["prepare", "--lang", "ja", "--source", str(photo_shards), "--output",
                                      str(output), "--translation-model", str(tiny_mt_dir), "--num-beams", "1"])
    assert result.exit_code == 0, result.output
    return output
