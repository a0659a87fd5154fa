"""Real talking videos tracked by ``talk track`` as portrait-generator training data: the same samples as the
synthetic portrait set (:class:`talk.synth.portrait_dataset.PortraitClips`), so ``PortraitModule`` trains on either.

    data = TrackedClips("data/tracked", split="train", size=128)   # frames decoded once into portrait_cache/
    dm = TrackedPortraitDataModule("data/tracked", size=128)       # data: class_path of experiments/*/portrait.yaml

Per video of the folder's ``manifest.jsonl`` (layout in :mod:`talk.track.track_video`): the source video named by
``tracks/<name>.json`` (``video``), and the fitted parameters ``flame/<name>.npz``. A frame's mesh is the folder's
face model (``face_model.pkl``) posed as the tracker posed it (:meth:`talk.track.fit_video.SequenceFit.params`:
``head_rotation`` is FLAME's global pose, ``head_translation`` its translation, so vertices are camera-space for the
camera ``R = I``, ``T = 0`` and ``focal``), with the render-only teeth and tongue attached as the synthetic set and
the inference pipeline attach them (:func:`talk.synth.mouth.build_mouth_interior` on the identity's neutral face).

Framing. ``crop="head"`` (default) cuts one square per video, fixed over the video (the background stays still),
framed as :mod:`talk.pipeline.portrait` frames a photo at inference: crown to neck joint over ``HEAD_FRACTION`` of
the side, centred between them (median over the video), edge-replicated where it leaves the frame; the camera
follows the crop. ``crop="full"`` keeps the whole frame, ``size`` high (the width scaled alike), as
``PortraitClips`` does; only square or equal-aspect videos batch together then.

Frames are decoded once per video, framing and size into ``<root>/portrait_cache/<name>.<crop><size>.frames.npy``
(uint8 ``[T,h,w,3]``, streamed to disk, written atomically, memory-mapped by the samples); a cache older than its
video or parameters is rebuilt. Meshes are computed per sample (two FLAME frames, a few milliseconds).

Splits: the manifest's ``split`` fields (``splits="manifest"``, when every line has one), else (``"names"``) a
deterministic split of the video names: at least one val and one test video from 3 videos on. Several videos of
one person may then fall in different splits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F_
from torch import Tensor
from torch.utils.data import Dataset

from motion.face.flame import FLAME, FLAMEParams
from motion.face.flame_io import load_flame_masks, load_flame_model
from render.camera import Camera
from render.portrait_inputs import portrait_inputs
from render.rasterizer import TorchRasterizer
from talk.data.formats.portraits import STAGE_SPLITS, PortraitLoaders
from talk.data.formats.tracked_folder import (
    MissingVideoError,
    TrackedFolderError,
    VideoMismatchError,
    assign_splits,
    check_tracked_folder,
    name_splits,
    read_tracked_folder,
    write_frame_cache,
)
from talk.errors import DatasetError, UserError
from talk.pipeline.portrait import HEAD_FRACTION, NECK_JOINT, crop_camera, crop_square
from talk.synth.mouth import build_mouth_interior

__all__ = [
    "MissingVideoError",
    "TrackedClips",
    "TrackedFolderError",
    "TrackedPortraitDataModule",
    "VideoMismatchError",
    "name_splits",
]

CACHE = "portrait_cache"
_BOX_FRAMES = 64  # frames the head crop is measured on (evenly spread over the video)


class TrackedClips(Dataset):
    """Samples of a ``talk track`` folder's videos: every frame of every video of one split is one sample.

    The samples are :class:`~talk.synth.portrait_dataset.PortraitClips`' (same keys, shapes, dtypes and
    conventions): ``reference``, ``target``, ``warped``, ``flow``, ``normals``, ``depth``, ``mask``,
    ``mouth_mask`` and the int64 scalars ``clip`` (the video's index in the manifest), ``frame`` and
    ``reference_frame``; see the module docstring for the framing, the meshes and the frame cache.

    Args:
        root: The ``talk track`` output folder (``manifest.jsonl``, ``tracks/``, ``flame/``, ``face_model.pkl``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: Output side S (``crop="head"``: S x S; ``"full"``: S high).
        reference: ``"first"``: frame 0 is the reference; ``"random"``: a frame of the same video drawn per sample
            (torch's RNG, seeded per worker by ``DataLoader``).
        falloff: Reach of the motion outside the mesh, a fraction of the image side (``render.warp.mesh_flow``).
        crop: ``"head"``: a fixed square around the head per video, framed as at inference; ``"full"``: the frame.
        splits: ``"manifest"``: the manifest's split fields (when every line has one); ``"names"``: a
            deterministic split of the video names (:func:`name_splits`).
        val_fraction: Fraction of videos for validation with ``splits="names"``.
        test_fraction: Fraction of videos for testing with ``splits="names"``.
        video_dir: Folder holding the source videos when they moved since tracking (looked up by file name).
        face_model: The face model the videos were tracked with; None = ``root/face_model.pkl`` (the procedural
            head: its mouth cavity carries the teeth and tongue). ``FLAME_masks.pkl`` is read beside it.

    Attributes:
        videos: The split's videos (``name``, ``index`` in the manifest, ``video`` path, parameters).
        names: Manifest index -> name of every video of the folder.
        boxes: Per video of the split, ``(x0, y0, side)`` of its head crop in source pixels (None for ``"full"``).
        cache_files: Per video of the split, its frame cache.
        faces, mouth_faces: ``[F + Fm, 3]`` triangles of the meshes (head, then mouth) and ``[K]`` those inside
            the mouth.
    """

    def __init__(
        self,
        root: str | Path,
        split: Literal["train", "val", "test"] = "train",
        size: int = 256,
        reference: Literal["first", "random"] = "first",
        falloff: float = 0.125,
        crop: Literal["head", "full"] = "head",
        splits: Literal["manifest", "names"] = "manifest",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        video_dir: str | Path | None = None,
        face_model: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        if reference not in ("first", "random") or crop not in ("head", "full"):
            raise DatasetError(
                f"reference={reference!r}, crop={crop!r}; pass 'first'/'random' and 'head'/'full'."
            )
        if size < 8:
            raise DatasetError(f"size={size}; pass an image side of at least 8 pixels.")
        self.split, self.size, self.reference = split, int(size), reference
        self.falloff, self.crop = float(falloff), crop
        model_path = Path(face_model) if face_model is not None else self.root / "face_model.pkl"
        videos = read_tracked_folder(self.root, model_path, video_dir)
        assigned = assign_splits(videos, splits, val_fraction, test_fraction)
        self.videos = [v for v in videos if assigned[v.name] == split]
        if not self.videos:
            raise DatasetError(
                f"'{self.root}' has no {split} videos (splits={splits!r}); track more videos, give them splits with "
                "`talk track --split`, or pass splits='names'."
            )
        self.names = {v.index: v.name for v in videos}
        self._load_model(model_path)
        clips = range(len(self.videos))
        self.boxes = [self._head_box(c) if crop == "head" else None for c in clips]
        self.cameras = [self._camera(c) for c in clips]
        self.cache_files = [self._cache(c) for c in clips]
        counts = np.array([v.frames for v in self.videos])
        self._clip_of = np.repeat(np.arange(len(self.videos)), counts)
        self._frame_of = np.concatenate([np.arange(n) for n in counts])
        self._renderer = TorchRasterizer(shading="normals")

    # ------------------------------------------------------------------------------------------------ meshes
    def _load_model(self, path: Path) -> None:
        first = self.videos[0]
        dims = {(v.shape.numel(), v.expression.shape[1]) for v in self.videos}
        if len(dims) > 1:
            raise TrackedFolderError(
                f"'{self.root}' mixes videos tracked with {sorted(dims)} (shape, expression) sizes; track them "
                "again with one --n_shape and --n_expression."
            )
        try:
            self.flame = FLAME(
                str(path), n_shape=first.shape.numel(), n_expression=first.expression.shape[1]
            ).eval()
            model, masks = load_flame_model(path), load_flame_masks(path.with_name("FLAME_masks.pkl"))
        except (FileNotFoundError, ValueError, KeyError) as exc:
            if isinstance(exc, UserError):
                raise
            raise TrackedFolderError(
                f"cannot load the face model {path} ({str(exc).splitlines()[0]}); pass face_model= the model "
                "the videos were tracked with."
            ) from None
        self.mouths, faces = [], None
        for v in self.videos:
            # the identity at rest in model space: what the teeth are fitted to (as at inference)
            with torch.no_grad():
                neutral = self.flame(
                    FLAMEParams(shape=v.shape[None], jaw_pose=torch.zeros(1, 1, 3))
                ).vertices[0, 0]
            try:
                mouth = build_mouth_interior(neutral.double().numpy(), model, masks, 0)
            except ValueError as exc:
                raise TrackedFolderError(
                    f"{path} has no mouth cavity to attach teeth to ({str(exc).splitlines()[0]}); track the videos "
                    "with the procedural head (`talk track` without --face_model)."
                ) from None
            self.mouths.append(mouth)
            if faces is None:  # one topology for every identity: the head's faces, then the mouth's
                faces = mouth.attach(neutral.numpy(), self.flame.faces.numpy())
        self.faces = torch.from_numpy(faces.faces)
        self.mouth_faces = torch.from_numpy(faces.mouth_faces)

    def head_vertices(self, clip: int, frames: list[int] | Tensor) -> Tensor:
        """``[n, V, 3]`` camera-space head meshes of frames ``frames`` of video ``clip`` (index in this split)."""
        v, t = self.videos[clip], torch.as_tensor(frames, dtype=torch.long)
        params = FLAMEParams(  # SequenceFit.params()' mapping: the tracker's head pose is FLAME's global pose
            shape=v.shape[None], expression=v.expression[t][None], jaw_pose=v.jaw[t][None],
            global_pose=v.rotation[t][None], translation=v.translation[t][None],
        )  # fmt: skip
        with torch.no_grad():
            return self.flame(params).vertices[0]

    def vertices(self, clip: int, frames: list[int] | Tensor) -> Tensor:
        """``[n, V + M, 3]`` camera-space meshes with the mouth interior (faces :attr:`faces`, :attr:`mouth_faces`)."""
        head = self.head_vertices(clip, frames)
        mouth = self.mouths[clip].place(head.double().numpy())
        return torch.cat([head, torch.from_numpy(mouth)], dim=1)

    # ------------------------------------------------------------------------------------------------ framing
    def _head_box(self, clip: int) -> tuple[int, int, int]:
        """``(x0, y0, side)`` of video ``clip``'s square crop in source pixels (the module docstring)."""
        v = self.videos[clip]
        picked = np.unique(np.linspace(0, v.frames - 1, min(v.frames, _BOX_FRAMES)).round().astype(np.int64))
        head = self.head_vertices(clip, torch.from_numpy(picked))
        camera = Camera(R=torch.eye(3)[None], T=torch.zeros(1, 3), focal=v.focal, image_size=v.image_size)
        uv = camera.project(head)[..., :2]
        crown = uv[torch.arange(len(uv)), uv[..., 1].argmin(dim=1)]
        neck = camera.project(
            torch.einsum("jv,nvc->njc", self.flame.J_regressor, head)[:, NECK_JOINT : NECK_JOINT + 1]
        )
        crown = crown.median(dim=0).values.double().numpy()
        neck = neck[:, 0, :2].median(dim=0).values.double().numpy()
        side = max(int(round(np.linalg.norm(neck - crown) / HEAD_FRACTION)), 2)
        centre = (crown + neck) / 2.0
        return int(round(centre[0] - side / 2)), int(round(centre[1] - side / 2)), side

    def _camera(self, clip: int) -> Camera:
        v = self.videos[clip]
        full = Camera(R=torch.eye(3)[None], T=torch.zeros(1, 3), focal=v.focal, image_size=v.image_size)
        if self.boxes[clip] is not None:
            return crop_camera(full, *self.boxes[clip], self.size)
        height, width = v.image_size
        scale = self.size / float(height)
        return Camera(R=full.R, T=full.T, focal=v.focal * scale, image_size=(self.size, round(width * scale)))

    def camera(self, clip: int) -> Camera:
        """Camera of video ``clip`` (index within this split) at the output framing and size."""
        return self.cameras[clip]

    # ------------------------------------------------------------------------------------------------ frames
    def _framed(self, clip: int, frames: np.ndarray) -> np.ndarray:
        """Source frames ``[n,H,W,3]`` uint8 -> cropped (``"head"``) and resized ``[n,h,w,3]`` uint8."""
        box, out = self.boxes[clip], tuple(self.cameras[clip].image_size)
        if box is not None:
            frames = np.stack([crop_square(f, *box) for f in frames])
        if frames.shape[1:3] == out:
            return frames
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
        x = F_.interpolate(x, size=out, mode="bilinear", antialias=True, align_corners=False)
        return x.clamp_(0.0, 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def _cache(self, clip: int) -> Path:
        """The video's frame cache, built when missing, stale or of another shape (:func:`write_frame_cache`)."""
        v = self.videos[clip]
        path = self.root / CACHE / f"{v.name}.{self.crop}{self.size}.frames.npy"
        out = tuple(self.cameras[clip].image_size)
        return write_frame_cache(path, v, out, lambda frames: self._framed(clip, frames), self.root)

    # ------------------------------------------------------------------------------------------------ samples
    def __len__(self) -> int:
        return int(len(self._clip_of))

    @staticmethod
    def _image(frame: np.ndarray) -> Tensor:
        return torch.from_numpy(np.array(frame)).permute(2, 0, 1).float().div_(255.0)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        clip, t = int(self._clip_of[index]), int(self._frame_of[index])
        frames = np.load(self.cache_files[clip], mmap_mode="r")
        r = 0 if self.reference == "first" else int(torch.randint(len(frames), ()))
        reference, target = self._image(frames[r]), self._image(frames[t])
        meshes = self.vertices(clip, [r, t])
        inputs = portrait_inputs(
            reference, meshes[0], meshes[1], self.faces, self.mouth_faces, self.cameras[clip], self.falloff,
            self._renderer,
        )  # fmt: skip
        return {
            "reference": reference,
            "target": target,
            **inputs,
            "clip": torch.tensor(self.videos[clip].index, dtype=torch.int64),
            "frame": torch.tensor(t, dtype=torch.int64),
            "reference_frame": torch.tensor(r, dtype=torch.int64),
        }


class TrackedPortraitDataModule(PortraitLoaders):
    """Train / val / test loaders over a ``talk track`` folder, for ``experiments/synthetic/portrait.yaml``'s model
    (``--data.class_path talk.data.formats.tracked_portraits.TrackedPortraitDataModule --data.init_args.root DIR``).

    Args:
        root: The ``talk track`` output folder.
        size: Image side the samples are served at; a multiple of the generator's ``2^levels`` (16 by default).
        batch_size: Samples per batch.
        num_workers: DataLoader worker processes (each sample's warp and render run in the worker).
        train_reference: ``"first"`` or ``"random"`` reference frame for training samples; validation and test
            always use frame 0.
        falloff: Reach of the motion outside the mesh, a fraction of the image side (``render.warp.mesh_flow``).
        dataset_name: Name written with the test report.
        crop: ``"head"`` (a fixed square around the head per video, framed as at inference) or ``"full"``.
        splits: ``"manifest"`` (the manifest's split fields) or ``"names"`` (a deterministic split of the names).
        val_fraction: Fraction of videos for validation with ``splits="names"``.
        test_fraction: Fraction of videos for testing with ``splits="names"``.
        video_dir: Folder holding the source videos when they moved since tracking.
        face_model: The face model the videos were tracked with; None = ``root/face_model.pkl``.
    """

    def __init__(
        self,
        root: str | Path = "data/tracked",
        size: int = 128,
        batch_size: int = 8,
        num_workers: int = 0,
        train_reference: Literal["first", "random"] = "first",
        falloff: float = 0.125,
        dataset_name: str = "tracked_portraits",
        crop: Literal["head", "full"] = "head",
        splits: Literal["manifest", "names"] = "manifest",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        video_dir: str | Path | None = None,
        face_model: str | Path | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1 or num_workers < 0:
            raise DatasetError(
                f"batch_size={batch_size}, num_workers={num_workers}; pass batch_size >= 1, num_workers >= 0."
            )
        self.root, self.size = Path(root), int(size)
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.train_reference, self.falloff, self.dataset_name = train_reference, float(falloff), dataset_name
        self.options = {"crop": crop, "splits": splits, "val_fraction": val_fraction, "test_fraction": test_fraction,
                        "video_dir": video_dir, "face_model": face_model}  # fmt: skip
        self.face_model = Path(face_model) if face_model is not None else self.root / "face_model.pkl"
        self.datasets: dict[str, TrackedClips] = {}
        self.clip_names: dict[int, str] = {}
        # before the trainer starts: the error is the run's only output
        check_tracked_folder(self.root, self.face_model)

    def setup(self, stage: str | None = None) -> None:
        check_tracked_folder(self.root, self.face_model)
        for split in STAGE_SPLITS.get(stage or "fit", ()):
            if split in self.datasets:
                continue
            reference = self.train_reference if split == "train" else "first"
            data = TrackedClips(self.root, split, self.size, reference, self.falloff, **self.options)
            self.datasets[split] = data
            self.clip_names = data.names
