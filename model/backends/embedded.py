"""The embedded backend: the project's own OmniPipeline (CPU, 32x32, the world engine's universe)
behind the backend interface. A thin adapter: the pipeline does the work, this says what it serves."""

from __future__ import annotations

from pathlib import Path

from ..mvl import TASKS, MVLRequest
from .base import BackendOutput, Capabilities, StepCallback, UnsupportedRequest

NAME = "embedded"
NO_SR = "this model directory has no super-resolution stage (sr/): set upscale to false"


def has_sr(model: str | Path | None) -> bool:
    """Whether a model directory carries the SR stage (DESIGN 3.4: its own component folder)."""
    return model is not None and (Path(str(model)) / "sr" / "config.json").is_file()


def refused(model: str | Path | None = None) -> dict[str, str]:
    return {} if has_sr(model) else {"upscale": NO_SR}


def static_check(request: MVLRequest, model: str | Path | None = None) -> str:
    """What can be said of a stored request without loading the model: the family (or None when the
    enhancer will infer it; every family is served), and whether `upscale` can be (the directory's
    sr/ folder; unknown directory = refused). Sizes are checked by the pipeline itself."""
    if request.upscale and not has_sr(model):
        raise UnsupportedRequest(f"upscale is not served by the {NAME} backend: {NO_SR}")
    return request.task or "inferred by the enhancer"


class EmbeddedBackend:
    name = NAME

    def __init__(self, pipeline):
        self.pipeline = pipeline  # an OmniPipeline

    @classmethod
    def from_pretrained(cls, path: str | Path, adapter: str | None = None) -> "EmbeddedBackend":
        from ..pipeline import OmniPipeline

        if adapter:
            raise ValueError("the embedded backend merges its LoRA adapters into the model directory; "
                             "register the merged directory without an adapter")
        pipe = OmniPipeline.from_pretrained(path)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe)

    @property
    def enhancer(self):
        return self.pipeline.enhancer

    def capabilities(self) -> Capabilities:
        c = self.pipeline.config
        sr = self.pipeline.sr is not None
        return Capabilities(NAME, {t: "the Omni-Generator's own conditioning" for t in TASKS},
                            {} if sr else {"upscale": NO_SR},
                            f"{c.size}x{c.size}, 1..{c.frames} frames" + (", 4x super-resolution" if sr else ""))

    def check(self, request: MVLRequest) -> str:
        self.pipeline.check_inputs(request)
        return request.task or self.pipeline.enhancer.enhance(request).task

    def __call__(self, request: MVLRequest, seed: int | None = None,
                 callback_on_step_end: StepCallback | None = None) -> BackendOutput:
        out = self.pipeline(request, seed=seed, callback_on_step_end=callback_on_step_end)
        return BackendOutput(out.frames, out.enhanced, {"backend": NAME, "family": out.enhanced.task})
