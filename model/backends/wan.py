"""The Wan backend: Wan2.1-VACE (or any WanVACEPipeline directory) through diffusers.

    backend = WanBackend.from_pretrained("Wan-AI/Wan2.1-VACE-1.3B-diffusers")      # or a local directory
    backend = WanBackend.from_pretrained(path, adapter="runs/job-7/lora")           # + a LoRA adapter
    out = backend(request, seed=0, callback_on_step_end=on_step)

The request is mapped onto VACE's video / mask / reference_images per task family
(model/backends/vace.py); Wan's constraints are checked before anything runs (frames = 4k + 1,
height and width multiples of 16); families VACE cannot serve are refused with the reason.
Settings a GPU user expects are in `WanSettings` (dtype, device, flow_shift, negative prompt,
conditioning scale, CPU offload, VAE tiling / slicing), each readable from an environment
variable (`OMNI_WAN_<FIELD>`) so a Space sets them without code.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from ..mvl import REFERENCE_RE, TASKS, MVLRequest, MVLValidationError
from ..prompt_enhancer import Enhanced, RuleEnhancer, Vocabulary
from .base import BackendOutput, Capabilities, StepCallback, UnsupportedRequest
from .vace import FAMILIES, REFUSED, family_needs, vace_inputs

NAME = "wan"
SIZE_MULTIPLE = 16  # VAE stride 8 x patch 2
TIME_STRIDE = 4  # frames = 4k + 1
NEGATIVE_PROMPT = ("bright tones, overexposed, static, blurred details, subtitles, worst quality, low quality, "
                   "JPEG compression residue, ugly, deformed, disfigured, still picture, messy background")

# (height, width, frames, what it needs): Wan2.1's trained sizes. Memory measured by the Wan team for
# the 1.3B model at 480p (8.19 GB with offloading); the 14B model is the one for 720p.
PRESETS = {
    "480p": (480, 832, 81, "Wan2.1-VACE-1.3B: about 8 GB of GPU memory with model CPU offload, 16+ GB without; "
                           "flow_shift 3.0"),
    "480p-portrait": (832, 480, 81, "as 480p"),
    "480p-short": (480, 832, 33, "1.3B, a quick preview (about 2.5x faster than 81 frames)"),
    "720p": (720, 1280, 81, "Wan2.1-VACE-14B: 40+ GB (an A100 / H100 80 GB, or offloading); flow_shift 5.0"),
    "tiny": (16, 16, 5, "the tests' random-weight model on CPU"),
}


@dataclass
class WanSettings:
    dtype: str = "auto"  # auto = bf16 on CUDA, fp32 on CPU; or fp32 / bf16 / fp16
    device: str = "auto"  # auto = cuda when present, else cpu
    flow_shift: float | None = None  # None = the scheduler's own (Wan: 3.0 for 480p, 5.0 for 720p)
    negative_prompt: str = NEGATIVE_PROMPT
    conditioning_scale: float = 1.0  # strength of VACE's control stream
    extension_frames: int = 5  # frames of @Video a next / previous shot keeps
    max_sequence_length: int = 512  # UMT5 tokens (Wan's default)
    cpu_offload: bool = False  # enable_model_cpu_offload (needs an accelerator; raises on a CPU-only host)
    vae_tiling: bool = False  # decode in tiles: less memory at 720p
    vae_slicing: bool = False
    vae_fp32: bool = True  # the VAE in float32 beside a bf16 transformer (as Wan's examples load it)
    gpu_seconds: int = 120  # on a ZeroGPU Space: the GPU slice asked for per generation (spaces.GPU duration)

    @classmethod
    def from_env(cls, **overrides) -> "WanSettings":
        """Defaults, then OMNI_WAN_<FIELD> environment variables, then the given overrides."""
        kw = {}
        for f in fields(cls):
            raw = os.environ.get(f"OMNI_WAN_{f.name.upper()}")
            if raw is None:
                continue
            if f.type in ("bool", bool):
                kw[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            elif f.name == "flow_shift":
                kw[f.name] = float(raw) if raw.strip() else None
            elif f.type in ("float", float):
                kw[f.name] = float(raw)
            elif f.type in ("int", int):
                kw[f.name] = int(raw)
            else:
                kw[f.name] = raw
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)


def zero_gpu(fn, seconds: int):
    """On a Hugging Face Space with the `spaces` package (ZeroGPU hardware), the function wrapped in
    spaces.GPU so a GPU is attached for the call; anywhere else the function itself."""
    if not os.environ.get("SPACE_ID"):
        return fn
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=seconds)(fn)


def resolve_device_dtype(settings: WanSettings):
    import torch

    device = settings.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    names = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
    if settings.dtype == "auto":
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    elif settings.dtype in names:
        dtype = names[settings.dtype]
    else:
        raise ValueError(f"dtype {settings.dtype!r}: use auto, fp32, bf16 or fp16")
    return device, dtype


def apply_preset(request: MVLRequest, preset: str) -> MVLRequest:
    if preset not in PRESETS:
        raise MVLValidationError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    h, w, f, _ = PRESETS[preset]
    return replace(request, height=h, width=w, frames=f)


def infer_family(request: MVLRequest) -> str:
    """The family of a request without a task: the same structural rules as the rule enhancer
    (storyboard, arrows, boxes, an edit's words, subjects, images), which need no vocabulary."""
    return request.task or RuleEnhancer(Vocabulary()).infer_task(request, request.prompt)


def check_sizes(request: MVLRequest) -> None:
    f, h, w = request.frames, request.height, request.width
    if f % TIME_STRIDE != 1:
        lo = max(1, (f - 1) // TIME_STRIDE * TIME_STRIDE + 1)
        raise UnsupportedRequest(f"the {NAME} backend makes 4k+1 frames (1, 5, 9, ... 81); got frames={f}: "
                                 f"use {lo} or {lo + TIME_STRIDE}")
    for dim, v in (("height", h), ("width", w)):
        if v % SIZE_MULTIPLE:
            raise UnsupportedRequest(f"the {NAME} backend needs {dim} a multiple of {SIZE_MULTIPLE}; got {dim}={v}: "
                                     f"use {v // SIZE_MULTIPLE * SIZE_MULTIPLE or SIZE_MULTIPLE} or "
                                     f"{(v // SIZE_MULTIPLE + 1) * SIZE_MULTIPLE}")


def check_family(request: MVLRequest, family: str) -> str:
    if request.upscale:
        raise UnsupportedRequest(f"upscale is not served by the {NAME} backend: {REFUSED['upscale']}")
    why = family_needs(request, family)
    if why:
        raise UnsupportedRequest(f"task family {family} is not served by the {NAME} backend: {why}")
    return family


def static_check(request: MVLRequest) -> str:
    """Everything that can be checked on a stored request (media may be asset ids) without the model:
    sizes and the family. Returns the family; raises UnsupportedRequest."""
    check_sizes(request)
    return check_family(request, infer_family(request))


class WanPromptEnhancer:
    """The rule-based enhancer for a real model: the family from the request's structure, and the
    prompt in plain words (a text encoder trained on captions does not know `@Image_2`)."""

    def __init__(self, note: str | None = None):
        self.note = note

    @staticmethod
    def plain_prompt(request: MVLRequest) -> tuple[str, dict]:
        resolved: dict[str, str] = {}
        subjects = list(request.subjects)
        text = re.sub(r"^\s*@Image_1\s*:\s*", "", request.prompt) if request.images else request.prompt

        def sub(m):
            name = m.group(1)
            if name == "Video":
                word = "the video"
            elif name.startswith("Image_"):
                word = f"the subject of reference image {name.split('_', 1)[1]}"
            elif name in subjects:
                word = name.replace("_", " ")
            else:
                return m.group(0)
            resolved["@" + name] = word
            return word

        return REFERENCE_RE.sub(sub, text).strip(), resolved

    def enhance(self, request: MVLRequest) -> Enhanced:
        prompt, resolved = self.plain_prompt(request)
        task = infer_family(request)
        plan = [f"Task: {task.replace('_', ' ')}", f"Prompt for the generator: {prompt}"]
        plan += [f"Understood '{k}' as '{v}'" for k, v in resolved.items()]
        if self.note:
            plan.append(self.note)
        return Enhanced(prompt=prompt, task=task if task in TASKS else "t2v", plan=plan, resolved=resolved)


class WanBackend:
    name = NAME

    def __init__(self, pipe, settings: WanSettings | None = None, enhancer=None, model: str = "",
                 adapter: str | None = None):
        self.pipe = pipe  # a diffusers WanVACEPipeline, placed on its device
        self.settings = settings or WanSettings()
        self.enhancer = enhancer or WanPromptEnhancer()
        self.model, self.adapter = model, adapter
        self.device, self.dtype = resolve_device_dtype(self.settings)

    # ------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, model: str | Path, adapter: str | None = None, settings: WanSettings | None = None,
                        enhancer=None) -> "WanBackend":
        """A diffusers WanVACEPipeline directory or Hub id (the Hub is used only when HF_HUB_OFFLINE is
        not 1; otherwise the id must be in the local cache), plus an optional LoRA adapter directory."""
        import torch
        from diffusers import AutoencoderKLWan, WanVACEPipeline

        settings = settings or WanSettings.from_env()
        device, dtype = resolve_device_dtype(settings)
        if settings.cpu_offload and not device.startswith("cuda"):
            raise ValueError("cpu_offload (enable_model_cpu_offload) needs an accelerator, and this host has none: "
                             "set OMNI_WAN_CPU_OFFLOAD=0 or run on a GPU host")
        kw = {"dtype": dtype}
        if settings.vae_fp32 and dtype != torch.float32:
            kw["vae"] = AutoencoderKLWan.from_pretrained(str(model), subfolder="vae", dtype=torch.float32)
        pipe = WanVACEPipeline.from_pretrained(str(model), **kw)
        for m in (pipe.text_encoder, pipe.vae, pipe.transformer):
            m.eval()  # dropout off: a seed gives one video
        if settings.flow_shift is not None:
            cfg = pipe.scheduler.config
            key = "flow_shift" if "flow_shift" in cfg else "shift"
            pipe.scheduler = type(pipe.scheduler).from_config(cfg, **{key: float(settings.flow_shift)})
        if adapter:
            pipe.load_lora_weights(str(adapter), adapter_name="studio")
        if settings.vae_tiling:
            pipe.vae.enable_tiling()
        if settings.vae_slicing:
            pipe.vae.enable_slicing()
        if settings.cpu_offload:
            pipe.enable_model_cpu_offload()
        else:
            pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, settings, enhancer, str(model), adapter)

    # ------------------------------------------------------------ what it serves
    def capabilities(self) -> Capabilities:
        return Capabilities(NAME, dict(FAMILIES), dict(REFUSED),
                            f"frames 4k+1, height and width multiples of {SIZE_MULTIPLE}; presets: "
                            + ", ".join(f"{k} {w}x{h}x{f}" for k, (h, w, f, _) in PRESETS.items()))

    def check(self, request: MVLRequest) -> str:
        request.validate()
        return static_check(request)

    # ------------------------------------------------------------ generation
    def prepare(self, request: MVLRequest):
        """Steps 1-3 of a generation, shared with DPO training (training/dpo_wan.py): check the request,
        enhance it, map it onto VACE's inputs. Returns (enhanced, family, VaceInputs)."""
        # 1. check inputs (before the enhancer: a refusal costs nothing)
        request.validate()
        check_sizes(request)
        check_family(request, infer_family(request))
        # 2. enhance: the family the enhancer settles on must be servable too
        enhanced = self.enhancer.enhance(request)
        family = request.task or enhanced.task
        check_family(request, family)
        # an enhancer keeps the @references (an LLM is asked to); UMT5 reads them as plain words
        words, _ = WanPromptEnhancer.plain_prompt(replace(request, prompt=enhanced.prompt))
        # 3. map the request onto VACE's inputs
        inputs = vace_inputs(request, family, self.settings.extension_frames)
        plan = list(enhanced.plan) + [f"Backend: {NAME} ({Path(self.model).name or self.model}"
                                      + (f" + LoRA {Path(self.adapter).name}" if self.adapter else "") + ")"]
        plan += [f"VACE: {n}" for n in inputs.notes]
        return replace(enhanced, prompt=words, task=family, plan=plan), family, inputs

    def __call__(self, request: MVLRequest, seed: int | None = None,
                 callback_on_step_end: StepCallback | None = None) -> BackendOutput:
        import torch

        enhanced, family, inputs = self.prepare(request)
        seed = request.seed if seed is None else seed
        s = self.settings

        def on_step(pipe, i, t, tensors):
            if callback_on_step_end is None:
                return tensors
            upd = callback_on_step_end(self, i, float(t), tensors)
            return tensors if upd is None else upd

        # 4. denoise and decode (diffusers' own loop), on a ZeroGPU slice where the Space has one
        t0 = time.perf_counter()
        g = torch.Generator("cpu").manual_seed(int(seed))  # the same noise on every device

        def denoise():
            return self.pipe(prompt=enhanced.prompt, negative_prompt=s.negative_prompt, video=inputs.video,
                             mask=inputs.mask, reference_images=inputs.reference_images,
                             conditioning_scale=s.conditioning_scale, height=request.height, width=request.width,
                             num_frames=request.frames, num_inference_steps=request.steps,
                             guidance_scale=request.guidance, generator=g, output_type="np",
                             callback_on_step_end=on_step, max_sequence_length=s.max_sequence_length)

        out = zero_gpu(denoise, s.gpu_seconds)()
        frames = np.clip(np.asarray(out.frames[0], np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if len(frames) != request.frames:
            raise RuntimeError(f"the pipeline returned {len(frames)} frames for frames={request.frames}")
        return BackendOutput(frames, enhanced, {"backend": NAME, "family": family, "notes": inputs.notes,
                                                "seconds": round(time.perf_counter() - t0, 3),
                                                "device": self.device, "dtype": str(self.dtype)})
