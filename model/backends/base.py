"""The backend interface (DESIGN 3.5): what the studio's worker, registry and UI drive.

A backend is loaded from a model directory or id (optionally with a LoRA adapter), takes an
`MVLRequest`, a seed and a step callback (progress and cancel), and returns the frames and
the prompt enhancer's plan. It says which task families and sizes it serves; a request it
cannot serve is refused with an `UnsupportedRequest` that names the family and the backend,
and the same check runs on the stored request before a job is queued (`check_request`), so
no job is made for it.

    backend = load_backend("wan", "Wan-AI/Wan2.1-VACE-1.3B-diffusers")
    out = backend(request, seed=3, callback_on_step_end=on_step)   # out.frames (T, H, W, 3) uint8
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from ..mvl import MVLRequest, MVLValidationError
from ..prompt_enhancer import Enhanced

# callback_on_step_end(backend, step, timestep, tensors) -> tensors; raising stops the run (cancel)
StepCallback = Callable[[Any, int, float, dict], "dict | None"]


class UnsupportedRequest(MVLValidationError):
    """A request this backend cannot serve; the message names the family, the backend and what to do."""


@dataclass
class BackendOutput:
    frames: np.ndarray  # (T, H, W, 3) uint8
    enhanced: Enhanced  # the enhancer's task, generator prompt and plan (with how the backend served it)
    info: dict = field(default_factory=dict)  # backend, family, how the request was mapped, timings


@dataclass(frozen=True)
class Capabilities:
    backend: str
    served: dict  # family -> how it is served
    refused: dict  # family -> why not (and what to do instead)
    sizes: str  # the sizes and frame counts served, in words


class Backend(Protocol):
    name: str
    enhancer: Any  # anything with enhance(MVLRequest) -> Enhanced

    def capabilities(self) -> Capabilities: ...

    def check(self, request: MVLRequest) -> str:
        """The family the request will be served as; raises UnsupportedRequest (or MVLValidationError)."""

    def __call__(self, request: MVLRequest, seed: int | None = None,
                 callback_on_step_end: StepCallback | None = None) -> BackendOutput: ...
