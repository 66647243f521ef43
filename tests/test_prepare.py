"""`polyiap prepare`: translation, filters, manifest, resume, damaged sources, and training on its shards."""

import json
import tarfile

import pytest
from typer.testing import CliRunner

from polyiap.cli.app import app
from polyiap.data.prepare import PrepareOptions, prepare
from polyiap.data.shards import TarSamples
from polyiap.errors import DataError
from polyiap.packs import load_pack

from tests.conftest import DEMO_TRIPLETS, write_photo_shards

runner = CliRunner()


def read_manifest(folder):
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


class StubTranslator:
    """Returns fixed outputs per English caption, so the filters can be tested without a model."""

    def __init__(self, outputs):
        self.outputs = outputs
        self.calls = 0

    def translate(self, captions):
        self.calls += 1
        return [self.outputs(caption) for caption in captions]


def run_stub(monkeypatch, source, output, outputs, **options):
    stub = StubTranslator(outputs)
    monkeypatch.setattr("polyiap.data.prepare._load_translator", lambda *args: stub)
    manifest = prepare(load_pack("ja"), source, output, PrepareOptions(**options))
    return manifest, stub


def test_prepare_writes_triplet_shards(prepared_ja):
    manifest = read_manifest(prepared_ja)
    assert manifest["read"] == 111
    assert manifest["samples"] + sum(manifest["dropped"].values()) == 111
    assert manifest["samples"] >= 100
    assert [s["file"] for s in manifest["shards"]] == [f"{i:06d}.tar" for i in range(4)]


def test_prepared_sample_members(prepared_ja):
    sample = next(iter(TarSamples(prepared_ja / "000000.tar")))
    metadata = json.loads(sample["json"])
    assert {"jpg", "en.txt", "ja.txt", "json"} <= set(sample)
    assert metadata["ja"] == sample["ja.txt"].decode()
    assert " " not in metadata["ja"]  # the ja pack removes spaces between Japanese characters
    assert any("\u3040" <= char <= "\u30ff" for char in metadata["ja"])


def test_transfer_trains_on_prepared_shards(prepared_ja, tmp_path):
    run = tmp_path / "run"
    result = runner.invoke(app, ["transfer", "--lang", "ja", "--recipe", "demo", "--data", str(prepared_ja),
                                 "--output", str(run), "--set", "train.max_steps=3", "--set", "train.log_every=1",
                                 "--set", "train.eval_every=3", "--set", "samples.num_prompts=0"])
    assert result.exit_code == 0, result.output
    assert (run / "student" / "student.json").is_file()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("heldout_pivot_loss" in record for record in metrics)
    assert [r["step"] for r in metrics if "train_loss" in r] == [1, 2, 3]
    assert (run / "shards-read.tsv").read_text().strip()


def test_filters_count_each_reason(monkeypatch, photo_shards, tmp_path):
    def outputs(caption):
        if caption.startswith("A"):
            return caption  # an untranslated copy
        if caption.startswith("a"):
            return ""
        if caption.startswith("T"):
            return "長" * 400
        return "同じ翻訳"
    manifest, _ = run_stub(monkeypatch, photo_shards, tmp_path / "out", outputs)
    dropped = manifest["dropped"]
    assert dropped["untranslated (same as the English)"] > 0
    assert dropped["empty translation"] > 0
    assert dropped["translation too long"] > 0
    assert manifest["samples"] > 0
    assert manifest["samples"] + sum(dropped.values()) == manifest["read"]


def test_duplicates_dropped(monkeypatch, tmp_path, demo_rows):
    source = tmp_path / "rows.jsonl"
    photo = str(DEMO_TRIPLETS.parent / demo_rows[0]["image"])
    lines = [json.dumps({"image": photo, "en": text}) for text in ("A bear.", "A bear!", "A dog.")]
    source.write_text("\n".join(lines) + "\n")
    manifest, _ = run_stub(monkeypatch, source, tmp_path / "out", lambda c: "クマ" if "bear" in c else "犬")
    assert manifest["dropped"] == {"duplicate (same image and translation)": 1}
    assert manifest["samples"] == 2


def test_damaged_source_finishes(monkeypatch, tmp_path, demo_rows):
    # 6 of 111 photos (5.4 %) are truncated, not images at all, or missing from their sample.
    damage = {3: lambda b: b[:len(b) // 3], 40: lambda b: b[:200], 77: lambda b: b"not a jpeg",
              10: lambda b: None, 55: lambda b: None, 100: lambda b: None}
    source = write_photo_shards(tmp_path / "wds", demo_rows, 4,
                                lambda index, data: damage[index](data) if index in damage else data)
    manifest, _ = run_stub(monkeypatch, source, tmp_path / "out", lambda c: "写真の説明")
    assert manifest["dropped"].get("unreadable image") == 3
    assert manifest["dropped"].get("missing image") == 3
    assert manifest["read"] == 111


def test_truncated_source_shard_counted(monkeypatch, tmp_path, demo_rows):
    source = write_photo_shards(tmp_path / "wds", demo_rows, 2)
    shard = source / "00001.tar"
    shard.write_bytes(shard.read_bytes()[:shard.stat().st_size // 2])
    manifest, _ = run_stub(monkeypatch, source, tmp_path / "out", lambda c: "写真の説明")
    assert manifest["dropped"]["source shard truncated or corrupt"] == 1
    assert 56 <= manifest["read"] < 111


def test_resume_skips_finished_shards(monkeypatch, photo_shards, tmp_path):
    output = tmp_path / "out"
    calls = {"n": 0}

    def flaky(caption):
        calls["n"] += 1
        if calls["n"] > 60:  # dies while translating the third shard
            raise KeyboardInterrupt
        return "写真の説明" + caption[:3]
    with pytest.raises(KeyboardInterrupt):
        run_stub(monkeypatch, photo_shards, output, flaky, batch_size=8)
    finished = sorted(p.name for p in output.glob("*.tar"))
    assert finished == ["000000.tar", "000001.tar"]
    assert not list(output.glob(".*partial"))
    stamps = {name: (output / name).stat().st_mtime_ns for name in finished}

    manifest, stub = run_stub(monkeypatch, photo_shards, output, lambda c: "写真の説明" + c[:3])
    assert stub.calls == 2  # only the two unfinished shards were translated
    assert {name: (output / name).stat().st_mtime_ns for name in finished} == stamps
    assert len(manifest["shards"]) == 4


def test_resume_with_other_settings_rejected(monkeypatch, photo_shards, tmp_path):
    run_stub(monkeypatch, photo_shards, tmp_path / "out", lambda c: "説明" + c[:4])
    with pytest.raises(DataError, match="other settings"):
        run_stub(monkeypatch, photo_shards, tmp_path / "out", lambda c: "説明" + c[:4], max_chars=50)


def test_prepare_unknown_source_exits_2(tmp_path):
    result = runner.invoke(app, ["prepare", "--lang", "ja", "--source", str(tmp_path / "none"),
                                 "--output", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "not a WebDataset folder" in result.output


def test_missing_translation_model_fails_fast(photo_shards, tmp_path):
    result = runner.invoke(app, ["prepare", "--lang", "ja", "--source", str(photo_shards),
                                 "--output", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "facebook/nllb-200-distilled-600M" in result.output


def test_written_shards_are_valid_tar(prepared_ja):
    with tarfile.open(prepared_ja / "000001.tar") as archive:
        names = archive.getnames()
    assert len(names) % 4 == 0


def test_prepare_from_hf_dataset(monkeypatch, tmp_path, demo_rows):
    datasets = pytest.importorskip("datasets")
    rows = [row for row in demo_rows if "ja" in row][:10]
    table = {"image": [{"bytes": (DEMO_TRIPLETS.parent / r["image"]).read_bytes(), "path": r["image"]} for r in rows],
             "caption": [r["en"] for r in rows]}
    dataset = datasets.Dataset.from_dict(table).cast_column("image", datasets.Image())
    dataset.save_to_disk(str(tmp_path / "hf"))
    manifest, _ = run_stub(monkeypatch, tmp_path / "hf", tmp_path / "out", lambda c: "説明" + c[:5], shard_size=4)
    assert manifest["source_kind"] == "hf-dataset"
    assert manifest["samples"] == 10
    assert len(manifest["shards"]) == 3
