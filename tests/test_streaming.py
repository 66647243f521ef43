"""Training from WebDataset shards: the split across processes and workers, resume, held-out, accelerate."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from polyiap.data import TripletFields
from polyiap.data.streaming import ShardTriplets, is_heldout, open_shard_set, open_shard_stream
from polyiap.errors import DataError

FIELDS = TripletFields("image", "en", "ja")


def stream(prepared, heldout=0.1):
    return open_shard_stream(prepared, FIELDS, None, heldout, 64)


def english_batches(shards, **options):
    defaults = dict(resolution=16, seed=0, epoch=0, rank=0, world=1, batch_size=4, skip_batches=0,
                    num_workers=0, prefetch_factor=2, trace=None)
    return [list(batch["english"]) for batch in shards.batches(**{**defaults, **options})]


def test_ranks_read_disjoint_shards(prepared_ja):
    shard_set = open_shard_set(prepared_ja)
    reader = stream(prepared_ja).reader
    assigned = [set(ShardTriplets(shard_set, reader, 0.1, 16, 0, epoch, rank, 2).process_shards())
                for epoch in (0, 1) for rank in (0, 1)]
    assert not assigned[0] & assigned[1]
    assert assigned[0] | assigned[1] == set(shard_set.shards)
    assert not assigned[2] & assigned[3]


def test_workers_read_disjoint_shards(prepared_ja, tmp_path):
    trace = tmp_path / "trace.tsv"
    english_batches(stream(prepared_ja), num_workers=2, trace=trace)
    rows = [line.split("\t") for line in trace.read_text().splitlines()]
    by_worker = {worker: {row[3] for row in rows if row[2] == worker} for worker in ("0", "1")}
    assert by_worker["0"] and by_worker["1"]
    assert not by_worker["0"] & by_worker["1"]


def test_epoch_has_equal_batches_per_rank(prepared_ja):
    shards = stream(prepared_ja)
    counts = [len(english_batches(shards, rank=rank, world=2)) for rank in (0, 1)]
    assert counts[0] == counts[1]
    assert counts[0] == shards.train_samples() // 2 // 4


@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_epoch_continues_exactly(prepared_ja, workers):
    shards = stream(prepared_ja)
    full = english_batches(shards, num_workers=workers)
    assert english_batches(shards, num_workers=workers, skip_batches=5) == full[5:]


def test_heldout_images_never_trained(prepared_ja):
    shards = stream(prepared_ja, heldout=0.3)
    heldout = {t.english for t in shards.heldout}
    trained = {caption for batch in english_batches(shards) for caption in batch}
    assert heldout
    assert not heldout & trained


def test_heldout_count_uses_manifest_images(prepared_ja):
    shards = stream(prepared_ja, heldout=12)
    assert shards.share == pytest.approx(12 / 111)


def test_heldout_count_without_manifest_rejected(prepared_ja, tmp_path):
    for shard in sorted(prepared_ja.glob("*.tar")):
        (tmp_path / shard.name).write_bytes(shard.read_bytes())
    with pytest.raises(DataError, match="set a share"):
        stream(tmp_path, heldout=12)


def test_hash_split_is_stable():
    assert is_heldout("00000000" + "f" * 32, 0.01)
    assert not is_heldout("ffffffff" + "0" * 32, 0.99)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_accelerate_two_processes_disjoint(prepared_ja, tmp_path, polyiap_cache, tiny_backbone_dir):
    run = tmp_path / "run"
    # `--cpu` would start one process; the torchrun launcher (`--multi_gpu`) with ACCELERATE_USE_CPU starts two
    # CPU processes that talk over gloo.
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1",
               "--main_process_port", str(_free_port()), "-m", "polyiap", "transfer", "--lang", "ja",
               "--recipe", "demo", "--data", str(prepared_ja), "--output", str(run),
               "--set", "train.max_steps=2", "--set", "samples.num_prompts=0", "--set", "train.eval_every=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "POLYIAP_CACHE": str(polyiap_cache),
           "ACCELERATE_USE_CPU": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [line.split("\t") for line in (run / "shards-read.tsv").read_text().splitlines()]
    by_rank = {rank: {row[3] for row in rows if row[1] == rank} for rank in ("0", "1")}
    assert by_rank["0"] and by_rank["1"]
    assert not by_rank["0"] & by_rank["1"]
    assert (run / "student" / "student.json").is_file()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 2
