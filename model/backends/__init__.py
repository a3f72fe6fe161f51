"""Backends (DESIGN 3.5): one interface, the embedded Omni model and Wan VACE through diffusers.

    backend = load_backend("wan", "Wan-AI/Wan2.1-VACE-1.3B-diffusers", adapter=None)
    family = check_request("wan", request)        # before a job is queued: refuses with the reason
    out = backend(request, seed=0, callback_on_step_end=cb)

The studio stores a version as (backend, model directory or id, optional LoRA adapter) and
asks only these functions; it never imports a backend's module itself.
"""

from __future__ import annotations

from ..mvl import MVLRequest
from .base import Backend, BackendOutput, Capabilities, UnsupportedRequest

BACKENDS = ("embedded", "wan")


def _unknown(backend: str) -> ValueError:
    return ValueError(f"unknown backend {backend!r}; backends: {', '.join(BACKENDS)}")


def load_backend(backend: str, model: str, adapter: str | None = None, **options) -> Backend:
    """Load a version: `options` go to the backend (the Wan backend takes `settings` and `enhancer`)."""
    if backend == "embedded":
        from .embedded import EmbeddedBackend

        return EmbeddedBackend.from_pretrained(model, adapter)
    if backend == "wan":
        from .wan import WanBackend

        return WanBackend.from_pretrained(model, adapter, **options)
    raise _unknown(backend)


def check_request(backend: str, request: MVLRequest | dict, model: str | None = None) -> str:
    """What can be refused without loading the model (the family, the sizes a backend makes, `upscale`
    where the `model` directory has no SR stage), on a request whose media may still be asset ids.
    Returns the family (or a note when the enhancer will infer it); raises UnsupportedRequest naming
    the family and the backend."""
    if isinstance(request, dict):
        request = MVLRequest.from_dict({k: v for k, v in request.items() if not k.startswith("_")})
    if backend == "embedded":
        from .embedded import static_check
    elif backend == "wan":
        from .wan import static_check

        return static_check(request)
    else:
        raise _unknown(backend)
    return static_check(request, model)


def fit_request(backend: str, request: MVLRequest) -> MVLRequest:
    """A request of another backend's sizes (an OmniWorld round: 16 frames at 32x32) at the nearest sizes
    this backend makes: for wan, frames up to the next 4k+1 and sides up to multiples of 16."""
    if backend == "wan":
        from dataclasses import replace

        from .wan import SIZE_MULTIPLE, TIME_STRIDE

        up = lambda v, m: -(-v // m) * m  # noqa: E731
        return replace(request, frames=up(request.frames - 1, TIME_STRIDE) + 1,
                       height=up(request.height, SIZE_MULTIPLE), width=up(request.width, SIZE_MULTIPLE))
    if backend == "embedded":
        return request
    raise _unknown(backend)


def capabilities(backend: str, model: str | None = None) -> Capabilities:
    """The families a backend serves and refuses, without loading a model (`model`: its directory,
    where what it serves depends on its components)."""
    if backend == "wan":
        from .vace import FAMILIES, REFUSED
        from .wan import NAME, PRESETS, SIZE_MULTIPLE

        return Capabilities(NAME, dict(FAMILIES), dict(REFUSED),
                            f"frames 4k+1, height and width multiples of {SIZE_MULTIPLE}; presets "
                            + ", ".join(PRESETS))
    if backend == "embedded":
        from ..mvl import TASKS
        from .embedded import NAME, has_sr, refused

        return Capabilities(NAME, {t: "the Omni-Generator's own conditioning" for t in TASKS}, refused(model),
                            "32x32, up to 16 frames" + (", 4x super-resolution" if has_sr(model) else ""))
    raise _unknown(backend)


__all__ = ["BACKENDS", "Backend", "BackendOutput", "Capabilities", "UnsupportedRequest", "capabilities",
           "check_request", "fit_request", "load_backend"]
