"""The ComfyUI node, run against ComfyUI's custom-node interface with stand-in `folder_paths` and `comfy` modules.

ComfyUI loads a custom node package by importing it and reading NODE_CLASS_MAPPINGS; it calls a
node's INPUT_TYPES for the widgets, then ``getattr(node(), FUNCTION)(**inputs)``, which returns a tuple
matching RETURN_TYPES. A CONDITIONING is a list of ``[states, {"pooled_output": pooled}]`` pairs.
"""

import importlib
import sys
import types

import pytest
import torch
from typer.testing import CliRunner

from polyiap.cli.app import app

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent
NODE_PACKAGE = REPO / "integrations" / "comfyui"


@pytest.fixture(scope="module")
def encoder_file(trained_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("text_encoders")
    result = CliRunner().invoke(app, ["export", "--model", str(trained_run), "--format", "single-file",
                                      "--output", str(folder / "zh-demo.safetensors")])
    assert result.exit_code == 0, result.output
    return folder / "zh-demo.safetensors"


@pytest.fixture()
def nodes(encoder_file, monkeypatch):
    """Import the node package as ComfyUI would, with stand-ins for ComfyUI's own modules."""
    folder_paths = types.ModuleType("folder_paths")
    folder_paths.get_filename_list = lambda kind: [encoder_file.name] if kind == "text_encoders" else []
    folder_paths.get_full_path = lambda kind, name: (str(encoder_file) if (kind, name) == ("text_encoders",
                                                                                          encoder_file.name) else None)
    comfy = types.ModuleType("comfy")
    comfy.model_management = types.ModuleType("comfy.model_management")
    comfy.model_management.text_encoder_device = lambda: torch.device("cpu")
    for name, module in {"folder_paths": folder_paths, "comfy": comfy,
                         "comfy.model_management": comfy.model_management}.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.syspath_prepend(str(NODE_PACKAGE))
    monkeypatch.delitem(sys.modules, "polyiap_text_encoder", raising=False)
    return importlib.import_module("polyiap_text_encoder")


def run_node(nodes, name, **inputs):
    node_class = nodes.NODE_CLASS_MAPPINGS[name]
    required = node_class.INPUT_TYPES()["required"]
    assert set(inputs) == set(required)
    outputs = getattr(node_class(), node_class.FUNCTION)(**inputs)
    assert len(outputs) == len(node_class.RETURN_TYPES)
    return outputs


def test_mappings_declare_interface(nodes):
    assert set(nodes.NODE_CLASS_MAPPINGS) == set(nodes.NODE_DISPLAY_NAME_MAPPINGS)
    for node_class in nodes.NODE_CLASS_MAPPINGS.values():
        assert "required" in node_class.INPUT_TYPES()
        assert isinstance(node_class.RETURN_TYPES, tuple)
        assert callable(getattr(node_class, node_class.FUNCTION))
        assert isinstance(node_class.CATEGORY, str)


def test_loader_lists_text_encoders(nodes, encoder_file):
    loader = nodes.NODE_CLASS_MAPPINGS["PolyiapTextEncoderLoader"]
    assert loader.INPUT_TYPES()["required"]["encoder_name"] == ([encoder_file.name],)


def test_conditioning_equals_student(nodes, encoder_file, trained_run):
    from polyiap.generate import load_student_and_backbone

    student, backbone, _ = load_student_and_backbone(trained_run)
    (encoder,) = run_node(nodes, "PolyiapTextEncoderLoader", encoder_name=encoder_file.name)
    (conditioning,) = run_node(nodes, "PolyiapTextEncode", text_encoder=encoder, text="一隻熊 站在ＲＥＤ car 旁")
    assert len(conditioning) == 1
    states, extras = conditioning[0]
    with torch.no_grad():
        expected = student.encode(["一只熊站在red car 旁"]).sequence
    assert states.shape == (1, 32, backbone.context_dim)
    torch.testing.assert_close(states, expected, rtol=0, atol=0)
    assert extras["pooled_output"].shape == (1, backbone.context_dim)


def test_tokens_match_student_tokenizer(nodes, encoder_file, trained_run, demo_rows):
    from polyiap.generate import load_student_and_backbone
    from polyiap.packs import normalize_text
    from polyiap.prompts import student_normalization

    student, _, _ = load_student_and_backbone(trained_run)
    encoder = nodes.PolyiapTextEncoder(str(encoder_file))
    prompts = [row["zh"] for row in demo_rows[:20]] + ["", "熊" * 50]
    for prompt in prompts:
        ids, mask = encoder.tokenize(prompt)
        expected = student.tokenize([normalize_text(prompt, student_normalization(student))])
        assert torch.equal(ids, expected["input_ids"]), prompt
        assert torch.equal(mask, expected["attention_mask"]), prompt


def test_conditioning_drives_unet(nodes, encoder_file, tiny_backbone):
    """The CONDITIONING tensor is what KSampler hands the SD 1.x UNet as its context."""
    (encoder,) = run_node(nodes, "PolyiapTextEncoderLoader", encoder_name=encoder_file.name)
    (bear,) = run_node(nodes, "PolyiapTextEncode", text_encoder=encoder, text="一只熊")
    (boat,) = run_node(nodes, "PolyiapTextEncode", text_encoder=encoder, text="海边的船")
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        bear_out = tiny_backbone.unet(latents, 500, encoder_hidden_states=bear[0][0]).sample
        boat_out = tiny_backbone.unet(latents, 500, encoder_hidden_states=boat[0][0]).sample
    assert bear_out.shape == latents.shape
    assert not torch.allclose(bear_out, boat_out)


def test_wrong_file_rejected(nodes, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a polyiap text encoder file"):
        nodes.PolyiapTextEncoder(str(path))


def test_single_file_refuses_overwrite(trained_run, encoder_file):
    result = CliRunner().invoke(app, ["export", "--model", str(trained_run), "--format", "single-file",
                                      "--output", str(encoder_file)])
    assert result.exit_code == 2
    assert "pass --force" in result.output
