"""Language packs and recipes: schema, include:, overrides and the one-line errors of the CLI."""

import re

import pytest
from typer.testing import CliRunner

from polyiap.cli.app import app
from polyiap.errors import ConfigError
from polyiap.packs import list_packs, load_pack, normalize_text
from polyiap.recipes import list_recipes, load_recipe

runner = CliRunner()


def test_zh_pack_includes_base():
    pack = load_pack("zh")
    assert pack.code == "zh"
    assert pack.normalization.unicode_form == "NFKC"  # from _base.yaml
    assert pack.normalization.opencc == "t2s"
    assert pack.reference_recipe == "zh-paper"


def test_zh_normalization_simplifies_and_joins():
    rules = load_pack("zh").normalization
    assert normalize_text("一個 女孩 走 下 台階", rules) == "一个女孩走下台阶"
    assert normalize_text("  a   dog  ", rules) == "a dog"


def test_shipped_recipes_load():
    assert {"demo", "zh-paper"} <= set(list_recipes())
    paper = load_recipe("zh-paper")
    assert (paper.train.max_steps, paper.train.batch_size, paper.train.lr) == (100000, 256, 5e-5)
    assert (paper.samples.scheduler, paper.samples.steps, paper.samples.guidance) == ("pndm", 50, 7.5)
    assert paper.backbone.source == "CompVis/stable-diffusion-v1-4"


def test_recipe_overrides_and_data(tmp_path):
    recipe = load_recipe("demo", ["train.lr=1e-4", "loss.compare=post_out"], data="x.jsonl")
    assert recipe.train.lr == 1e-4
    assert recipe.loss.compare == "post_out"
    assert recipe.data.source.endswith("x.jsonl")


def test_demo_data_path_relative_to_recipe():
    recipe = load_recipe("demo")
    assert recipe.data.source.endswith("recipes/data/coco-cc/triplets.jsonl")


@pytest.mark.parametrize("override, field", [("train.lrr=1", "train.lrr"), ("train.lr=fast", "train.lr"),
                                             ("loss.compare=middle", "loss.compare")])
def test_recipe_override_errors_name_field(override, field):
    with pytest.raises(ConfigError) as caught:
        load_recipe("demo", [override])
    assert caught.value.field == field
    assert caught.value.file.endswith("demo.yaml)")
    assert "Fix:" in str(caught.value)


def write_pack(folder, text):
    (folder / "_base.yaml").write_text("max_length: 77\n", encoding="utf-8")
    path = folder / "xx.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_pack_unknown_key(tmp_path):
    path = write_pack(tmp_path, "include: _base.yaml\ncode: xx\nname: X\nnormalization:\n  unicode: NFKC\n")
    with pytest.raises(ConfigError) as caught:
        load_pack(str(path))
    assert caught.value.field == "normalization.unicode"
    assert "unicode_form" in caught.value.fix


def test_pack_missing_include(tmp_path):
    path = tmp_path / "xx.yaml"
    path.write_text("include: nothere.yaml\ncode: xx\nname: X\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_pack(str(path))
    assert caught.value.file == str(path)
    assert caught.value.field == "include"
    assert "'nothere.yaml' not found" in caught.value.reason


def test_pack_circular_include(tmp_path):
    (tmp_path / "a.yaml").write_text("include: b.yaml\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("include: a.yaml\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="circular"):
        load_pack(str(tmp_path / "a.yaml"))


def test_packs_validate_all_shipped():
    result = runner.invoke(app, ["packs", "validate"])
    assert result.exit_code == 0, result.output
    for code in list_packs():
        assert f"ok {code}" in result.output


@pytest.mark.parametrize("text, field", [
    ("include: _base.yaml\ncode: xx\nname: X\nmax_lenght: 10\n", "max_lenght"),
    ("include: _base.yaml\ncode: xx\nname: X\nmax_length: many\n", "max_length"),
    ("include: _base.yaml\ncode: xx\n", "name"),
])
def test_packs_validate_bad_pack_exits_2(tmp_path, text, field):
    path = write_pack(tmp_path, text)
    result = runner.invoke(app, ["packs", "validate", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    joined = " ".join(lines)
    assert str(path) in joined.replace("\n", "")
    assert f": {field}:" in joined
    assert "Fix:" in joined


def test_transfer_bad_recipe_exits_2(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("name: bad\ntrain:\n  batch_size: lots\n", encoding="utf-8")
    result = runner.invoke(app, ["transfer", "--lang", "zh", "--recipe", str(recipe), "--output", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "train.batch_size" in result.output
    assert not (tmp_path / "run").exists()


def test_transfer_missing_recipe_file_exits_2(tmp_path):
    result = runner.invoke(app, ["transfer", "--lang", "zh", "--recipe", str(tmp_path / "none.yaml"),
                                 "--output", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "file not found" in result.output


def test_transfer_unknown_language_exits_2(tmp_path):
    result = runner.invoke(app, ["transfer", "--lang", "xx", "--output", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "no language pack 'xx'" in result.output


def test_pack_outside_repo_includes_shipped_base(tmp_path):
    from polyiap.packs import pack_path

    copy = tmp_path / "zh.yaml"
    copy.write_text(pack_path("zh").read_text(encoding="utf-8"), encoding="utf-8")
    assert load_pack(str(copy)).normalization.unicode_form == "NFKC"


def test_pack_rejects_unknown_opencc_conversion(tmp_path):
    path = write_pack(tmp_path, "include: _base.yaml\ncode: xx\nname: X\nnormalization:\n  opencc: t2ss\n")
    with pytest.raises(ConfigError) as caught:
        load_pack(str(path))
    assert caught.value.field == "normalization.opencc"
    assert "t2s" in caught.value.fix


def test_override_error_names_the_option():
    with pytest.raises(ConfigError) as caught:
        load_recipe("demo", ["train.lrr=1"])
    assert caught.value.file.startswith("--set train.lrr=1")
    assert "did you mean 'lr'" in caught.value.fix


def test_type_error_names_expected_type():
    with pytest.raises(ConfigError) as caught:
        load_recipe("demo", ["train.lr=fast"])
    assert caught.value.fix == "use a number"


def test_student_unconditional_needs_empty_prompts():
    with pytest.raises(ConfigError) as caught:
        load_recipe("demo", ["data.empty_prompt_rate=0"])
    assert caught.value.field == "samples.unconditional"
    assert caught.value.file.startswith("--set data.empty_prompt_rate=0")
    assert load_recipe("demo", ["data.empty_prompt_rate=0", "samples.unconditional=teacher"])


def test_heldout_count_stays_integer():
    assert load_recipe("demo").data.heldout_images == 12
    assert isinstance(load_recipe("demo").data.heldout_images, int)


def test_bound_error_names_the_bound():
    with pytest.raises(ConfigError) as caught:
        load_recipe("demo", ["train.max_steps=0"])
    assert caught.value.fix == "use a value greater than 0"


def test_all_shipped_packs_have_the_xtd10_languages():
    assert {"ja", "ko", "de", "fr", "es", "it", "ru", "pl", "tr", "ar", "zh"} <= set(list_packs())


@pytest.mark.parametrize("code", ["ja", "ko", "de", "fr", "es", "it", "ru", "pl", "tr"])
def test_xtd10_pack_suite(code):
    pack = load_pack(code)
    suite = pack.eval_suites["xtd10"]
    assert suite.caption_field == code
    assert suite.image_field == "image_file"
    assert pack.translation_model is not None
    assert pack.clip_model
    assert len(pack.sample_prompts) >= 4


def test_nllb_without_target_language(tmp_path):
    path = write_pack(tmp_path, "code: xx\nname: X\ntranslation_model: facebook/nllb-200-distilled-600M\n")
    with pytest.raises(ConfigError) as caught:
        load_pack(str(path))
    assert caught.value.field == "translation_model"
    assert "target_language" in caught.value.reason


def test_nllb_bad_language_code(tmp_path):
    path = write_pack(tmp_path, "code: xx\nname: X\ntranslation_model:\n  model: facebook/nllb-200-distilled-600M\n"
                                "  target_language: ja\n")
    with pytest.raises(ConfigError) as caught:
        load_pack(str(path))
    assert "jpn_Jpan" in caught.value.reason


def test_replacements_normalize_punctuation():
    assert normalize_text("l’ours «brun»", load_pack("fr").normalization) == "l'ours \"brun\""
    assert normalize_text("ёлка", load_pack("ru").normalization) == "елка"
    assert normalize_text("大きな クマ", load_pack("ja").normalization) == "大きなクマ"


def test_packs_new_skeleton_fails_until_filled(tmp_path):
    path = tmp_path / "sw.yaml"
    result = runner.invoke(app, ["packs", "new", "sw", "--output", str(path)])
    assert result.exit_code == 0, result.output
    unfilled = runner.invoke(app, ["packs", "validate", str(path)])
    assert unfilled.exit_code == 2
    assert f"{path}: name: still holds the placeholder" in unfilled.output
    assert "Fix:" in unfilled.output
    text = path.read_text(encoding="utf-8")
    for placeholder in sorted(set(re.findall(r'"<FILL IN: [^"]*>"', text))):
        text = text.replace(placeholder, '"Helsinki-NLP/opus-mt-en-sw"' if "opus-mt" in placeholder else '"Swahili"')
    path.write_text(text, encoding="utf-8")
    filled = runner.invoke(app, ["packs", "validate", str(path)])
    assert filled.exit_code == 0, filled.output


def test_packs_new_rejects_bad_code(tmp_path):
    result = runner.invoke(app, ["packs", "new", "Swahili", "--output", str(tmp_path / "x.yaml")])
    assert result.exit_code == 2
    assert "not a language code" in result.output
