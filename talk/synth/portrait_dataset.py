"""A torch Dataset over a synthetic portrait-video set (:func:`talk.synth.portrait.write_portrait_set`): one sample
is a reference frame, a target frame and the conditioning a portrait generator gets for the target.

    data = PortraitClips("portraits", split="train", size=256)
    loader = torch.utils.data.DataLoader(data, batch_size=8, shuffle=True, num_workers=2)
    batch = next(iter(loader))       # dict of [B,...] tensors (keys in PortraitClips)

Conditioning is computed per sample from the clip's meshes and camera, as at inference: the reference warped by
the mesh motion (:func:`render.warp.warp_portrait`: backward flow from the reference's mesh to the target's,
extended outside the face, background still), a normals / depth / coverage render of the target mesh
(:class:`render.rasterizer.TorchRasterizer` with ``shading="normals"``) and the mouth-interior mask (pixels showing
the cavity, teeth or tongue, which the reference does not show). Frames and meshes are memory-mapped ``.npy`` files,
so a sample reads two frames and two meshes and nothing else; the cost is the flow and the render (tens of
milliseconds at 256x256 on one core), which ``DataLoader`` workers spread.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F_
from torch import Tensor
from torch.utils.data import Dataset

from render.camera import Camera
from render.portrait_inputs import DEPTH_SCALE, portrait_inputs
from render.rasterizer import TorchRasterizer
from talk.errors import UserError

__all__ = ["DEPTH_SCALE", "PortraitClips", "PortraitDataError"]


class PortraitDataError(UserError, ValueError):
    """The portrait-set folder is missing or incomplete."""


class PortraitClips(Dataset):
    """Samples of a synthetic portrait-video set: every frame of every clip of one split is one sample.

    Each sample is a dict of tensors (images channel-first, float32 in [0,1] unless said otherwise):

    - ``reference`` ``[3,S,S]``: the reference frame (frame 0: the face at rest; see ``reference``).
    - ``target`` ``[3,S,S]``: frame ``t``, what the generator must produce.
    - ``warped`` ``[3,S,S]``: the reference warped to frame ``t``'s mesh.
    - ``flow`` ``[2,S,S]``: that warp's backward displacement in ``grid_sample`` units (2 = the image width /
      height): output pixel ``(i, j)`` reads the reference at its own position plus ``flow[:, i, j]``.
    - ``normals`` ``[3,S,S]``: camera-space unit normals of frame ``t``'s mesh in [-1,1], 0 off the mesh.
    - ``depth`` ``[1,S,S]``: its depth minus the median depth of the head, over ``DEPTH_SCALE`` (0 off the mesh).
    - ``mask`` ``[1,S,S]``: 1 on the head (mesh coverage of frame ``t``).
    - ``mouth_mask`` ``[1,S,S]``: 1 where frame ``t`` shows the mouth interior (cavity, teeth, tongue).
    - ``clip`` (the clip's index in the set), ``frame`` (t), ``reference_frame``: int64 scalars.

    Args:
        root: the set's folder (``manifest.jsonl``, ``mesh.npz``, ``clips/``).
        split: ``"train"``, ``"val"`` or ``"test"`` (clips, hence identities, are disjoint across splits).
        size: output side S; frames are resized (antialiased) and the camera scaled when it differs from the
            set's frame size.
        reference: ``"first"`` uses frame 0 (the face at rest) as the reference, as at inference from a still
            portrait; ``"random"`` draws a frame of the same clip per sample (torch's RNG, seeded per worker by
            ``DataLoader``), so references with an open mouth or a turned head occur too.
        falloff: reach of the motion outside the mesh, a fraction of the image side (``render.warp.mesh_flow``).
    """

    def __init__(
        self,
        root: str | Path,
        split: Literal["train", "val", "test"] = "train",
        size: int = 256,
        reference: Literal["first", "random"] = "first",
        falloff: float = 0.125,
    ) -> None:
        self.root = Path(root)
        manifest = self.root / "manifest.jsonl"
        mesh = self.root / "mesh.npz"
        if not manifest.exists() or not mesh.exists():
            raise PortraitDataError(
                f"'{self.root}' is not a portrait set (no manifest.jsonl / mesh.npz); write one with "
                "talk.synth.portrait.write_portrait_set."
            )
        if reference not in ("first", "random"):
            raise PortraitDataError(f"reference={reference!r}; pass 'first' or 'random'.")
        if size < 8:
            raise PortraitDataError(f"size={size}; pass an image side of at least 8 pixels.")
        self.split, self.size, self.reference, self.falloff = split, int(size), reference, float(falloff)
        records = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
        self.clips = [r for r in records if r["split"] == split]
        if not self.clips:
            raise PortraitDataError(f"'{manifest}' has no clips in split {split!r}.")
        with np.load(mesh) as npz:
            self.faces = torch.from_numpy(npz["faces"].astype(np.int64))
            self.mouth_faces = torch.from_numpy(npz["mouth_faces"].astype(np.int64))
        self.focal = []
        for r in self.clips:
            with np.load(self.root / r["files"]["truth"]) as npz:
                self.focal.append(float(npz["focal"]))
        counts = np.array([int(r["frames"]) for r in self.clips])
        self._clip_of = np.repeat(np.arange(len(self.clips)), counts)
        self._frame_of = np.concatenate([np.arange(n) for n in counts])
        self._renderer = TorchRasterizer(shading="normals")

    def __len__(self) -> int:
        return int(len(self._clip_of))

    def camera(self, clip: int) -> Camera:
        """Camera of clip ``clip`` (index within this split) at the output size."""
        height, width = self.clips[clip]["size"]
        scale = self.size / float(height)
        return Camera(
            R=torch.eye(3)[None],
            T=torch.zeros(1, 3),
            focal=self.focal[clip] * scale,
            image_size=(self.size, round(width * scale)),
        )

    def _image(self, frame: np.ndarray) -> Tensor:
        image = torch.from_numpy(np.array(frame)).permute(2, 0, 1).float().div_(255.0)
        if image.shape[1] != self.size:
            width = round(image.shape[2] * self.size / image.shape[1])
            image = F_.interpolate(
                image[None], size=(self.size, width), mode="bilinear", antialias=True, align_corners=False
            )[0].clamp_(0.0, 1.0)
        return image

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        clip, t = int(self._clip_of[index]), int(self._frame_of[index])
        files = self.clips[clip]["files"]
        frames = np.load(self.root / files["frames"], mmap_mode="r")
        vertices = np.load(self.root / files["vertices"], mmap_mode="r")
        r = 0 if self.reference == "first" else int(torch.randint(len(frames), ()))
        reference, target = self._image(frames[r]), self._image(frames[t])
        source = torch.from_numpy(np.array(vertices[r]))
        animated = torch.from_numpy(np.array(vertices[t]))
        inputs = portrait_inputs(
            reference, source, animated, self.faces, self.mouth_faces, self.camera(clip), self.falloff,
            self._renderer,
        )  # fmt: skip
        return {
            "reference": reference,
            "target": target,
            **inputs,
            "clip": torch.tensor(int(self.clips[clip]["index"]), dtype=torch.int64),
            "frame": torch.tensor(t, dtype=torch.int64),
            "reference_frame": torch.tensor(r, dtype=torch.int64),
        }
