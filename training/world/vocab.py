"""The OmniWorld vocabulary: every attribute a clip can have, and the held-out split.

One source of truth for names, colours and rates; the renderer, the samplers, the
perception checker and the prompt enhancer all read these tables.
"""

from __future__ import annotations

import math

import numpy as np

from model.layout import camera_transform as _camera_transform
from model.layout import motion_offsets

# Subject colours (RGB 0..1). No white: eyes are white. Pattern marks are DARK * colour.
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.12, 0.12),
    "orange": (1.00, 0.55, 0.05),
    "yellow": (0.98, 0.90, 0.10),
    "green": (0.20, 0.85, 0.25),
    "cyan": (0.10, 0.85, 0.90),
    "blue": (0.15, 0.30, 0.98),
    "purple": (0.60, 0.20, 0.90),
    "pink": (1.00, 0.50, 0.75),
}
DARK = 0.5  # brightness of pattern marks relative to the body colour
EYE_COLOR = (1.0, 1.0, 1.0)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "dome")
PATTERNS: tuple[str, ...] = ("plain", "striped", "checkered")
VIEWS: tuple[str, ...] = ("front", "left", "right", "back")  # which way the subject faces
SIZES: dict[str, int] = {"small": 9, "medium": 12, "large": 15}  # base-resolution pixels

# Backgrounds: flat and textured; "greenscreen" only appears in green-screen edits.
BACKGROUNDS: tuple[str, ...] = ("studio", "night", "desert", "meadow", "sky", "brick", "ocean", "greenscreen")
SCENE_BACKGROUNDS: tuple[str, ...] = BACKGROUNDS[:-1]
BACKGROUND_WORDS: dict[str, str] = {
    "studio": "in a grey studio", "night": "at night", "desert": "in the desert",
    "meadow": "on a meadow", "sky": "in the sky", "brick": "in front of a brick wall",
    "ocean": "by the ocean", "greenscreen": "on a green screen",
}

# Motions in base pixels per frame; tracks are exact functions of the frame index.
MOTIONS: tuple[str, ...] = ("still", "left", "right", "up", "down", "up_right", "down_left", "circle", "jump")
MOTION_WORDS: dict[str, str] = {
    "still": "stays still", "left": "moves left", "right": "moves right", "up": "moves up",
    "down": "moves down", "up_right": "moves diagonally up and to the right",
    "down_left": "moves diagonally down and to the left", "circle": "moves in a circle",
    "jump": "jumps up and down",
}
SPEED = 0.8  # px / frame for straight motions
DIAG_SPEED = 0.6  # px / frame on each axis
CIRCLE_RADIUS = 4.5
JUMP_HEIGHT = 6.0

CAMERAS: tuple[str, ...] = ("static", "pan_left", "pan_right", "zoom_in", "zoom_out")
CAMERA_WORDS: dict[str, str] = {
    "static": "", "pan_left": "the camera pans left", "pan_right": "the camera pans right",
    "zoom_in": "the camera zooms in", "zoom_out": "the camera zooms out",
}
PAN_SPEED = 0.5  # px / frame
ZOOM_RATE = 0.02  # relative scale change per frame

WEATHER: tuple[str, ...] = ("rain", "snow", "fog", "lightning", "sunset")
WEATHER_WORDS: dict[str, str] = {
    "rain": "make it rain", "snow": "make it snow", "fog": "add thick fog",
    "lightning": "add a lightning storm", "sunset": "turn it into a sunset",
}
STYLES: tuple[str, ...] = ("grayscale", "sepia", "neon", "pixel", "sketch")
STYLE_WORDS: dict[str, str] = {
    "grayscale": "black and white", "sepia": "sepia", "neon": "neon",
    "pixel": "pixel art", "sketch": "an outline sketch",
}
MATERIALS: tuple[str, ...] = ("glass", "gold", "ice", "stone")
EFFECTS: tuple[str, ...] = ("glow", "fire", "frost", "sparkles")
EFFECT_WORDS: dict[str, str] = {
    "glow": "starts to glow", "fire": "catches fire", "frost": "gets covered in frost",
    "sparkles": "is surrounded by sparkles",
}

# Named subjects of the library: a stable identity (shape, colour, pattern) seen from views.
NAMED_SUBJECTS: dict[str, tuple[str, str, str]] = {
    "Tigo": ("circle", "orange", "striped"),
    "Blip": ("square", "cyan", "checkered"),
    "Mira": ("triangle", "pink", "plain"),
    "Rook": ("diamond", "purple", "striped"),
    "Pip": ("dome", "yellow", "checkered"),
    "Kade": ("cross", "red", "plain"),
    "Nova": ("circle", "blue", "checkered"),
    "Zuzu": ("square", "green", "striped"),
    "Luma": ("dome", "pink", "striped"),
    "Bram": ("triangle", "orange", "checkered"),
    "Olli": ("diamond", "yellow", "plain"),
    "Vex": ("cross", "cyan", "striped"),
    # identities on held-out (colour, shape) pairs: benchmark-only characters
    "Glim": ("circle", "green", "checkered"),
    "Suri": ("diamond", "blue", "striped"),
    "Ember": ("triangle", "red", "striped"),
    "Plum": ("circle", "purple", "plain"),
}
# Everyday words for subjects, for the prompt enhancer ("kitty" -> the nearest subject).
NAMED_SUBJECT_NICKNAMES: dict[str, str] = {
    "Tigo": "striped orange cat", "Blip": "checkered cyan robot", "Mira": "pink pyramid fairy",
    "Rook": "purple striped crystal", "Pip": "yellow checkered chick", "Kade": "red cross medic",
    "Nova": "blue checkered planet", "Zuzu": "green striped box", "Luma": "pink striped jelly",
    "Bram": "orange checkered mountain", "Olli": "yellow gem", "Vex": "cyan striped star",
    "Glim": "green checkered frog", "Suri": "blue striped kite", "Ember": "red striped flame",
    "Plum": "purple ball",
}

# Held-out compositions: (colour, shape) pairs never rendered for a training sample.
# One per colour, each shape at least once, so every word is still seen in training.
HELD_OUT_PAIRS: frozenset[tuple[str, str]] = frozenset({
    ("red", "triangle"), ("orange", "square"), ("yellow", "cross"), ("green", "circle"),
    ("cyan", "dome"), ("blue", "diamond"), ("purple", "circle"), ("pink", "cross"),
})
# Named subjects whose identity is a held-out pair are benchmark-only.
HELD_OUT_SUBJECTS: frozenset[str] = frozenset(
    n for n, (shape, colour, _) in NAMED_SUBJECTS.items() if (colour, shape) in HELD_OUT_PAIRS)

# World knowledge and simple logic for the reasoning family: phrase -> attribute.
KNOWLEDGE_COLORS: dict[str, str] = {
    "the colour of a ripe banana": "yellow", "the colour of a ripe tomato": "red",
    "the colour of a pumpkin": "orange", "the colour of fresh grass": "green",
    "the colour of a clear daytime sky": "blue", "the colour of a flamingo": "pink",
    "the colour of an aubergine": "purple", "the colour of a tropical lagoon": "cyan",
    "the colour of a lemon": "yellow", "the colour of a strawberry": "red",
}
KNOWLEDGE_SHAPES: dict[str, str] = {
    "a shape with three corners": "triangle", "a shape with four equal sides and right angles": "square",
    "a shape as round as a coin": "circle", "a shape like a plus sign": "cross",
    "a shape like a kite standing on its tip": "diamond", "a shape like half a ball": "dome",
}
KNOWLEDGE_MOTIONS: dict[str, str] = {
    "falls like a dropped apple": "down", "rises like a helium balloon": "up",
    "heads west": "left", "heads east": "right", "bounces like a ball": "jump",
    "orbits like a moon": "circle", "does not move at all": "still",
}


MOTION_PARAMS = {"speed": SPEED, "diag_speed": DIAG_SPEED, "circle_radius": CIRCLE_RADIUS, "circle_period": 16.0,
                 "jump_height": JUMP_HEIGHT, "jump_period": 8.0, "pan_speed": PAN_SPEED, "zoom_rate": ZOOM_RATE}


def motion_track(motion: str, frames: int, start: tuple[float, float], t0: int = 0) -> np.ndarray:
    """Exact subject centre per frame, (frames, 2) as (x, y) in base pixels.

    `t0` offsets the time, so a later shot continues the same track. The formula is the one the
    prompt enhancer's layout planner uses (model/layout.py), with this world's parameters.
    """
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; known: {', '.join(MOTIONS)}")
    return (np.float32(start) + motion_offsets(motion, frames, MOTION_PARAMS, t0)).astype(np.float32)


def motion_extent(motion: str, frames: int) -> tuple[float, float, float, float]:
    """(min dx, max dx, min dy, max dy) of a track relative to its start."""
    tr = motion_track(motion, frames, (0.0, 0.0))
    return float(tr[:, 0].min()), float(tr[:, 0].max()), float(tr[:, 1].min()), float(tr[:, 1].max())


def camera_transform(camera: str, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (pan offset in base px, zoom factor). Screen = c + (world - c - pan) * zoom."""
    if camera not in CAMERAS:
        raise ValueError(f"unknown camera {camera!r}; known: {', '.join(CAMERAS)}")
    return _camera_transform(camera, frames, MOTION_PARAMS)


def color_distance(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).max())


def enhancer_vocabulary():
    """The prompt enhancer's vocabulary: what a model trained on this world knows."""
    from model.prompt_enhancer import Vocabulary

    return Vocabulary(
        colors=list(COLORS), shapes=list(SHAPES), patterns=list(PATTERNS), motions=dict(MOTION_WORDS),
        backgrounds={k: v for k, v in BACKGROUND_WORDS.items()}, weather=dict(WEATHER_WORDS),
        styles=dict(STYLE_WORDS), materials=list(MATERIALS), effects=dict(EFFECT_WORDS),
        knowledge_colors=dict(KNOWLEDGE_COLORS), knowledge_shapes=dict(KNOWLEDGE_SHAPES),
        knowledge_motions=dict(KNOWLEDGE_MOTIONS),
        palette={k: list(v) for k, v in COLORS.items()}, sizes=dict(SIZES), motion_params=dict(MOTION_PARAMS),
    )
