"""The world's named characters as a built-in subject library every project can use.

`@Tigo` (a striped orange circle), `@Blip`, `@Mira`, ... are OmniWorld identities the embedded
model learnt from several views. A prompt that names one, in a project whose own library has
no subject of that name, gets the character's views rendered by the world engine (front, left,
right: the views a subject_ref request carries), stored once in the media store (content
addressed, so the same asset ids every time). A project subject of the same name wins.

`prompt_subjects` is what the studio's tabs call: the subjects a prompt names (`@Name`), plus the
ones ticked in the page, resolved to asset ids; a name in neither library is refused by name.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from model.mvl import IMAGE_REF_RE, REFERENCE_RE

from .services import ServiceError, UserRecord
from .studio import Studio

VIEWS = ("front", "left", "right")


def builtin_names() -> list[str]:
    """Every character a prompt may name without a library subject (training-split ones first)."""
    from training.world.vocab import HELD_OUT_SUBJECTS, NAMED_SUBJECTS

    return [n for n in NAMED_SUBJECTS if n not in HELD_OUT_SUBJECTS] + sorted(HELD_OUT_SUBJECTS)


def describe(name: str) -> str:
    """'a striped orange circle' for Tigo."""
    from training.world.vocab import NAMED_SUBJECTS

    shape, colour, pattern = NAMED_SUBJECTS[name]
    return f"a {'' if pattern == 'plain' else pattern + ' '}{colour} {shape}"


@lru_cache(maxsize=32)
def _views(name: str) -> tuple[np.ndarray, ...]:
    from training.world.render import SubjectSpec, subject_on_plate
    from training.world.vocab import NAMED_SUBJECTS

    shape, colour, pattern = NAMED_SUBJECTS[name]
    return tuple(subject_on_plate(SubjectSpec(shape=shape, color=colour, pattern=pattern, view=v, size=14.0,
                                              name=name), "studio") for v in VIEWS)


def builtin_views(name: str) -> list[np.ndarray]:
    """The character's reference views, (32, 32, 3) uint8 each; KeyError for an unknown name."""
    if name not in builtin_names():
        raise KeyError(name)
    return [v.copy() for v in _views(name)]


def builtin_assets(studio: Studio, name: str) -> list[str]:
    return [studio.media.put_image_array(v, f"{name.lower()}-{view}.png").id
            for v, view in zip(builtin_views(name), VIEWS)]


def named_in(prompt: str) -> list[str]:
    """The subject names a prompt refers to (`@Name`, not `@Image_N` or `@Video`), in order."""
    out: list[str] = []
    for n in REFERENCE_RE.findall(prompt or ""):
        if n != "Video" and not IMAGE_REF_RE.match(n) and n not in out:
            out.append(n)
    return out


def prompt_subjects(studio: Studio, user: UserRecord, project_id: int, prompt: str,
                    ticked: list[str] | None = None) -> dict[str, list[str]]:
    """Subjects for a request: the ticked ones and every `@Name` the prompt uses, from the project's
    library first, then the world's characters. Raises ServiceError naming a subject found in neither."""
    lib = {s.name: list(s.image_ids) for s in studio.subjects.list(user, project_id)}
    wanted = list(dict.fromkeys(list(ticked or []) + named_in(prompt)))
    builtin = set(builtin_names())
    out: dict[str, list[str]] = {}
    for n in wanted:
        if n in lib:
            out[n] = lib[n]
        elif n in builtin:
            out[n] = builtin_assets(studio, n)
        else:
            known = sorted(lib) + [b for b in builtin_names() if b not in lib]
            raise ServiceError(f"@{n} is not in this project's subject library nor one of the world's characters: "
                               f"add it in the Subjects tab or fix the name (known: "
                               f"{', '.join('@' + k for k in known)})")
    return out
