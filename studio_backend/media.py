"""The media store: every upload and output under `OMNI_HOME/media`, by content hash.

Uploads are checked before they are decoded: the format by content (never by name),
byte-size caps, the pixel count read from the header (a 50k x 50k PNG is refused before a
single pixel is allocated), video size and duration probed before decoding. Accepted
media are re-encoded (PNG for images, browser-playable H.264 for videos), hashed, and
stored as `media/ab/<sha256>.<ext>`; the original file name is kept only as a label.
Nothing outside the media folder is ever returned.

What the web app serves is `media/served/` alone (DESIGN 3.6): `serve()` gives each request
for a clip or image its own link there under a random name (a hard link, or a copy across
file systems), handed only to the person whose request it answers. So no name is stable
across people or requests (an annotator cannot match an arena clip to a creator's
regeneration), and nothing else of the home (database, WAL, secret, runs, models, exports)
can be reached through the file route.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_IMAGE_BYTES = 20 * 2**20
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_VIDEO_BYTES = 200 * 2**20
MAX_VIDEO_FRAMES = 600
# frames x pixels decoded from one upload at most (about 100 MB of RGB): checked on the probe's
# declared size and duration before a frame is decoded, and again while decoding (a file that
# declares less than it holds is cut at the cap)
MAX_VIDEO_VOXELS = 2**25
SERVED_DIR = "served"  # the one folder of the home the web app serves
SERVED_MAX_AGE = 3 * 24 * 3600.0  # seconds a served link lives (a page open longer reloads its clips)
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


def _decode_capped(path: Path, width: int, height: int, cap: int, label: str) -> np.ndarray:
    """Decode at most `cap` frames (RGB) straight into one array; ffmpeg is stopped at the cap."""
    import imageio_ffmpeg

    out = np.empty((cap, height, width, 3), np.uint8)
    n = 0
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        next(gen)  # the metadata
        for buf in gen:
            if len(buf) != width * height * 3:
                raise MediaError(f"{label}: a frame of the wrong size (the stream changes size)")
            out[n] = np.frombuffer(buf, np.uint8).reshape(height, width, 3)
            n += 1
            if n >= cap:
                break
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(f"{label}: decoding failed after {n} frames ({str(e).strip().splitlines()[-1][:160]})") from e
    finally:
        gen.close()
    if n == 0:
        raise MediaError(f"{label}: the video has no frames")
    return out[:n].copy() if n < cap else out


class MediaStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.served_root = self.root / SERVED_DIR
        self._served_count = 0
        self._local = threading.local()  # the staging list of the current thread's request (staged())
        self._pending: set[Path] = set()  # files a staged request made and has not kept yet
        self._lock = threading.Lock()

    @contextmanager
    def staged(self):
        """Uploads of one request: the files it adds are removed again when the block raises (a rejected
        request leaves nothing in the store). A file another request or job also stored meanwhile stays."""
        made: list[Path] = []
        outer = getattr(self._local, "made", None)
        self._local.made = made
        try:
            yield
        except BaseException:
            with self._lock:
                for path in made:
                    if path in self._pending:
                        self._pending.discard(path)
                        for p in (path, path.with_suffix(".npy")):
                            p.unlink(missing_ok=True)
            raise
        finally:
            self._local.made = outer
            with self._lock:
                self._pending.difference_update(made)

    # ------------------------------------------------------------ serving
    def serve(self, asset_id: str, ext: str) -> Path:
        """A fresh link to one stored clip (mp4) or image (png) under a random name in
        `media/served/`: the only files the web app serves. Every call gives a new name."""
        if ext not in ("png", "mp4"):
            raise MediaError(f"only clips and images are served, not .{ext} files")
        src = self.path_of(asset_id, ext)
        self.served_root.mkdir(parents=True, exist_ok=True)
        dst = self.served_root / f"{secrets.token_hex(16)}.{ext}"
        try:
            os.link(src, dst)
        except OSError:  # another file system (or no hard links): a copy
            shutil.copyfile(src, dst)
        self._served_count += 1
        if self._served_count % 500 == 1:
            self.prune_served()
        return dst

    def serve_download(self, path: str | Path) -> Path:
        """A fresh link to a file made for the asking admin (a preference export) under its own name, in a
        folder of `media/served/` with a random name: served like a clip, pruned like one."""
        src = Path(path)
        if not src.is_file():
            raise MediaError(f"{safe_label(src.name)}: no such file to download")
        folder = self.served_root / secrets.token_hex(16)
        folder.mkdir(parents=True)
        dst = folder / src.name
        shutil.copyfile(src, dst)
        return dst

    def prune_served(self, max_age: float = SERVED_MAX_AGE) -> int:
        """Remove served links older than max_age seconds (by inode change time: making a hard link
        changes it, the stored file's age does not count); returns how many went."""
        if not self.served_root.is_dir():
            return 0
        now, n = time.time(), 0
        for p in self.served_root.iterdir():
            try:
                if p.is_file() and now - p.lstat().st_ctime > max_age:
                    p.unlink()
                    n += 1
                elif p.is_dir() and now - p.lstat().st_ctime > max_age:  # a download's folder (serve_download)
                    shutil.rmtree(p)
                    n += 1
            except OSError:
                continue
        return n

    # ------------------------------------------------------------ writing
    def _store(self, data: bytes, kind: str, ext: str, width: int, height: int, frames: int, label: str) -> AssetInfo:
        digest = hashlib.sha256(data).hexdigest()
        info = AssetInfo(digest, kind, width, height, frames, safe_label(label), ext)
        path = self.root / info.rel_path
        made = getattr(self._local, "made", None)
        with self._lock:
            self._pending.discard(path)  # stored again by someone: kept whatever a staged request does
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)  # atomic: a crash never leaves half a file under the final name
                if made is not None:
                    made.append(path)
                    self._pending.add(path)
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

    def image_size(self, data: bytes, name: str = "") -> tuple[int, int]:
        """(width, height) of an uploaded image from its header, nothing decoded or stored."""
        from PIL import Image, UnidentifiedImageError

        label = safe_label(name)
        if sniff_image(data[:16]) is None:
            raise MediaError(f"{label}: not an image (its bytes are not PNG, JPEG, WebP or GIF)")
        try:
            return Image.open(io.BytesIO(data)).size
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise MediaError(f"{label}: the image is damaged or truncated ({e})") from e

    def put_image_array(self, arr: np.ndarray, name: str = "image.png") -> AssetInfo:
        from PIL import Image

        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise MediaError(f"{safe_label(name)}: expected an RGB uint8 image, got {arr.dtype} {arr.shape}")
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        return self._store(buf.getvalue(), "image", "png", arr.shape[1], arr.shape[0], 1, name)

    def put_video_file(self, path: str | Path, name: str = "") -> AssetInfo:
        """Check, decode (streaming, capped) and store an uploaded video; refuses before decoding
        anything a file that is not mp4 / webm / avi by its bytes, or whose probed frames x pixels
        are over MAX_VIDEO_VOXELS (a decompression bomb: a few KB declaring 1024x1024 x 600 frames)."""
        from training.video_io import VideoError, probe, sniff_container

        path = Path(path)
        label = safe_label(name or path.name)
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError as e:
            raise MediaError(f"{label}: the upload could not be read") from e
        if size > MAX_VIDEO_BYTES:
            raise MediaError(f"{label}: {size / 2**20:.0f} MB is over the {MAX_VIDEO_BYTES // 2**20} MB video limit")
        kind = sniff_container(head)
        if kind not in ("mp4", "webm", "avi"):
            raise MediaError(f"{label}: not a video (its bytes are not mp4, webm or avi)"
                             + ("; a GIF goes in an image slot" if kind == "gif" else ""))
        try:
            meta = probe(path)
        except VideoError as e:
            raise MediaError(f"{label}: {str(e).split(': ', 1)[-1]}") from e
        pixels = meta.width * meta.height
        if pixels > MAX_IMAGE_PIXELS:
            raise MediaError(f"{label}: {meta.width}x{meta.height} video frames are too large")
        declared = int(round(meta.duration * meta.fps)) if meta.duration > 0 and meta.fps > 0 else 1
        wanted = min(max(declared, 1), MAX_VIDEO_FRAMES)  # longer videos are cut at MAX_VIDEO_FRAMES
        if wanted * pixels > MAX_VIDEO_VOXELS:
            raise MediaError(f"{label}: {meta.width}x{meta.height} x {declared} frames is {wanted * pixels / 1e6:.0f} "
                             f"million pixels to decode; the limit is {MAX_VIDEO_VOXELS / 1e6:.0f} million: "
                             "send a shorter or smaller video")
        cap = max(1, min(MAX_VIDEO_FRAMES, MAX_VIDEO_VOXELS // pixels))
        frames = _decode_capped(path, meta.width, meta.height, cap, label)
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
