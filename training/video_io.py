"""Reading and writing video files safely (ffmpeg through imageio-ffmpeg).

Writing makes browser-playable H.264 (yuv420p, even sizes, +faststart). Reading checks the
container by its bytes, not its name, and probes size and duration before decoding a
single frame, so a corrupt, disguised or enormous file is refused with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_SIDE = 4096
MAX_FRAMES = 2000
MAX_SECONDS = 600.0


class VideoError(ValueError):
    """A file that is not a readable, acceptable video; the message says why."""


@dataclass
class VideoMeta:
    width: int
    height: int
    fps: float
    duration: float  # seconds
    container: str


def sniff_container(head: bytes) -> str | None:
    """The container a file really is, from its first bytes (None if not a known video)."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


def probe(path: str | Path) -> VideoMeta:
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(16)
    kind = sniff_container(head)
    if kind is None:
        raise VideoError(f"{path.name}: not a video (its bytes are not mp4, webm, avi or gif)")
    import imageio_ffmpeg

    try:
        gen = imageio_ffmpeg.read_frames(str(path))
        meta = next(gen)
        gen.close()
    except Exception as e:  # ffmpeg's own words about the damage
        raise VideoError(f"{path.name}: unreadable {kind} ({str(e).strip().splitlines()[-1][:160]})") from e
    w, h = meta.get("size", (0, 0))
    fps = float(meta.get("fps") or 0.0)
    dur = float(meta.get("duration") or 0.0)
    if w <= 0 or h <= 0:
        raise VideoError(f"{path.name}: no video stream")
    if max(w, h) > MAX_SIDE:
        raise VideoError(f"{path.name}: {w}x{h} is larger than {MAX_SIDE} pixels a side")
    if dur > MAX_SECONDS:
        raise VideoError(f"{path.name}: {dur:.0f} s is longer than {MAX_SECONDS:.0f} s")
    return VideoMeta(int(w), int(h), fps, dur, kind)


def read_video(path: str | Path, max_frames: int = MAX_FRAMES) -> tuple[np.ndarray, VideoMeta]:
    """(frames (T, H, W, 3) uint8, meta) after probing; raises VideoError with a reason."""
    meta = probe(path)
    import imageio_ffmpeg

    frames = []
    try:
        gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        next(gen)
        for buf in gen:
            frames.append(np.frombuffer(buf, np.uint8).reshape(meta.height, meta.width, 3))
            if len(frames) >= max_frames:
                gen.close()
                break
    except Exception as e:
        raise VideoError(f"{Path(path).name}: decoding failed after {len(frames)} frames ({e})") from e
    if not frames:
        raise VideoError(f"{Path(path).name}: the video has no frames")
    return np.stack(frames), meta


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = 8, upscale: int = 1, crf: int = 12) -> Path:
    """Write a uint8 clip (T, H, W, 3) as browser-playable H.264 (nearest-neighbour upscale)."""
    import imageio_ffmpeg

    if upscale > 1:
        frames = frames.repeat(upscale, axis=1).repeat(upscale, axis=2)
    T, H, W, _ = frames.shape
    if H % 2 or W % 2:  # yuv420p needs even sizes
        frames = np.pad(frames, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)), mode="edge")
        T, H, W, _ = frames.shape
    path = Path(path)
    w = imageio_ffmpeg.write_frames(
        str(path), (W, H), fps=fps, codec="libx264", pix_fmt_out="yuv420p", macro_block_size=1,
        output_params=["-crf", str(crf), "-movflags", "+faststart"], ffmpeg_log_level="error")
    w.send(None)
    for f in frames:
        w.send(np.ascontiguousarray(f))
    w.close()
    return path
