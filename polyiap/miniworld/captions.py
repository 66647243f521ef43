"""Captions of scenes in English, Chinese, Japanese and German.

Each language has several templates with its own word order and several synonyms per attribute, so a
student cannot learn the world by copying English word positions.
"""

import numpy as np

from polyiap.miniworld.scenes import Scene

LANGUAGES = ("en", "zh", "ja", "de")

_WORDS = {
    "en": {
        "circle": ["circle", "disc", "round dot"], "square": ["square", "box"], "triangle": ["triangle"],
        "red": ["red"], "green": ["green"], "blue": ["blue"], "yellow": ["yellow"],
        "small": ["small", "little", "tiny"], "large": ["large", "big"],
        "left": ["on the left", "at the left side"], "centre": ["in the middle", "in the centre"],
        "right": ["on the right", "at the right side"],
    },
    "zh": {
        "circle": ["圆形", "圆"], "square": ["正方形", "方块"], "triangle": ["三角形", "三角"],
        "red": ["红色", "红"], "green": ["绿色", "绿"], "blue": ["蓝色", "蓝"], "yellow": ["黄色", "黄"],
        "small": ["小", "小小"], "large": ["大", "大大"],
        "left": ["左边", "左侧"], "centre": ["中间", "中央"], "right": ["右边", "右侧"],
    },
    "ja": {
        "circle": ["丸", "円"], "square": ["四角", "正方形"], "triangle": ["三角", "三角形"],
        "red": ["赤い", "赤色の"], "green": ["緑の", "緑色の"], "blue": ["青い", "青色の"],
        "yellow": ["黄色い", "黄色の"],
        "small": ["小さい", "小さな"], "large": ["大きい", "大きな"],
        "left": ["左", "左側"], "centre": ["真ん中", "中央"], "right": ["右", "右側"],
    },
    "de": {
        "small": ["klein", "winzig"], "large": ["groß", "riesig"],
        "red": ["rot"], "green": ["grün"], "blue": ["blau"], "yellow": ["gelb"],
        "left": ["links", "auf der linken Seite"], "centre": ["in der Mitte", "mittig"],
        "right": ["rechts", "auf der rechten Seite"],
    },
}

# German nouns with their gender, which sets the article and the adjective endings.
_GERMAN_NOUNS = {
    "circle": [("Kreis", "m"), ("Scheibe", "f")],
    "square": [("Quadrat", "n"), ("Viereck", "n")],
    "triangle": [("Dreieck", "n")],
}
_GERMAN_ARTICLE = {"m": "ein", "n": "ein", "f": "eine"}
_GERMAN_ENDING = {"m": "er", "n": "es", "f": "e"}  # adjective after the indefinite article, nominative

# Sentence-final forms of the Japanese size adjectives (大きな and 小さな only stand before a noun).
_JAPANESE_PREDICATE = {"small": "小さい", "large": "大きい"}

_TEMPLATES = {
    "en": [
        "a {size} {colour} {shape} {position}",
        "{position}, a {size} {colour} {shape}",
        "a {colour} {shape}, {size}, {position}",
        "there is a {size} {colour} {shape} {position}",
    ],
    "zh": [
        "{position}有一个{size}的{colour}{shape}",
        "一个{size}的{colour}{shape}在{position}",
        "{colour}{shape}，{size}，位于{position}",
        "画面{position}是一个{size}的{colour}{shape}",
    ],
    "ja": [
        "{position}に{size}{colour}{shape}",
        "{size}{colour}{shape}が{position}にある",
        "{position}にある{colour}{shape}、{size_predicate}",
        "{colour}{shape}が{position}に一つ、{size_predicate}",
    ],
    "de": [
        "{article} {size} {colour} {shape} {position}",
        "{position_cap} ist {article} {size} {colour} {shape}",
        "{article} {colour} {shape}, {size_plain}, {position}",
        "{shape}, {size_plain} und {colour_plain}, {position}",
    ],
}


def caption(scene: Scene, language: str, rng: np.random.Generator) -> str:
    """Return a caption of ``scene`` with a random template and random synonyms."""
    if language not in _TEMPLATES:
        raise ValueError(f"no miniature-world captions in {language!r}; available: {', '.join(LANGUAGES)}")
    template = _TEMPLATES[language][rng.integers(len(_TEMPLATES[language]))]
    words = _WORDS[language]
    pick = lambda key: words[key][rng.integers(len(words[key]))]  # noqa: E731
    fields = {"colour": pick(scene.colour), "size": pick(scene.size), "position": pick(scene.position)}
    if language == "de":
        return template.format(**_german_fields(scene, fields, rng))
    if language == "ja":
        fields["size_predicate"] = _JAPANESE_PREDICATE[scene.size]
    return template.format(shape=pick(scene.shape), **fields)


def _german_fields(scene: Scene, fields: dict, rng: np.random.Generator) -> dict:
    noun, gender = _GERMAN_NOUNS[scene.shape][rng.integers(len(_GERMAN_NOUNS[scene.shape]))]
    ending = _GERMAN_ENDING[gender]
    return {
        "article": _GERMAN_ARTICLE[gender], "shape": noun,
        "size": fields["size"] + ending, "colour": fields["colour"] + ending,
        "size_plain": fields["size"], "colour_plain": fields["colour"],
        "position": fields["position"], "position_cap": fields["position"][0].upper() + fields["position"][1:],
    }


def captions(scene: Scene, rng: np.random.Generator, languages=LANGUAGES) -> dict[str, str]:
    """Return one caption of ``scene`` per language, each drawn independently."""
    return {language: caption(scene, language, rng) for language in languages}
