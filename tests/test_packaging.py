"""A regular (non-editable) install carries the packs, recipes and demo data."""

import subprocess
import sys
import zipfile

from tests.conftest import REPO


def test_wheel_contains_assets(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True, cwd=tmp_path)
    wheel = next(tmp_path.glob("polyiap-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("polyiap/assets/languages/zh.yaml", "polyiap/assets/languages/_base.yaml",
                     "polyiap/assets/recipes/demo.yaml", "polyiap/assets/recipes/zh-paper.yaml",
                     "polyiap/assets/recipes/data/coco-cc/triplets.jsonl",
                     "polyiap/assets/recipes/data/coco-cc/ATTRIBUTION.md"):
        assert expected in names
    assert sum(n.startswith("polyiap/assets/recipes/data/coco-cc/images/") for n in names) == 111
    assert any(n.endswith("entry_points.txt") for n in names)
