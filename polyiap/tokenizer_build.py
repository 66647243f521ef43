"""Real tokenizers trained offline on caption text, for tiny models (no vocabulary download).

`train_clip_bpe` builds a CLIP-style byte-level BPE that loads as a transformers ``CLIPTokenizer``.
`train_wordpiece` builds a BERT WordPiece vocabulary. For Chinese and Japanese it is character level,
because BERT's pre-tokenizer splits CJK characters.
"""

import json
from collections.abc import Iterable

CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"
BERT_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_clip_bpe(texts: Iterable[str], vocab_size: int, max_length: int):
    """Return a ``CLIPTokenizer`` with a byte-level BPE vocabulary learned from ``texts``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Whitespace(), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, end_of_word_suffix="</w>",
                                  special_tokens=[CLIP_BOS, CLIP_EOS], min_frequency=2, show_progress=False)
    bpe.train_from_iterator(list(texts), trainer)

    model = json.loads(bpe.to_str())["model"]
    vocab = dict(model["vocab"])
    # CLIPTokenizer needs every byte symbol, alone and as a word end, so that no input is unknown.
    for symbol in sorted(alphabet):
        vocab.setdefault(symbol, len(vocab))
        vocab.setdefault(symbol + "</w>", len(vocab))
    merges = [tuple(pair) for pair in model["merges"]]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length,
                         bos_token=CLIP_BOS, eos_token=CLIP_EOS, pad_token=CLIP_EOS, unk_token=CLIP_EOS)


def train_wordpiece(texts: Iterable[str], vocab_size: int, max_length: int):
    """Return a ``BertTokenizer`` with a WordPiece vocabulary learned from ``texts``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertTokenizer

    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=BERT_SPECIAL, show_progress=False)
    wordpiece.train_from_iterator(list(texts), trainer)

    vocab = json.loads(wordpiece.to_str())["model"]["vocab"]
    tokenizer = BertTokenizer(vocab=vocab, model_max_length=max_length)
    for name, token in (("pad", "[PAD]"), ("unk", "[UNK]"), ("cls", "[CLS]"), ("sep", "[SEP]"), ("mask", "[MASK]")):
        setattr(tokenizer, f"{name}_token", token)
    return tokenizer
