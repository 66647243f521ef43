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
