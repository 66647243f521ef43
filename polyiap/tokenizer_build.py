"""Real tokenizers built offline from caption text, for tiny models (no vocabulary download).

`train_clip_bpe` learns a CLIP-style byte-level BPE that loads as a transformers ``CLIPTokenizer``.
`train_wordpiece` builds a BERT WordPiece vocabulary of characters and frequent words, which suits
Chinese and Japanese because BERT's pre-tokenizer splits CJK characters. Both are deterministic: the
`tokenizers` trainers break frequency ties differently from run to run, which would make two builds of
the same tiny model differ.
"""

import re
from collections import Counter
from collections.abc import Iterable

CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"
BERT_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORD_END = "</w>"

# CLIP's word split: contractions, runs of letters, single digits, runs of other symbols.
_CLIP_WORDS = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+", re.IGNORECASE)


def byte_symbols() -> dict[int, str]:
    """Map each byte to a printable character, as byte-level BPE vocabularies (GPT-2, CLIP) do."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


def learn_bpe_merges(words: Counter, max_merges: int) -> list[tuple[str, str]]:
    """Return up to ``max_merges`` merges, most frequent pair first, ties broken by the pair itself."""
    merges = []
    words = dict(words)
    while len(merges) < max_merges:
        pairs = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        if pairs[best] < 2:
            break
        merges.append(best)
        words = {_merge(word, best): count for word, count in words.items()}
    return merges


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    merged, index = [], 0
    while index < len(word):
        if index + 1 < len(word) and (word[index], word[index + 1]) == pair:
            merged.append(word[index] + word[index + 1])
            index += 2
        else:
            merged.append(word[index])
            index += 1
    return tuple(merged)


def train_clip_bpe(texts: Iterable[str], vocab_size: int, max_length: int):
    """Return a ``CLIPTokenizer`` whose byte-level BPE merges are learned from ``texts``."""
    from transformers import CLIPTokenizer

    symbols = byte_symbols()
    words = Counter()
    for text in texts:
        for word in _CLIP_WORDS.findall(" ".join(text.lower().split())):
            chars = tuple(symbols[b] for b in word.encode("utf-8"))
            words[chars[:-1] + (chars[-1] + WORD_END,)] += 1

    base = [symbols[b] for b in range(256)]
    vocab_tokens = base + [symbol + WORD_END for symbol in base]
    merges = learn_bpe_merges(words, max(vocab_size - len(vocab_tokens) - 2, 0))
    vocab_tokens += ["".join(pair) for pair in merges] + [CLIP_BOS, CLIP_EOS]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(vocab_tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length,
                         bos_token=CLIP_BOS, eos_token=CLIP_EOS, pad_token=CLIP_EOS, unk_token=CLIP_EOS)


def train_wordpiece(texts: Iterable[str], vocab_size: int, max_length: int):
    """Return a ``BertTokenizer`` whose vocabulary contains every character and the most frequent words of ``texts``."""
    from tokenizers import normalizers, pre_tokenizers
    from transformers import BertTokenizer

    normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words, pieces = Counter(), Counter()
    for text in texts:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            words[word] += 1
            pieces[word[0]] += 1
            pieces.update("##" + char for char in word[1:])
    # Latin letters and digits stay readable in mixed-language prompts even when the captions lack them.
    for char in "abcdefghijklmnopqrstuvwxyz0123456789":
        pieces.update([char, "##" + char])

    by_frequency = lambda counts: sorted(counts, key=lambda token: (-counts[token], token))  # noqa: E731
    whole_words = Counter({word: count for word, count in words.items() if len(word) > 1})
    tokens = list(dict.fromkeys(BERT_SPECIAL + by_frequency(pieces) + by_frequency(whole_words)))[:vocab_size]
    tokenizer = BertTokenizer(vocab={token: index for index, token in enumerate(tokens)},
                              model_max_length=max_length)
    for name, token in (("pad", "[PAD]"), ("unk", "[UNK]"), ("cls", "[CLS]"), ("sep", "[SEP]"), ("mask", "[MASK]")):
        setattr(tokenizer, f"{name}_token", token)
    return tokenizer


def build_t5_unigram(texts: Iterable[str], vocab_size: int, max_length: int):
    """Return a ``T5Tokenizer`` whose unigram vocabulary contains every character and the most frequent words of ``texts``.

    Each piece scores the log of its relative frequency, as a trained unigram model would.
    """
    import math

    from transformers import T5Tokenizer

    words, chars = Counter(), Counter()
    for text in texts:
        for word in text.lower().split():
            words["\u2581" + word] += 1
            chars.update(word)
    chars.update("abcdefghijklmnopqrstuvwxyz0123456789")
    special = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", 0.0)]
    total = sum(words.values()) + sum(chars.values())
    frequent = sorted(words, key=lambda word: (-words[word], word))[:max(vocab_size - len(special) - len(chars), 0)]
    pieces = [(piece, math.log(counts[piece] / total)) for counts, ordered in ((chars, sorted(chars)), (words, frequent))
              for piece in ordered]
    return T5Tokenizer(vocab=special + pieces, extra_ids=0, model_max_length=max_length)
