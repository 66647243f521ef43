"""Scenes of one coloured shape on a plain background, rendered as small RGB images."""

import itertools
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
COLOURS = ("red", "green", "blue", "yellow")
POSITIONS = ("left", "centre", "right")
SIZES = ("small", "large")
ATTRIBUTES = {"shape": SHAPES, "colour": COLOURS, "position": POSITIONS, "size": SIZES}

RESOLUTION = 32
_SUPERSAMPLE = 4  # drawn at 4x and reduced with a box filter, which anti-aliases the edges
_RGB = {"red": (215, 45, 40), "green": (45, 175, 70), "blue": (50, 85, 225), "yellow": (230, 205, 45)}
_CENTRE_X = {"left": 0.25, "centre": 0.5, "right": 0.75}  # fractions of the width
_RADIUS = {"small": 0.12, "large": 0.22}

# Combinations never shown in training (teacher, judge excepted, and student), to test composition.
HELD_OUT = (
    ("circle", "yellow", "left"),
    ("square", "blue", "right"),
    ("triangle", "red", "centre"),
)


@dataclass(frozen=True)
class Scene:
    """The attributes of one scene."""

    shape: str
    colour: str
    position: str
    size: str

    def labels(self) -> dict[str, int]:
        """Return each attribute's index in `ATTRIBUTES`."""
        return {name: values.index(getattr(self, name)) for name, values in ATTRIBUTES.items()}

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def is_held_out(self) -> bool:
        return (self.shape, self.colour, self.position) in HELD_OUT


def all_scenes() -> list[Scene]:
    """Return every attribute combination, in a fixed order."""
    return [Scene(*values) for values in itertools.product(SHAPES, COLOURS, POSITIONS, SIZES)]


def training_scenes() -> list[Scene]:
    return [scene for scene in all_scenes() if not scene.is_held_out()]


def held_out_scenes() -> list[Scene]:
    return [scene for scene in all_scenes() if scene.is_held_out()]


def sample_scenes(count: int, rng: np.random.Generator, held_out: bool = False) -> list[Scene]:
    """Draw ``count`` scenes uniformly from the training combinations (or from the held-out ones)."""
    pool = held_out_scenes() if held_out else training_scenes()
    return [pool[i] for i in rng.integers(0, len(pool), size=count)]


def render(scene: Scene, rng: np.random.Generator, resolution: int = RESOLUTION) -> Image.Image:
    """Draw ``scene`` with random jitter of position, size, hue and background brightness."""
    side = resolution * _SUPERSAMPLE
    background = int(rng.integers(20, 60))
    image = Image.new("RGB", (side, side), (background,) * 3)
    radius = (_RADIUS[scene.size] + rng.uniform(-0.015, 0.015)) * side
    centre_x = (_CENTRE_X[scene.position] + rng.uniform(-0.04, 0.04)) * side
    centre_y = (0.5 + rng.uniform(-0.12, 0.12)) * side
    colour = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in _RGB[scene.colour])
    _draw_shape(ImageDraw.Draw(image), scene.shape, centre_x, centre_y, radius, colour)
    return image.resize((resolution, resolution), Image.Resampling.BOX)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, radius: float, colour: tuple) -> None:
    if shape == "circle":
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    elif shape == "square":
        half = radius * 0.88  # a square of the circle's area looks the same size
        draw.rectangle((x - half, y - half, x + half, y + half), fill=colour)
    elif shape == "triangle":
        draw.polygon([(x, y - radius * 1.1), (x - radius * 1.1, y + radius * 0.8), (x + radius * 1.1, y + radius * 0.8)],
                     fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")


def render_batch(scenes: list[Scene], rng: np.random.Generator) -> np.ndarray:
    """Return rendered scenes as uint8 (N, H, W, 3)."""
    return np.stack([np.asarray(render(scene, rng)) for scene in scenes])
