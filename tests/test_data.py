"""Triplet sources and the held-out split."""

import json

import pytest
import torch

from polyiap.data import TripletFields, load_image, read_triplets, split_by_image
from polyiap.errors import DataError
from tests.conftest import DEMO_TRIPLETS


def test_demo_triplets_read(demo_rows):
    triplets, skipped = read_triplets(DEMO_TRIPLETS, TripletFields(target="zh"))
    assert len(triplets) == len(demo_rows) == 555
    assert not skipped
    assert all(t.image.is_file() for t in triplets)


def test_rows_without_target_language_skipped():
    triplets, skipped = read_triplets(DEMO_TRIPLETS, TripletFields(target="ja"))
    assert len(triplets) == 111  # the Japanese translation covers the first caption of each photo
    assert sum(skipped.values()) == 555 - 111


def test_split_never_shares_an_image():
    triplets, _ = read_triplets(DEMO_TRIPLETS, TripletFields(target="zh"))
    train, heldout = split_by_image(triplets, 12, seed=0)
    assert len({t.image for t in heldout}) == 12
    assert not {t.image for t in train} & {t.image for t in heldout}
    assert len(train) + len(heldout) == len(triplets)
    assert split_by_image(triplets, 12, seed=0) == (train, heldout)


def test_split_by_share_and_too_many():
    triplets, _ = read_triplets(DEMO_TRIPLETS, TripletFields(target="zh"))
    _, heldout = split_by_image(triplets, 0.1, seed=1)
    assert len({t.image for t in heldout}) == 11
    with pytest.raises(DataError, match="leaving none"):
        split_by_image(triplets, 111, seed=0)


def test_csv_and_missing_images(tmp_path):
    image = DEMO_TRIPLETS.parent / json.loads(DEMO_TRIPLETS.read_text().splitlines()[0])["image"]
    path = tmp_path / "t.csv"
    path.write_text(f"image,en,zh\n{image},a bear,一只熊\nmissing.jpg,a cat,一只猫\n", encoding="utf-8")
    triplets, skipped = read_triplets(path, TripletFields(target="zh"), normalize=str.upper)
    assert [t.target for t in triplets] == ["一只熊"]
    assert skipped["image file not found"] == 1


def test_missing_file_and_bad_json(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_triplets(tmp_path / "none.jsonl", TripletFields())
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "x"}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        read_triplets(bad, TripletFields())


def test_load_image_square_in_range():
    image = DEMO_TRIPLETS.parent / json.loads(DEMO_TRIPLETS.read_text().splitlines()[0])["image"]
    pixels = load_image(image, 64)
    assert pixels.shape == (3, 64, 64)
    assert pixels.min() >= -1
    assert pixels.max() <= 1
    assert pixels.dtype == torch.float32


def test_demo_photos_are_openly_licensed(shared_data):
    metadata = {json.loads(line)["coco_id"]: json.loads(line)
                for line in (shared_data / "coco_images" / "metadata.jsonl").read_text().splitlines()}
    shipped = {int(p.stem) for p in (DEMO_TRIPLETS.parent / "images").glob("*.jpg")}
    assert len(shipped) == 111
    assert {metadata[i]["license_id"] for i in shipped} <= {4, 5}  # CC BY 2.0, CC BY-SA 2.0
    attribution = (DEMO_TRIPLETS.parent / "ATTRIBUTION.md").read_text()
    assert all(metadata[i]["flickr_url"] in attribution for i in shipped)


def test_wrong_columns_listed(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"image": "a.jpg", "english": "a bear", "zh": "一只熊"}\n', encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_triplets(path, TripletFields(target="zh"))
    assert "'english'" in str(caught.value)
    assert "data.english_field" in str(caught.value)


def test_data_file_away_from_its_images_explains_paths(tmp_path):
    lines = DEMO_TRIPLETS.read_text(encoding="utf-8").splitlines()[:5]
    moved = tmp_path / "subset.jsonl"
    moved.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="none of the 5 image files exists.*relative to the data file's folder"):
        read_triplets(moved, TripletFields(target="zh"))
