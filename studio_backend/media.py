"""The media store: every upload and output under `OMNI_HOME/media`, by content hash.

Uploads are checked before they are decoded: the format by content (never by name),
byte-size caps, the pixel count read from the header (a 50k x 50k PNG is refused before a
single pixel is allocated), video size and duration probed before decoding. Accepted
media are re-encoded (PNG for images, browser-playable H.264 for videos), hashed, and
stored as `media/ab/<sha256>.<ext>`; the original file name is kept only as a label.
Nothing outside the media folder is ever returned.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_IMAGE_BYTES = 20 * 2**20
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_VIDEO_BYTES = 200 * 2**20
MAX_VIDEO_FRAMES = 600
_ID_RE = re.compile(r"^[0-9a-f]{64}$")


class MediaError(ValueError):
    """An upload that cannot be stored; the message names the file and the fix."""


@dataclass(frozen=True)
class AssetInfo:
    id: str
    kind: str  # image | video
    width: int
    height: int
    frames: int
    original_name: str = ""
    ext: str = ""

    @property
    def rel_path(self) -> str:
        return f"{self.id[:2]}/{self.id}.{self.ext}"


def sniff_image(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


def safe_label(name: str) -> str:
    """A display label from a user's file name: no folders, no control characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^\w.\- ]", "_", base)[:120].strip(". ")
    return base or "upload"


class MediaStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------ writing
    def _store(self, data: bytes, kind: str, ext: str, width: int, height: int, frames: int, label: str) -> AssetInfo:
        digest = hashlib.sha256(data).hexdigest()
        info = AssetInfo(digest, kind, width, height, frames, safe_label(label), ext)
        path = self.root / info.rel_path
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # atomic: a crash never leaves half a file under the final name
        return info

    def put_image_bytes(self, data: bytes, name: str = "") -> AssetInfo:
        from PIL import Image, UnidentifiedImageError

        label = safe_label(name)
        if len(data) > MAX_IMAGE_BYTES:
            raise MediaError(f"{label}: {len(data) / 2**20:.1f} MB is over the {MAX_IMAGE_BYTES // 2**20} MB image limit")
        fmt = sniff_image(data[:16])
        if fmt is None:
            raise MediaError(f"{label}: not an image (its bytes are not PNG, JPEG, WebP or GIF)")
        if fmt == "png" and len(data) >= 24 and data[12:16] == b"IHDR":  # the size, straight from the header
            w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
            if w * h > MAX_IMAGE_PIXELS:
                raise MediaError(f"{label}: {w}x{h} is over the {MAX_IMAGE_PIXELS // 10**6} megapixel limit; "
                                 "downscale it first")
        try:
            im = Image.open(io.BytesIO(data))  # reads the header only
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise MediaError(f"{label}: {w}x{h} is over the {MAX_IMAGE_PIXELS // 10**6} megapixel limit; "
                                 "downscale it first")
            im.load()
            arr = np.asarray(im.convert("RGB"))
        except MediaError:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise MediaError(f"{label}: the {fmt.upper()} is damaged or truncated ({e})") from e
        return self.put_image_array(arr, label)

    def put_image_array(self, arr: np.ndarray, name: str = "image.png") -> AssetInfo:
        from PIL import Image

        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise MediaError(f"{safe_label(name)}: expected an RGB uint8 image, got {arr.dtype} {arr.shape}")
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        return self._store(buf.getvalue(), "image", "png", arr.shape[1], arr.shape[0], 1, name)

    def put_video_file(self, path: str | Path, name: str = "") -> AssetInfo:
        from training.video_io import VideoError, probe, read_video

        path = Path(path)
        label = safe_label(name or path.name)
        size = path.stat().st_size
        if size > MAX_VIDEO_BYTES:
            raise MediaError(f"{label}: {size / 2**20:.0f} MB is over the {MAX_VIDEO_BYTES // 2**20} MB video limit")
        try:
            meta = probe(path)
            if meta.width * meta.height > MAX_IMAGE_PIXELS:
                raise MediaError(f"{label}: {meta.width}x{meta.height} video frames are too large")
            frames, meta = read_video(path, max_frames=MAX_VIDEO_FRAMES)
        except VideoError as e:
            raise MediaError(f"{label}: {str(e).split(': ', 1)[-1]}") from e
        return self.put_video_array(frames, fps=int(round(meta.fps or 8)), name=label)

    def put_video_bytes(self, data: bytes, name: str = "") -> AssetInfo:
        if len(data) > MAX_VIDEO_BYTES:
            raise MediaError(f"{safe_label(name)}: over the {MAX_VIDEO_BYTES // 2**20} MB video limit")
        with tempfile.NamedTemporaryFile(suffix=".bin") as f:
            f.write(data)
            f.flush()
            return self.put_video_file(f.name, name)

    def put_video_array(self, frames: np.ndarray, fps: int = 8, name: str = "video.mp4") -> AssetInfo:
        from training.video_io import write_mp4

        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise MediaError(f"{safe_label(name)}: expected an RGB uint8 video, got {frames.dtype} {frames.shape}")
        T, H, W, _ = frames.shape
        up = max(1, 256 // max(H, W))  # tiny clips are stored enlarged (nearest) so browsers show them crisply
        with tempfile.TemporaryDirectory() as d:
            p = write_mp4(frames, Path(d) / "v.mp4", fps=fps, upscale=up)
            data = p.read_bytes()
        info = self._store(data, "video", "mp4", W * up, H * up, T, name)
        # keep the exact frames too: the mp4 is for people, the frames are for the model and the arena
        exact = self.root / info.id[:2] / f"{info.id}.npy"
        if not exact.exists():
            np.save(exact, frames)
        return info

    # ------------------------------------------------------------ reading
    def path_of(self, asset_id: str, ext: str) -> Path:
        if not _ID_RE.match(asset_id or "") or ext not in ("png", "mp4", "npy"):
            raise MediaError(f"{asset_id!r} is not an asset id")
        p = (self.root / asset_id[:2] / f"{asset_id}.{ext}").resolve()
        if self.root not in p.parents:
            raise MediaError(f"{asset_id!r} is outside the media store")
        if not p.is_file():
            raise MediaError(f"asset {asset_id[:12]}… is missing from the media store")
        return p

    def load_image(self, asset_id: str) -> np.ndarray:
        from PIL import Image

        return np.asarray(Image.open(self.path_of(asset_id, "png")).convert("RGB"))

    def load_video(self, asset_id: str) -> np.ndarray:
        return np.load(self.path_of(asset_id, "npy"))

    def resolve(self, request):
        """An MVL request whose media are asset ids, with the media loaded as arrays (in place)."""
        load = lambda x: self.load_image(x) if isinstance(x, str) else x  # noqa: E731
        request.images = [load(x) for x in request.images]
        request.subjects = {k: [load(x) for x in v] for k, v in request.subjects.items()}
        if isinstance(request.video, str):
            request.video = self.load_video(request.video)
        if isinstance(request.mask, str):
            request.mask = self.load_image(request.mask)
        if request.storyboard is not None:
            request.storyboard.panels = [load(x) for x in request.storyboard.panels]
            if isinstance(request.storyboard.grid, str):
                request.storyboard.grid = load(request.storyboard.grid)
        return request

    def thumbnail(self, asset_id: str, side: int = 128) -> Path:
        from PIL import Image

        out = self.root / "thumbs" / f"{asset_id}_{side}.png"
        if out.exists():
            return out
        try:
            img = self.load_image(asset_id)
        except MediaError:
            img = self.load_video(asset_id)[0]
        out.parent.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(img)
        im.thumbnail((side, side), Image.NEAREST)
        im.save(out)
        return out
