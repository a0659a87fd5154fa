"""Reading a ``talk track`` output folder for image training: its videos, their fitted parameters and source
videos, their splits, and the source frames decoded once into a memory-mapped cache.

    videos = read_tracked_folder("data/tracked")           # [TrackedVideo]: name, split, video, parameters
    splits = assign_splits(videos, "manifest")             # name -> "train" / "val" / "test"
    path = write_frame_cache(out, videos[0], (128, 128), frame_fn, "data/tracked")   # uint8 [T,128,128,3] .npy

The folder's layout is :mod:`talk.track.track_video`'s; :mod:`talk.data.formats.tracked_portraits` serves its
samples. Every problem is a one-line :class:`~talk.errors.DatasetError` subclass naming the file and the fix.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from talk.errors import DatasetError
from talk.files import write_atomic
from talk.track.video import open_video

__all__ = [
    "MissingVideoError",
    "TrackedFolderError",
    "TrackedVideo",
    "VideoMismatchError",
    "assign_splits",
    "check_tracked_folder",
    "name_splits",
    "read_tracked_folder",
    "write_frame_cache",
]

PARAMS = ("shape", "expression", "jaw", "head_rotation", "head_translation", "focal", "image_size")


class TrackedFolderError(DatasetError):
    """The folder is not a ``talk track`` output, or lacks a file of one."""


class MissingVideoError(DatasetError):
    """The source video of a tracked video is not where ``tracks/<name>.json`` says."""


class VideoMismatchError(DatasetError):
    """A source video's frames (count or size) disagree with its fitted parameters."""


@dataclass(frozen=True, eq=False)
class TrackedVideo:
    """One tracked video.

    Attributes:
        index: Its line in ``manifest.jsonl`` (0-based): the ``clip`` id of its samples.
        name: Its name (``flame/<name>.npz``, ``tracks/<name>.json``).
        split: The manifest's ``split`` field, or None.
        video: The source video file (found).
        params: Its ``flame/<name>.npz``.
        shape: ``[S]`` identity; ``expression`` ``[T, E]``; ``jaw``, ``rotation`` (head, axis-angle),
            ``translation`` (metres, camera space) ``[T, 3]``: float32, as the tracker fitted them.
        focal: Focal length in pixels of the camera (``R = I``, ``T = 0``).
        image_size: ``(H, W)`` of the frames it was fitted on.
    """

    index: int
    name: str
    split: str | None
    video: Path
    params: Path
    shape: Tensor
    expression: Tensor
    jaw: Tensor
    rotation: Tensor
    translation: Tensor
    focal: float
    image_size: tuple[int, int]

    @property
    def frames(self) -> int:
        """T."""
        return int(len(self.expression))

    def retrack_hint(self, root: Path) -> str:
        return f"track it again with `talk track {self.video} --out {root} --overwrite`"


def check_tracked_folder(root: Path, face_model: Path) -> None:
    """Raise :class:`TrackedFolderError` unless ``root`` has a manifest, ``tracks/`` and the face model."""
    missing = [p for p in (root / "manifest.jsonl", root / "tracks", face_model) if not p.exists()]
    if missing:
        raise TrackedFolderError(
            f"'{root}' is not a `talk track` output (no {missing[0].name}); track videos into it with "
            f"`talk track VIDEOS --out {root}`."
        )


def _source(root: Path, name: str, video_dir: Path | None) -> Path:
    """The source video of ``name``: the path in ``tracks/<name>.json`` (relative paths from the current folder,
    as ``talk track`` was given them), else a file of that name in ``video_dir`` or below it."""
    recorded = Path(json.loads((root / "tracks" / f"{name}.json").read_text())["video"])
    candidates = [recorded]
    if video_dir is not None:  # by file name, in the folder or below it
        candidates += [video_dir / recorded.name, *sorted(video_dir.rglob(recorded.name))]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        elsewhere = f", nor in '{video_dir}'" if video_dir is not None else ""
        raise MissingVideoError(
            f"the source video of {name!r}, '{recorded}' (tracks/{name}.json), does not exist{elsewhere}; put it "
            "back or pass video_dir=FOLDER holding it."
        )
    return found


def read_tracked_folder(
    root: str | Path, face_model: str | Path | None = None, video_dir: str | Path | None = None
) -> list[TrackedVideo]:
    """Every video of a ``talk track`` folder's manifest, in manifest order, with its source video found.

    Args:
        root: The folder.
        face_model: The face model it was tracked with (only checked to exist); None = ``root/face_model.pkl``.
        video_dir: Where to look (by file name) for source videos moved since tracking.

    Returns:
        The :class:`TrackedVideo` list.
    """
    root = Path(root)
    check_tracked_folder(root, Path(face_model) if face_model is not None else root / "face_model.pkl")
    lines = [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines() if x.strip()]
    if not lines:
        raise TrackedFolderError(
            f"'{root / 'manifest.jsonl'}' lists no videos; track some with `talk track`."
        )
    videos = []
    for index, line in enumerate(lines):
        name = str(line.get("name") or Path(line["motion"]).stem)
        record, params = root / "tracks" / f"{name}.json", root / line.get("motion", f"flame/{name}.npz")
        for path in (record, params):
            if not path.is_file():
                raise TrackedFolderError(
                    f"'{root}' lists {name!r} but has no {path}; track it again with "
                    f"`talk track VIDEO --out {root} --overwrite`."
                )
        found = _source(root, name, Path(video_dir) if video_dir is not None else None)
        with np.load(params) as npz:
            p = {k: torch.from_numpy(np.asarray(npz[k], np.float32)) for k in npz.files}
        lacking = [k for k in PARAMS if k not in p]
        if lacking:
            raise TrackedFolderError(
                f"{params} lacks {lacking}, so `talk track` did not write it; track the video again with "
                f"`talk track VIDEO --out {root} --overwrite`."
            )
        videos.append(TrackedVideo(
            index=index, name=name, split=line.get("split"), video=found, params=params, shape=p["shape"],
            expression=p["expression"], jaw=p["jaw"], rotation=p["head_rotation"],
            translation=p["head_translation"], focal=float(p["focal"]),
            image_size=(int(p["image_size"][0]), int(p["image_size"][1])),
        ))  # fmt: skip
    return videos


def name_splits(names: list[str], val_fraction: float = 0.1, test_fraction: float = 0.1) -> dict[str, str]:
    """A deterministic split of video names.

    Names are ordered by a hash (crc32) of the name; the first ``max(1, round(n * test_fraction))`` go to test
    and the next ``max(1, round(n * val_fraction))`` to val (from 3 videos on; of 2 videos, one goes to val),
    the rest to train, which keeps at least one. A zero fraction leaves its split empty.

    Returns:
        Name -> ``"train"``, ``"val"`` or ``"test"``.
    """
    order = sorted(set(names), key=lambda n: (zlib.crc32(n.encode()), n))
    n = len(order)
    n_test = max(1, round(n * test_fraction)) if n >= 3 and test_fraction > 0 else 0
    n_val = max(1, round(n * val_fraction)) if n >= 2 and val_fraction > 0 else 0
    n_val = min(n_val, max(n - 1 - n_test, 0))
    split = ["test"] * n_test + ["val"] * n_val + ["train"] * (n - n_test - n_val)
    return dict(zip(order, split, strict=True))


def assign_splits(
    videos: list[TrackedVideo],
    splits: str = "manifest",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> dict[str, str]:
    """Video name -> split: the manifest's fields (``splits="manifest"``, when every line has one), else
    :func:`name_splits` of the names."""
    if splits not in ("manifest", "names"):
        raise DatasetError(f"splits={splits!r}; pass 'manifest' or 'names'.")
    if splits == "manifest" and all(v.split in ("train", "val", "test") for v in videos):
        return {v.name: str(v.split) for v in videos}
    return name_splits([v.name for v in videos], val_fraction, test_fraction)


def write_frame_cache(
    path: Path,
    video: TrackedVideo,
    out_size: tuple[int, int],
    frame_fn: Callable[[np.ndarray], np.ndarray],
    root: Path,
    chunk: int = 32,
) -> Path:
    """The video's frames, through ``frame_fn``, as one uint8 ``[T, h, w, 3]`` ``.npy`` (reused while it is newer
    than the video and its parameters and has that shape).

    The frames are streamed from ffmpeg to the file, ``chunk`` at a time, so memory does not grow with the video's
    length; the file appears atomically (:func:`talk.files.write_atomic`), only once every frame is in.

    Args:
        path: The cache file.
        video: The tracked video.
        out_size: ``(h, w)`` of the frames ``frame_fn`` returns.
        frame_fn: Source frames ``[n, H, W, 3]`` uint8 -> ``[n, h, w, 3]`` uint8.
        root: The tracked folder (named in the errors).
        chunk: Frames decoded per step.

    Raises:
        VideoMismatchError: the video's frame size or count differs from its parameters'.
    """
    shape = (video.frames, int(out_size[0]), int(out_size[1]), 3)
    newest = max(video.video.stat().st_mtime_ns, video.params.stat().st_mtime_ns)
    if path.is_file() and path.stat().st_mtime_ns >= newest and np.load(path, mmap_mode="r").shape == shape:
        return path
    source = open_video(video.video)
    if source.size != video.image_size:
        (h, w), (fh, fw) = source.size, video.image_size
        raise VideoMismatchError(
            f"'{video.video}' has {w}x{h} frames but flame/{video.name}.npz was fitted on {fw}x{fh}; "
            f"{video.retrack_hint(root)}."
        )

    def write(f) -> None:
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
            "fortran_order": False,
            "shape": shape,
        }
        np.lib.format.write_array_header_1_0(f, header)
        count = 0
        for frames in source.chunks(chunk):
            keep = frames[: max(video.frames - count, 0)]
            if len(keep):
                out = np.ascontiguousarray(frame_fn(keep), dtype=np.uint8)
                assert out.shape == (len(keep), *shape[1:]), out.shape
                f.write(out.tobytes())
            count += len(frames)
        if count != video.frames:  # (raised inside write_atomic: no cache file is left behind)
            raise VideoMismatchError(
                f"'{video.video}' has {count} frames but flame/{video.name}.npz has {video.frames}; "
                f"{video.retrack_hint(root)}."
            )

    return write_atomic(path, write)
