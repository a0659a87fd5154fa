"""The Dataset of a manifest split: vertex lines read and resampled, FLAME-parameter lines decoded on the fly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from audio.io import load_audio
from motion.frames import resample_frames
from talk.data.batch import Sample
from talk.data.formats.manifest_file import ManifestEntry, ManifestError


@dataclass
class FlameSample(Sample):
    """A :class:`Sample` decoded from FLAME parameters, keeping the raw parameters.

    Attributes:
        params: The ``.npz`` arrays as float32 tensors (``expression [T, Ne]``, ``jaw [T, 3]``, ...), unresampled.
        params_fps: Frame rate of ``params`` (the manifest line's fps).
        head_pose: [T, 6] head rotation (axis-angle) and translation in camera space at the DataModule's fps, for
            lines tracked from video (``head_rotation``, ``head_translation``); None otherwise. Not part of
            ``motion``, which stays face-centred like every FLAME dataset.
        camera: ``{"focal": px, "image_size": (H, W)}`` of a tracked video; None otherwise.
    """

    params: dict[str, Tensor] | None = None
    params_fps: float | None = None
    head_pose: Tensor | None = None
    camera: dict[str, Any] | None = None


@torch.no_grad()
def decode_flame(flame: Any, params: dict[str, Tensor]) -> np.ndarray:
    """FLAME parameters (``.npz`` keys, ``[T, ...]`` tensors) -> vertices ``[T, V, 3]`` float32."""
    from motion.face.flame import FLAMEParams

    shape = params.get("shape")
    seq = FLAMEParams(
        shape=None if shape is None else shape.reshape(1, -1),
        expression=params["expression"][None],
        jaw_pose=params["jaw"][None],
        neck_pose=params["neck"][None] if "neck" in params else None,
        eye_pose=params["eyes"][None] if "eyes" in params else None,
        global_pose=params["global_pose"][None] if "global_pose" in params else None,
    )
    return flame(seq).vertices[0].numpy().astype(np.float32)


@torch.no_grad()
def flame_neutral(flame: Any, shape: tuple[float, ...] | None) -> np.ndarray:
    """FLAME with identity ``shape`` (None: mean face) and zero expression and pose: ``[V, 3]`` float32."""
    from motion.face.flame import FLAMEParams

    coeff = None if shape is None else torch.tensor([shape], dtype=torch.float32)
    params = FLAMEParams(shape=coeff, jaw_pose=torch.zeros(1, 1, 3))  # zero pose; T = 1
    return flame(params).vertices[0, 0].numpy().astype(np.float32)


class ManifestDataset(Dataset):
    """Reads the sequences of one split of a manifest (FLAME parameters decoded on the fly), optionally cached.

    Self-contained (no reference to the DataModule or trainer), so DataLoader workers can pickle it.
    """

    def __init__(
        self,
        manifest: Path,
        entries: list[ManifestEntry],
        templates: dict[str, np.ndarray],
        flame: Any,
        style_index: dict[str, int],
        fps: float,
        sample_rate: int,
        max_audio_seconds: float | None,
        cache: bool,
        coefficient_models: dict[str, Any] | None = None,
    ) -> None:
        self.manifest = manifest
        self.coefficient_models = coefficient_models or {}
        self.entries = entries
        self.names = [e.name for e in entries]
        self.templates = templates
        self.flame = flame
        self.style_index = style_index
        self.fps = fps
        self.sample_rate = sample_rate
        self.max_audio_seconds = max_audio_seconds
        self.cache: dict[int, Sample] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Sample:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        e = self.entries[index]
        wav = load_audio(e.audio, self.sample_rate, self.max_audio_seconds)
        common = {
            "name": e.name, "subject": e.subject, "audio": torch.from_numpy(np.asarray(wav, np.float32)),
            "style": self.style_index.get(e.subject, -1), "dataset": e.dataset,
        }  # fmt: skip
        if e.kind in ("arkit", "bfm"):
            sample = self._coefficient_sample(e, common)
        elif e.kind == "vertices":
            raw = np.asarray(np.load(e.motion, mmap_mode="r"), dtype=np.float32).reshape(e.frames, -1, 3)
            if not np.isfinite(raw).all():
                raise ManifestError(
                    f"{self.manifest}:{e.line}: {e.motion} contains NaN or infinite vertex coordinates."
                )
            motion = resample_frames(raw, e.fps, self.fps)
            template = self.templates[e.subject]
            sample: Sample = Sample(
                motion=torch.from_numpy(np.ascontiguousarray(motion)),
                template=torch.from_numpy(template),
                **common,
            )
        else:
            with np.load(e.motion) as npz:
                params = {k: torch.as_tensor(np.asarray(npz[k], np.float32)) for k in npz.files}
            motion = resample_frames(decode_flame(self.flame, params), e.fps, self.fps)
            expression, jaw = (
                torch.from_numpy(np.ascontiguousarray(resample_frames(params[k].numpy(), e.fps, self.fps)))
                for k in ("expression", "jaw")
            )
            head_pose = camera = None
            if "head_rotation" in params and "head_translation" in params:
                pose = torch.cat([params["head_rotation"], params["head_translation"]], -1).numpy()
                head_pose = torch.from_numpy(np.ascontiguousarray(resample_frames(pose, e.fps, self.fps)))
            if "focal" in params and "image_size" in params:
                size = params["image_size"].round().long().tolist()
                camera = {"focal": float(params["focal"]), "image_size": (size[0], size[1])}
            sample = FlameSample(
                motion=torch.from_numpy(np.ascontiguousarray(motion)),
                template=torch.from_numpy(flame_neutral(self.flame, e.shape)),
                params=params, params_fps=e.fps, expression=expression, jaw=jaw, head_pose=head_pose,
                camera=camera, **common,
            )  # fmt: skip
        if self.cache is not None:
            self.cache[index] = sample
        return sample

    @torch.no_grad()
    def _coefficient_sample(self, e: ManifestEntry, common: dict[str, Any]) -> Sample:
        """ARKit weights (through the rig, on the subject's template) or BFM coefficients (identity and
        expression) -> vertices; the motion parameters stay on the sample as ``coefficients``."""
        model = self.coefficient_models[e.kind]
        template, params = coefficient_motion(e, model, self.templates, f"{self.manifest}:{e.line}")
        vertices = template + model.motion_offsets(params[None], template[None])[0]
        motion, coefficients = (
            torch.from_numpy(np.ascontiguousarray(resample_frames(a.numpy(), e.fps, self.fps)))
            for a in (vertices, params)
        )
        return Sample(
            motion=motion, template=template, coefficients=coefficients, coefficients_kind=e.kind, **common
        )


@torch.no_grad()
def coefficient_motion(
    e: ManifestEntry, model: Any, templates: dict[str, np.ndarray], where: str
) -> tuple[Tensor, Tensor]:
    """The template ``[V, 3]`` and motion parameters ``[T, D]`` (at the line's fps) of an ARKit or BFM line: ARKit
    weights on the subject's neutral from ``templates`` (else the rig's); BFM expression coefficients on the
    neutral of the sequence's mean identity."""
    from talk.data.formats.coefficients import read_arkit, read_bfm

    if e.kind == "arkit":
        params = torch.from_numpy(read_arkit(e.motion, e.fps, where))
        known = templates.get(e.subject)
        template = model.neutral.clone() if known is None else torch.from_numpy(np.asarray(known, np.float32))
        return template, params
    coeff = torch.from_numpy(read_bfm(e.motion, where))
    identity = coeff[:, : model.n_id].mean(0)
    params = coeff[:, 80 : 80 + model.n_exp]  # Deep3DFaceRecon's split: identity 80, then expression 64
    return model.neutral(identity[None])[0].float(), params
