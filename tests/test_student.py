"""Student encoders: loading by kind, projection, save/load round trip and compatibility errors."""

import pytest
import torch

from polyiap.encoders import StudentEncoder, build_student, check_student, check_unconditional
from polyiap.errors import IncompatibleModelsError
from polyiap.recipes.schema import StudentConfig


def test_folder_student_gets_projection(bert_student_dir):
    student = build_student(StudentConfig(init=str(bert_student_dir)), 24, 64, [], seed=0)
    assert student.kind == "bert-like"
    assert student.projection.in_features == 48
    assert student.projection.out_features == 64
    states = student.encode(["一只熊", "两只狗在雪地里玩"]).sequence
    assert states.shape == (2, 24, 64)


def test_save_load_round_trip(tmp_path, bert_student_dir):
    student = build_student(StudentConfig(init=str(bert_student_dir)), 24, 64, [], seed=0,
                            metadata={"language": "zh"}).eval()
    student.save(tmp_path / "student")
    loaded = StudentEncoder.load(tmp_path / "student").eval()
    assert loaded.metadata["language"] == "zh"
    assert (loaded.max_length, loaded.context_dim, loaded.use_attention_mask) == (24, 64, True)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(["桌子上的一碗水果"]).sequence,
                                   student.encode(["桌子上的一碗水果"]).sequence, rtol=0, atol=0)


def test_tiny_student_vocabulary_covers_captions(demo_rows):
    captions = [row["zh"] for row in demo_rows]
    student = build_student(StudentConfig(), 32, 64, captions, seed=0)
    ids = student.tokenize(captions[:20])["input_ids"]
    assert (ids == student.tokenizer.unk_token_id).sum() == 0


def test_random_init_keeps_architecture(bert_student_dir):
    pretrained = build_student(StudentConfig(init=str(bert_student_dir)), 16, 48, [], seed=0)
    random = build_student(StudentConfig(init=str(bert_student_dir), random_init=True), 16, 48, [], seed=0)
    weights = "embeddings.word_embeddings.weight"
    assert pretrained.encoder.state_dict()[weights].shape == random.encoder.state_dict()[weights].shape
    assert not torch.equal(pretrained.encoder.state_dict()[weights], random.encoder.state_dict()[weights])


def test_max_length_beyond_positions_names_both_values(bert_student_dir):
    student = build_student(StudentConfig(init=str(bert_student_dir)), 120, 64, [], seed=0)
    with pytest.raises(IncompatibleModelsError) as caught:
        check_student(student, 64)
    assert "120" in str(caught.value)
    assert "80" in str(caught.value)


def test_tokenizer_larger_than_vocabulary(bert_student_dir):
    student = build_student(StudentConfig(init=str(bert_student_dir)), 16, 64, [], seed=0)
    student.tokenizer.add_tokens([f"新词{i}" for i in range(5)])
    with pytest.raises(IncompatibleModelsError, match=rf"{len(student.tokenizer)} tokens .* {student.encoder.config.vocab_size} rows"):
        check_student(student, 64)


def test_width_mismatch_names_both_values(bert_student_dir):
    student = build_student(StudentConfig(init=str(bert_student_dir)), 16, 64, [], seed=0)
    with pytest.raises(IncompatibleModelsError, match="width 64 .* width 768"):
        check_student(student, 768)


def test_teacher_unconditional_needs_same_length():
    check_unconditional(77, 77, "teacher")
    check_unconditional(32, 77, "student")
    with pytest.raises(IncompatibleModelsError, match="pads to 32 tokens and the teacher to 77"):
        check_unconditional(32, 77, "teacher")


def test_clip_text_student_loads_by_model_type(tmp_path, tiny_backbone_dir):
    import shutil

    # A CLIP text checkpoint folder: the tiny backbone's text encoder with its tokenizer beside it.
    folder = tmp_path / "clip"
    shutil.copytree(tiny_backbone_dir / "text_encoder", folder)
    for path in (tiny_backbone_dir / "tokenizer").iterdir():
        shutil.copy(path, folder / path.name)
    student = build_student(StudentConfig(init=str(folder)), 77, 64, [], seed=0)
    assert student.kind == "clip-text"
    assert student.projection is None
    check_student(student, 64)


def test_tokenizer_builds_are_deterministic(demo_rows):
    from polyiap.tokenizer_build import train_clip_bpe, train_wordpiece

    english = [row["en"] for row in demo_rows]
    chinese = [row["zh"] for row in demo_rows]
    assert train_clip_bpe(english, 700, 77).get_vocab() == train_clip_bpe(english, 700, 77).get_vocab()
    assert train_wordpiece(chinese, 3000, 32).get_vocab() == train_wordpiece(chinese, 3000, 32).get_vocab()


def test_wordpiece_keeps_latin_and_digits(demo_rows):
    from polyiap.tokenizer_build import train_wordpiece

    tokenizer = train_wordpiece([row["zh"] for row in demo_rows], 3000, 32)
    ids = tokenizer(["一台 TV 和 3 只猫"])["input_ids"][0]
    assert tokenizer.unk_token_id not in ids
