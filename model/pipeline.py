"""OmniPipeline: MVL request -> video, in the diffusers skeleton.

    pipe = OmniPipeline.from_pretrained("assets/models/omni-world")
    out = pipe(request)            # out.frames: (T, 32, 32, 3) uint8; out.enhanced: the PE's plan

Steps of `__call__`: check inputs, enhance, encode conditions, prepare latents, denoise
(tqdm bar, `callback_on_step_end`, `interrupt`, condition cache), decode. It writes no
files and prints nothing but the progress bar. The same request + seed + model gives the
same video.

A model directory (DESIGN 3.4): `model_index.json` + `vae/`, `generator/`, `enhancer/`,
`text_encoder/` (the tiny test encoder's weights, or a pointer to the MiniLM package), and
optionally `sr/`: the super-resolution stage (model/sr.py), run when a request sets `upscale`
(16 x 32 x 32 -> 16 x 128 x 128, conditioned on the request's reference images and subject views).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import flow_matching as fm
from .conditioning import SIDE, generator_conditions, without_text
from .generator import IMAGE, VIDEO, OmniGenerator
from .layout import MOTION_SOURCE_TASKS, LayoutPlan
from .precision import autocast, resolve_dtype
from .mvl import MVLRequest, MVLValidationError
from .prompt_enhancer import Enhanced, RuleEnhancer, Vocabulary
from .pixel_generator import PixelGenerator, request_context, sample_pixels
from .sr import SRStage
from .text_encoder import TextEncoderConfig, TinyTextEncoder, build_text_encoder
from .vae import VideoVAE, to_model_range, to_uint8

MODEL_FRAMES = 16
GUIDE_STRENGTH = 0.6  # a guide clip's default start level (OmniPipeline.__call__(guide=...))


@dataclass
class PipelineConfig:
    version: str = "dev"
    frames: int = MODEL_FRAMES
    size: int = SIDE
    shift: float = 3.0  # sampling schedule shift (flow_matching.schedule)
    default_steps: int = 10
    default_guidance: float = 3.0
    # few-step distilled (training/distill.py): guidance is in the weights, so one generator pass per step
    # (no unconditional row) whatever guidance the request asks for
    guidance_distilled: bool = False
    # image-to-video: the first latent frame is the encoded image at every step (as Wan2.2's TI2V
    # does), instead of only a condition the model may or may not follow
    anchor_first_frame: bool = True
    # video edits without a mask start from the source clip's latents noised to this level
    # (SDEdit, Meng et al. 2022) instead of pure noise: task family -> start level in (0, 1];
    # 1 (or absent) = from pure noise. Chosen per family on training-split cases
    # (python -m training.tune_edit_strength), never on OmniBench.
    edit_strength: dict = field(default_factory=dict)
    # ... and keep the source's own pixels where the edit changed nothing (paste-back, as masked
    # edits do outside their mask): a pixel counts as changed where the output differs from the
    # source's VAE reconstruction by more than the task's level (0..1, largest channel), grown by
    # `preserve_grow` px; the VAE's own error on the source then never reaches the result. Task
    # family -> level; absent = off. Chosen on training-split cases (training.tune_edit_strength).
    preserve_threshold: dict = field(default_factory=dict)
    preserve_grow: int = 1
    # the degradation level the SR stage is told its input has (0 = clean; training draws 0..1 with noise)
    sr_level: float = 0.0
    # stochastic sampling (flow_matching.sampler_step): the share of each step's noise drawn afresh instead of
    # the noise the model implies (0 = the deterministic Euler sampler; 1 = fully fresh, as ancestral samplers):
    # fresh noise lets later steps correct what earlier steps got wrong. Chosen on training-split cases.
    churn: float = 0.0
    # the pixel generator's guidance interval (lo, hi]: classifier-free guidance only at noise levels inside it, one
    # conditional pass elsewhere (Kynkaenniemi et al. 2024). Chosen on training-split cases; (0, 1] = every step.
    pixel_guidance_interval: tuple = (0.0, 1.0)
    notes: dict = field(default_factory=dict)  # training recipe, provenance


@dataclass
class OmniOutput:
    frames: np.ndarray  # (T, H, W, 3) uint8
    enhanced: Enhanced
    latents: torch.Tensor | None = None


def preserve_unchanged(frames: np.ndarray, source: np.ndarray, reconstruction: np.ndarray, level: float,
                       grow: int = 1) -> np.ndarray:
    """Paste-back for mask-free edits: where the output is within `level` (0..1, largest channel) of
    the source's reconstruction, and not within `grow` px of a pixel that is not, the source pixel."""
    changed = np.abs(frames.astype(np.int16) - reconstruction.astype(np.int16)).max(-1) > level * 255
    if grow > 0:  # a max filter over (2 grow + 1)^2 px, frame by frame
        k = 2 * grow + 1
        t = torch.from_numpy(changed).float()[:, None]
        changed = torch.nn.functional.max_pool2d(t, k, stride=1, padding=grow)[:, 0].numpy() > 0
    return np.where(changed[..., None], frames, source)


class OmniPipeline:
    def __init__(self, vae: VideoVAE, generator: OmniGenerator, text_encoder, enhancer: RuleEnhancer,
                 config: PipelineConfig | None = None, sr: SRStage | None = None,
                 pixel: PixelGenerator | None = None):
        self.vae = vae.eval()
        self.sr = sr.eval() if sr is not None else None
        self.pixel = pixel.eval() if pixel is not None else None  # the planned families it serves (config.tasks)
        self.generator = generator.eval()
        self.text_encoder = text_encoder
        self.enhancer = enhancer
        self.config = config or PipelineConfig()
        self.interrupt = False
        self._progress = True
        # sampling dtype: fp32 unless the host asks (OMNI_SAMPLE_DTYPE=auto|bf16): the same video for a
        # request + seed + version on every machine matters more than the speed bf16 gives where it is
        # native (benchmarks.generate measures both and the probe's choice)
        import os

        self.sample_dtype = os.environ.get("OMNI_SAMPLE_DTYPE", "fp32")

    def set_progress_bar_config(self, disable: bool = False) -> None:
        self._progress = not disable

    # ------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.vae.save_pretrained(d / "vae")
        self.generator.save_pretrained(d / "generator")
        self.enhancer.vocab.save(d / "enhancer")
        te = self.text_encoder
        if isinstance(te, TinyTextEncoder):
            te.save_pretrained(d / "text_encoder")
        else:
            (d / "text_encoder").mkdir(exist_ok=True)
            (d / "text_encoder" / "config.json").write_text(json.dumps({"_class": "MiniLMTextEncoder",
                                                                       **asdict(te.config)}, indent=1))
        components = {"vae": "VideoVAE", "generator": "OmniGenerator", "enhancer": "RuleEnhancer",
                      "text_encoder": type(te).__name__}
        if self.sr is not None:
            self.sr.save_pretrained(d / "sr")
            components["sr"] = "SRStage"
        if self.pixel is not None:
            self.pixel.save_pretrained(d / "pixel_generator")
            components["pixel_generator"] = "PixelGenerator"
        index = {"_class": "OmniPipeline", "config": asdict(self.config), "components": components}
        (d / "model_index.json").write_text(json.dumps(index, indent=1))
        return d

    def save_replacing(self, directory: str | Path) -> Path:
        """Save into DIRECTORY.tmp, then put it in DIRECTORY's place: a reader (the studio, a resumed run) never
        sees a half-written model, and a crash mid-save leaves the previous one whole."""
        import shutil

        final = Path(directory)
        tmp = final.with_name(final.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        self.save_pretrained(tmp)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        return final

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str = "cpu") -> "OmniPipeline":
        d = Path(directory)
        idx_path = d / "model_index.json"
        if not idx_path.is_file():
            raise FileNotFoundError(f"{d}: no model_index.json; not an Omni model directory")
        index = json.loads(idx_path.read_text())
        vae = VideoVAE.from_pretrained(d / "vae", device)
        gen = OmniGenerator.from_pretrained(d / "generator", device)
        te_raw = json.loads((d / "text_encoder" / "config.json").read_text())
        if te_raw.get("_class") == "TinyTextEncoder":
            te = TinyTextEncoder.from_pretrained(d / "text_encoder")
        else:
            te_raw.pop("_class", None)
            te = build_text_encoder(TextEncoderConfig(**te_raw))
        enhancer = RuleEnhancer(Vocabulary.load(d / "enhancer"), te)
        cfg = PipelineConfig(**index.get("config", {}))
        sr = SRStage.from_pretrained(d / "sr", device) if (d / "sr" / "config.json").is_file() else None
        pixel = PixelGenerator.from_pretrained(d / "pixel_generator", device) \
            if (d / "pixel_generator" / "config.json").is_file() else None
        return cls(vae, gen, te, enhancer, cfg, sr=sr, pixel=pixel)

    # ------------------------------------------------------------ generation
    def check_inputs(self, request: MVLRequest) -> None:
        request.validate()
        c = self.config
        if (request.height, request.width) != (c.size, c.size):
            raise MVLValidationError(f"the embedded model makes {c.size}x{c.size} clips; "
                                     f"got {request.width}x{request.height}: set width and height to {c.size}")
        if request.frames > c.frames:
            raise MVLValidationError(f"the embedded model makes at most {c.frames} frames; got frames={request.frames}")
        if request.upscale and self.sr is None:
            raise MVLValidationError(f"this model ({c.version}) has no super-resolution stage: set upscale to false, "
                                     "or use a version with one (an sr/ folder, python -m training.train_sr)")

    def progress_steps(self, request: MVLRequest, steps: int | None = None) -> int:
        """Callback calls a request makes: one per denoising step, and one more for the SR stage."""
        return (steps or request.steps or self.config.default_steps) + (1 if request.upscale and self.sr else 0)

    def upscale(self, frames: np.ndarray, request: MVLRequest, level: float | None = None) -> np.ndarray:
        """The SR stage on a base clip (T, 32, 32, 3) uint8 -> (T, 128, 128, 3), conditioned on the request's
        reference images (slots 1-8) and subject views (9 on) at their own resolution. `level`: how degraded the
        stage is told the clip is (0 = a clean render; default: the config's sr_level, for the generator's clips)."""
        sr = self.sr
        T = len(frames)
        clip = frames
        if T < self.config.frames:  # the stage's windows tile the model's frame count: pad with the last frame
            clip = np.concatenate([frames, np.repeat(frames[-1:], self.config.frames - T, 0)])
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float() / 127.5 - 1  # noqa: E731
        base = to_t(clip).permute(3, 0, 1, 2)[None]  # (1, 3, T, h, w)
        refs = [(i + 1, to_t(np.asarray(img)).permute(2, 0, 1)) for i, img in enumerate(request.images)]
        for j, views in enumerate(request.subjects.values()):
            refs += [(9 + j, to_t(np.asarray(v)).permute(2, 0, 1)) for v in views]
        with torch.no_grad():
            cond = sr.embed_conditions([refs])
            lvl = self.config.sr_level if level is None else level
            out = sr(base, cond, level=torch.tensor([float(lvl)]))
        out = to_uint8(out)[0].permute(1, 2, 3, 0)
        if sr.config.snap > 0:  # the base clip's own colours where the stage is already near them (model/sr.py)
            from .sr import snap_to_base

            out = snap_to_base(out, torch.from_numpy(np.ascontiguousarray(clip)), sr.config.snap, sr.config.scale)
        return out.numpy()[:T]

    def _pixel_serves(self, request: MVLRequest, enhanced: Enhanced) -> bool:
        """The pixel generator takes a request of a family it was trained on, with a plan to render and nothing
        it cannot read: a text-to-video-only one reads words and the plan (anything with pixels goes to the latent
        generator); one with context channels also reads images, library subjects' views and a context video
        (model/pixel_generator.pixel_context) and storyboard panels. Masks go to the latent generator."""
        if (self.pixel is None or enhanced.task not in self.pixel.config.tasks or enhanced.layout is None
                or enhanced.layout.is_empty() or request.mask is not None):
            return False
        return bool(self.pixel.config.context) or (not request.images and request.video is None and not request.subjects
                                                   and request.storyboard is None)

    def _pixel_call(self, request: MVLRequest, enhanced: Enhanced, steps: int, guidance: float, seed: int,
                    churn: float, callback_on_step_end, strength: float | None = None,
                    preserve: float | None = None, guide: tuple[float, np.ndarray] | None = None) -> OmniOutput:
        compute, _ = resolve_dtype(self.sample_dtype)
        it = None
        if self._progress:
            from tqdm.auto import tqdm

            it = tqdm(total=steps, desc="denoising (pixels)", leave=False)

        def on_step(i, s, x):
            if it is not None:
                it.update(1)
            if callback_on_step_end is not None:
                upd = callback_on_step_end(self, i, s * fm.TIMESTEP_SCALE, {"latents": x})
                if upd and "latents" in upd:
                    return upd["latents"]
            return None

        context, keep = request_context(self.pixel, request, enhanced.layout, enhanced.task)
        # an edit without a mask may start from its source noised to a level (SDEdit), as on the latent path:
        # only when the call or the request asks (the model's per-task levels were tuned for the latent path)
        start = strength if strength is not None else request.strength
        start = self._edit_start(request, enhanced.task, start if start is not None else 1.0)
        source = None
        if request.video is not None:
            from .conditioning import _fit_video

            source = _fit_video(np.asarray(request.video)[..., :3].astype(np.uint8), self.config.frames, self.config.size)
        init = source if start < 1.0 else None
        if guide is not None:  # a guide clip (its start level, the clip at the model's size): SDEdit from it
            start, init = guide
        frames = sample_pixels(self.pixel, self.text_encoder, enhanced.prompt, enhanced.layout, seed, steps, guidance,
                               self.config.shift, compute, on_step, lambda: self.interrupt, churn,
                               context=context, keep=keep,
                               init=init, start=start,
                               guidance_interval=tuple(self.config.pixel_guidance_interval))
        if it is not None:
            it.close()
        level = self._preserve_level(request, enhanced.task, preserve)
        if level is not None:  # an edit keeps the source's pixels where it changed nothing (no VAE: the source is
            # its own reconstruction here)
            frames = preserve_unchanged(frames, source[: len(frames)], source[: len(frames)], level,
                                        self.config.preserve_grow)
        frames = self._super_resolve(frames[: request.frames], request, steps, callback_on_step_end)
        return OmniOutput(frames=frames, enhanced=enhanced)

    def _super_resolve(self, frames: np.ndarray, request: MVLRequest, steps: int, callback_on_step_end) -> np.ndarray:
        """Step 7 of either generator's path: the SR stage when the request asks for it and was not interrupted,
        reported to the callback as one more step."""
        if request.upscale and self.sr is not None and not self.interrupt:
            frames = self.upscale(frames, request)
            if callback_on_step_end is not None:
                callback_on_step_end(self, steps, 0.0, {"stage": "super-resolution"})
        return frames

    def _anchors_first_frame(self, request: MVLRequest, task: str) -> bool:
        return (self.config.anchor_first_frame and task == "i2v" and len(request.images) >= 1
                and request.video is None)

    @staticmethod
    def _piece(pieces, kind: int, slot: int | None = None) -> torch.Tensor:
        """The latents build_conditions already encoded for a condition: (1, C, T, h, w)."""
        return next(p.data for p in pieces if p.kind == kind and (slot is None or p.slot == slot))[None]

    def _first_frame_anchor(self, pieces, shape: tuple, g: torch.Generator) -> dict:
        """The known first frame as a region to keep: latent frame 0 (frames 0-1) follows the noising
        path of @Image_1's latents; the rest is generated. No pixel is pasted: the first frame is the
        model's decoding of the image's latent."""
        z = torch.zeros(shape)
        z[:, :, :1] = self._piece(pieces, IMAGE, slot=1)[:, :, :1]
        m = torch.ones(1, 1, shape[2], 1, 1)
        m[:, :, 0] = 0
        return {"z": z, "m": m, "noise": torch.randn(shape, generator=g), "pixels": None, "source": None}

    def _masked_edit(self, request: MVLRequest, pieces, g: torch.Generator) -> dict:
        """Masked editing (blended latent diffusion, Avrahami et al. 2023): the source clip's latents
        (the context-video condition's), the mask on the latent grid (a latent cell may change when
        any of its pixels may) and on the pixel grid, and the noise that re-noises the source."""
        from model.conditioning import _fit, _fit_video

        side = self.config.size
        z = self._piece(pieces, VIDEO)
        source = _fit_video(np.asarray(request.video), self.config.frames, side)
        pixels = _fit(np.asarray(request.mask), side).max(axis=2) > 127
        cell = side // z.shape[-1]
        m = torch.from_numpy(pixels.reshape(z.shape[-2], cell, z.shape[-1], cell).any(axis=(1, 3)))
        return {"z": z, "m": m.float()[None, None, None], "noise": torch.randn(z.shape, generator=g),
                "pixels": pixels, "source": source}

    @staticmethod
    def _guide_start(strength: float | None) -> float:
        start = GUIDE_STRENGTH if strength is None else float(strength)
        if not 0.0 < start < 1.0:
            raise MVLValidationError(f"strength with a guide clip must be in (0, 1) (the noise level denoising starts "
                                     f"from; 1 would ignore the guide); got {strength}")
        return start

    def _fit_guide(self, guide: np.ndarray) -> np.ndarray:
        from .conditioning import _fit_video

        g = np.asarray(guide)
        if g.ndim != 4 or g.shape[-1] < 3:
            raise MVLValidationError(f"a guide clip must be (frames, height, width, 3); got shape {g.shape}")
        return _fit_video(g[..., :3].astype(np.uint8), self.config.frames, self.config.size)

    def _edit_start(self, request: MVLRequest, task: str, strength: float | None) -> float:
        """The noise level denoising starts from: below 1 only for a video edit without a mask.
        The call's strength, else the request's, else the model's choice for the task."""
        if strength is None:
            strength = request.strength
        if strength is None:
            strength = self.config.edit_strength.get(task, 1.0)
        if not 0.0 < strength <= 1.0:
            raise MVLValidationError(f"strength must be in (0, 1] (1 = from pure noise); got {strength}")
        if request.video is None or request.mask is not None or task in MOTION_SOURCE_TASKS:
            return 1.0  # (a motion source's pixels are not the clip's)
        return float(strength)

    def _preserve_level(self, request: MVLRequest, task: str, preserve: float | None) -> float | None:
        """The paste-back level for a mask-free video edit (None: off). The call's, else the request's,
        else the model's choice for the task; 0 turns it off."""
        if request.video is None or request.mask is not None or task in MOTION_SOURCE_TASKS:
            return None
        if preserve is None:
            preserve = request.preserve
        level = self.config.preserve_threshold.get(task) if preserve is None else preserve
        if level is None or level == 0:
            return None
        if not 0.0 < level < 1.0:
            raise MVLValidationError(f"preserve must be in [0, 1) (0 = off); got {level}")
        return float(level)

    @torch.no_grad()
    def source_and_reconstruction(self, request: MVLRequest) -> tuple[np.ndarray, np.ndarray]:
        """The context video at the model's size (uint8) and its VAE reconstruction: what an edit
        that changed nothing would decode to (the source itself where the pixel generator renders the edit)."""
        from model.conditioning import _fit_video

        source = _fit_video(np.asarray(request.video), self.config.frames, self.config.size)
        if self._pixel_serves(request, self.enhancer.enhance(request)):  # no VAE on the pixel path
            return source, source
        z = self.vae.encode(to_model_range(torch.from_numpy(source[None])))
        return source, to_uint8(self.vae.decode(z, self.config.frames))[0].numpy()

    @torch.no_grad()
    def __call__(self, request: MVLRequest, steps: int | None = None, guidance: float | None = None,
                 seed: int | None = None, enhance: bool = True, strength: float | None = None,
                 preserve: float | None = None, layout: LayoutPlan | None = None, churn: float | None = None,
                 callback_on_step_end: Callable[["OmniPipeline", int, float, dict], dict | None] | None = None,
                 return_latents: bool = False, guide: np.ndarray | None = None) -> OmniOutput:
        """One clip for `request`. `guide` (frames, H, W, 3) uint8: denoising starts from that clip noised to level
        `strength` (default GUIDE_STRENGTH; SDEdit, Meng et al. 2022) whatever the task, so that samples of one
        request share the guide's structure and differ in details (DenseDPO's pairs from one source)."""
        # 1. check inputs
        self.check_inputs(request)
        steps = steps or request.steps or self.config.default_steps
        guidance = request.guidance if guidance is None else guidance
        seed = request.seed if seed is None else seed
        churn = self.config.churn if churn is None else churn
        if not 0.0 <= churn <= 1.0:
            raise ValueError(f"churn {churn}: the share of fresh noise per step must be in [0, 1]")
        if guide is not None:  # checked, and fitted to the model's size, once, before any work
            guide = (self._guide_start(strength), self._fit_guide(guide))
        self.interrupt = False
        # 2. enhance
        enhanced = self.enhancer.enhance(request) if enhance else Enhanced(request.prompt, request.task or "t2v", [])
        if layout is not None:  # a layout given by the caller (a user's own, or a diagnostic) replaces the plan
            enhanced.layout = layout
        if self._pixel_serves(request, enhanced):
            return self._pixel_call(request, enhanced, steps, guidance, seed, churn, callback_on_step_end,
                                    strength, preserve, guide)
        # 3. encode conditions: with text, and without it (the classifier-free guidance branch); the layout
        # plan is kept in both (guidance strengthens the words, the plan says where)
        pieces = generator_conditions([request], [enhanced], self.vae, self.text_encoder, self.generator.config,
                                      frames=self.config.frames)[0]
        use_cfg = guidance != 1.0 and not self.config.guidance_distilled
        batch = [pieces, without_text(pieces)] if use_cfg else [pieces]
        cond = self.generator.embed_conditions(batch)
        cache = self.generator.condition_cache(cond)  # computed once, reused at every step
        # 4. prepare latents
        C = self.vae.config.latent_channels
        lat_t = self.vae.latent_frames(self.config.frames)
        h = self.config.size // self.vae.config.spatial_down  # 8x8 latents (4x VAE) or 16x16 (2x VAE)
        g = torch.Generator().manual_seed(int(seed))
        x = torch.randn(1, C, lat_t, h, h, generator=g)
        keep = self._masked_edit(request, pieces, g) if request.mask is not None else None
        if keep is None and self._anchors_first_frame(request, enhanced.task):
            keep = self._first_frame_anchor(pieces, x.shape, g)
        start = self._edit_start(request, enhanced.task, strength)
        source_latents = self._piece(pieces, VIDEO) if start < 1.0 else None
        if guide is not None:  # a guide clip: SDEdit from its latents whatever the task
            start = guide[0]
            source_latents = self.vae.encode(to_model_range(torch.from_numpy(guide[1][None])))
        sig = fm.schedule(steps, self.config.shift) * start  # `steps` steps from the start level to 0
        if start < 1.0:  # the source clip noised to the start level (the same noise draw as above)
            x = fm.add_noise(source_latents, x, torch.tensor([start]))
        # 5. denoise
        compute, _ = resolve_dtype(self.sample_dtype)
        it = range(steps)
        if self._progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="denoising", leave=False)
        for i in it:
            if self.interrupt:
                break
            s, s_next = float(sig[i]), float(sig[i + 1])
            xin = torch.cat([x, x]) if use_cfg else x
            t = torch.full((xin.shape[0],), fm.to_timestep(torch.tensor(s)).item())
            with autocast("cpu", compute):
                v = self.generator(xin, t, cond, cache).float()
            if use_cfg:
                v_c, v_u = v.chunk(2)
                v = v_u + guidance * (v_c - v_u)
            x = fm.sampler_step(x, v, s, s_next, churn, g)
            if keep is not None:  # outside the mask the latents follow the source clip's own noising path
                x = keep["m"] * x + (1 - keep["m"]) * fm.add_noise(keep["z"], keep["noise"], torch.tensor([s_next]))
            if callback_on_step_end is not None:
                upd = callback_on_step_end(self, i, s * fm.TIMESTEP_SCALE, {"latents": x})
                if upd and "latents" in upd:
                    x = upd["latents"]
        # 6. decode
        frames = to_uint8(self.vae.decode(x, self.config.frames))[0].numpy()[: request.frames]
        if keep is not None and keep["pixels"] is not None:  # and the pixels outside it are the source's, exactly
            frames = np.where(keep["pixels"][None, :, :, None], frames, keep["source"][: len(frames)])
        level = self._preserve_level(request, enhanced.task, preserve)
        if level is not None:
            source, rec = self.source_and_reconstruction(request)
            frames = preserve_unchanged(frames, source[: len(frames)], rec[: len(frames)], level,
                                        self.config.preserve_grow)
        # 7. super-resolution (Kling-Omni's third stage), when asked for and not interrupted
        frames = self._super_resolve(frames, request, steps, callback_on_step_end)
        return OmniOutput(frames=frames, enhanced=enhanced, latents=x if return_latents else None)
