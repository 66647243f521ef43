"""Checks that a student's tokenizer, encoder and the backbone can work together, before training."""

from polyiap.encoders.student import StudentEncoder
from polyiap.errors import IncompatibleModelsError


def check_student(student: StudentEncoder, context_dim: int, pooled_dim: int | None = None) -> None:
    """Raise `IncompatibleModelsError` naming both values when the student cannot be trained as set up."""
    tokenizer, config = student.tokenizer, student.encoder.config
    problems = []

    if tokenizer.pad_token_id is None:
        problems.append("the student tokenizer has no pad token, so captions cannot be padded to a fixed length; "
                        "set `tokenizer.pad_token` (for example to its eos token) and save it again")
    vocab_size = getattr(config, "vocab_size", None)
    if vocab_size is not None and len(tokenizer) > vocab_size:
        problems.append(f"the student tokenizer has {len(tokenizer)} tokens but the encoder's embedding table has "
                        f"{vocab_size} rows, so some token ids would be out of range; use the tokenizer that "
                        "belongs to the encoder")
    for name in ("pad", "eos", "bos"):
        token_id = getattr(tokenizer, f"{name}_token_id", None)
        model_id = getattr(config, f"{name}_token_id", None)
        if name != "pad" and config.model_type.startswith("clip") and None not in (token_id, model_id) \
                and token_id != model_id:
            problems.append(f"{name} token id: tokenizer {token_id}, encoder config {model_id}; a CLIP text "
                            "encoder locates the end of text by this id, so they must be equal")
        if vocab_size is not None and token_id is not None and token_id >= vocab_size:
            problems.append(f"{name} token id {token_id} is outside the encoder's vocabulary of {vocab_size}")
    positions = getattr(config, "max_position_embeddings", None)
    offset = 2 if config.model_type in ("roberta", "xlm-roberta") else 0  # RoBERTa positions start after the pad id
    if positions is not None and student.max_length > positions - offset:
        problems.append(f"student max_length {student.max_length} exceeds the encoder's "
                        f"{positions - offset} positions; set student.max_length <= {positions - offset}")
    if student.context_dim != context_dim:
        problems.append(f"student output width {student.context_dim} differs from the backbone's context "
                        f"width {context_dim}; rebuild the student for this backbone")
    if student.pooled_dim != pooled_dim:
        problems.append(f"student pooled width {student.pooled_dim} differs from the backbone's pooled width "
                        f"{pooled_dim}; rebuild the student for this backbone")
    if problems:
        raise IncompatibleModelsError("student and backbone are incompatible: " + "; ".join(problems))


def check_unconditional(student_length: int, teacher_length: int, unconditional: str) -> None:
    """Raise when a teacher-made unconditional embedding cannot be mixed with student embeddings of another length."""
    if unconditional == "teacher" and student_length != teacher_length:
        raise IncompatibleModelsError(
            f"samples.unconditional is `teacher` but the student pads to {student_length} tokens and the teacher "
            f"to {teacher_length}; diffusers needs both embeddings of one shape, so set "
            f"student.max_length={teacher_length} or samples.unconditional=student")
