"""Any dataset, described by a jsonl manifest: one sequence per line.

Each line is a JSON object (paths relative to the manifest's folder, or absolute)::

    {"audio": "wav/a01.wav", "motion": "motion/a01.npy", "subject": "spk1", "fps": 30, "split": "train"}
    {"audio": "wav/b07.wav", "motion": "flame/b07.npz", "subject": "spk2", "fps": 25, "split": "test",
     "dataset": "mead", "name": "spk2_b07"}

``split`` is ``train``, ``val`` or ``test``; ``dataset`` (default: the DataModule's ``dataset_name``) travels with
each batch for multi-dataset training; ``name`` (default: the motion file's stem) must be unique.

Motion is either

- vertices: ``.npy`` of ``[T, V*3]`` or ``[T, V, 3]``; the subject's neutral mesh comes from the ``templates``
  pickle (``{subject: [V, 3]}``, the processed-VOCASET format); or
- FLAME parameters: ``.npz`` with ``expression [T, Ne]``, ``jaw [T, 3]`` and optionally ``neck [T, 3]``,
  ``eyes [T, 6]`` (left then right eye), ``global_pose [T, 3]``, ``shape [Ns]``, decoded to vertices by
  :class:`motion.face.flame.FLAME` loaded from ``flame_model``. The template is FLAME with the line's ``shape`` and zero
  expression and pose (not the first frame). The raw parameters stay available on the sample
  (:class:`FlameSample`), at the line's own fps; the padded :class:`~talk.data.batch.Batch` carries vertices only.

Frame rates: every line is brought to the DataModule's ``fps``. An integer ratio takes every k-th frame (exactly
how VOCASET's 60 fps is read at 30 fps); any other ratio interpolates the vertices linearly in time, frame ``i``
sitting at time ``i / fps`` and the last frame not past the last source frame. With ``resample=False`` a line
whose fps differs is an error instead. Every validation error names the manifest file and line number.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from audio.io import load_audio
from talk.data.batch import Sample
from talk.data.formats.biwi import load_faces, metric_regions
from talk.data.loaders import SplitLoadersMixin
from talk.errors import DatasetError

SPLITS = ("train", "val", "test")
REQUIRED_KEYS = ("audio", "motion", "subject", "fps", "split")
OPTIONAL_KEYS = ("dataset", "name")
# FLAME parameter key -> per-frame width (None: any width); "shape" is per sequence.
FLAME_KEYS: dict[str, int | None] = {"expression": None, "jaw": 3, "neck": 3, "eyes": 6, "global_pose": 3}
REQUIRED_FLAME_KEYS = ("expression", "jaw")


class ManifestError(DatasetError):
    """A manifest line or the file it points to is invalid; the message names the manifest and line."""


@dataclass(frozen=True)
class ManifestEntry:
    """One validated manifest line.

    Attributes:
        line: 1-based line number in the manifest.
        name: Unique sequence name.
        subject: Subject (speaker) name.
        split: ``train``, ``val`` or ``test``.
        dataset: Dataset name carried with the batch.
        audio: Absolute audio path.
        motion: Absolute motion path.
        fps: Frame rate of the motion file.
        kind: ``"vertices"`` (``.npy``) or ``"flame"`` (``.npz``).
        frames: Frames in the motion file.
        num_vertices: Vertices per frame of a ``.npy`` (None for FLAME parameters).
        shape: FLAME identity coefficients ``[Ns]`` of an ``.npz`` (None when absent or for vertices).
        expression_dim: Expression coefficients of an ``.npz`` (0 for vertices).
    """

    line: int
    name: str
    subject: str
    split: str
    dataset: str
    audio: Path
    motion: Path
    fps: float
    kind: str
    frames: int
    num_vertices: int | None = None
    shape: tuple[float, ...] | None = None
    expression_dim: int = 0


@dataclass
class FlameSample(Sample):
    """A :class:`Sample` decoded from FLAME parameters, keeping the raw parameters.

    Attributes:
        params: The ``.npz`` arrays as float32 tensors (``expression [T, Ne]``, ``jaw [T, 3]``, ...), unresampled.
        params_fps: Frame rate of ``params`` (the manifest line's fps).
    """

    params: dict[str, Tensor] | None = None
    params_fps: float | None = None


def resample_frames(x: np.ndarray, source_fps: float, fps: float) -> np.ndarray:
    """Brings ``x [T, ...]`` from ``source_fps`` to ``fps`` (stride for integer ratios, else linear in time)."""
    if source_fps == fps:
        return x
    ratio = source_fps / fps
    n_out = int(math.floor((x.shape[0] - 1) / ratio + 1e-9)) + 1
    if abs(ratio - round(ratio)) < 1e-9:
        return x[:: int(round(ratio))]
    pos = np.arange(n_out) * ratio
    lo = np.minimum(np.floor(pos + 1e-9).astype(np.int64), x.shape[0] - 1)
    hi = np.minimum(lo + 1, x.shape[0] - 1)
    w = (pos - lo).clip(0.0, 1.0).reshape(-1, *([1] * (x.ndim - 1)))
    return (x[lo] * (1.0 - w) + x[hi] * w).astype(x.dtype)


# ------------------------------------------------------------------------------------------------- parsing
def _check_npy(path: Path, where: str) -> tuple[int, int]:
    try:
        arr = np.load(path, mmap_mode="r")
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Python objects" in str(exc):
            raise ManifestError(
                f"{where}: {path} holds pickled Python objects; save FLAME parameters with np.savez as .npz, "
                "or vertices as a plain float array."
            ) from None
        raise ManifestError(f"{where}: {path} is not a readable .npy file ({exc}).") from None
    except Exception as exc:  # noqa: BLE001
        raise ManifestError(f"{where}: {path} is not a readable .npy file ({exc}).") from None
    ok = arr.ndim == 2 and arr.shape[1] % 3 == 0 or arr.ndim == 3 and arr.shape[2] == 3
    if not ok or arr.shape[0] < 1 or arr.shape[1] < 1 or not np.issubdtype(arr.dtype, np.number):
        raise ManifestError(
            f"{where}: {path} has shape {tuple(arr.shape)} ({arr.dtype}); vertex motion must be a numeric "
            "[T, V*3] or [T, V, 3] array with T >= 1."
        )
    return int(arr.shape[0]), int(arr.shape[1] // 3 if arr.ndim == 2 else arr.shape[1])


def _check_npz(path: Path, where: str) -> tuple[int, tuple[float, ...] | None, int]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            params = {k: np.asarray(npz[k]) for k in npz.files}
    except Exception as exc:  # noqa: BLE001
        raise ManifestError(f"{where}: {path} is not a readable .npz file ({exc}).") from None
    allowed = [*FLAME_KEYS, "shape"]
    unknown = sorted(set(params) - set(allowed))
    missing = [k for k in REQUIRED_FLAME_KEYS if k not in params]
    if unknown or missing:
        problem = f"lacks {missing}" if missing else f"has unknown key(s) {unknown}"
        raise ManifestError(
            f"{where}: {path} {problem}; FLAME motion needs expression [T,Ne] and jaw [T,3], optionally "
            "neck [T,3], eyes [T,6], global_pose [T,3], shape [Ns]."
        )
    frames = params["expression"].shape[0] if params["expression"].ndim == 2 else -1
    for key, width in FLAME_KEYS.items():
        if key not in params:
            continue
        a = params[key]
        if a.ndim != 2 or a.shape[0] != frames or (width is not None and a.shape[1] != width):
            expected = f"[{frames if frames >= 0 else 'T'}, {width if width is not None else 'Ne'}]"
            raise ManifestError(f"{where}: {path} key '{key}' has shape {a.shape}; expected {expected}.")
    if frames < 1:
        raise ManifestError(f"{where}: {path} has no frames (expression shape {params['expression'].shape}).")
    shape = params.get("shape")
    if shape is not None and shape.ndim != 1:
        raise ManifestError(f"{where}: {path} key 'shape' has shape {shape.shape}; expected [Ns].")
    for key, a in params.items():
        if not np.issubdtype(a.dtype, np.number) or not np.isfinite(a).all():
            raise ManifestError(f"{where}: {path} key '{key}' is not a finite numeric array.")
    return (
        frames,
        None if shape is None else tuple(float(v) for v in shape),
        int(params["expression"].shape[1]),
    )


def read_manifest(path: str | Path, default_dataset: str = "manifest") -> list[ManifestEntry]:
    """Parses and validates a jsonl manifest (see the module docstring).

    Args:
        path: The manifest.
        default_dataset: Dataset name of lines without ``"dataset"``.

    Returns:
        One entry per non-empty line.

    Raises:
        ManifestError: naming the manifest file and line of the first invalid line.
    """
    manifest = Path(path)
    if not manifest.is_file():
        raise ManifestError(f"manifest {manifest} not found; pass data.manifest=<file.jsonl>.")
    base = manifest.parent
    entries: list[ManifestEntry] = []
    names: dict[str, int] = {}
    for number, text in enumerate(manifest.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        where = f"{manifest}:{number}"
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}).") from None
        if not isinstance(obj, dict):
            raise ManifestError(f"{where}: each line must be a JSON object, got {type(obj).__name__}.")
        missing = [k for k in REQUIRED_KEYS if k not in obj]
        if missing:
            raise ManifestError(f"{where}: missing key(s) {missing}; every line needs {list(REQUIRED_KEYS)}.")
        unknown = sorted(set(obj) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
        if unknown:
            raise ManifestError(
                f"{where}: unknown key(s) {unknown}; allowed are {[*REQUIRED_KEYS, *OPTIONAL_KEYS]}."
            )
        for key in ("audio", "motion", "subject", "split", *[k for k in OPTIONAL_KEYS if k in obj]):
            if not isinstance(obj[key], str) or not obj[key].strip():
                raise ManifestError(f"{where}: '{key}' must be a non-empty string, got {obj[key]!r}.")
        fps = obj["fps"]
        if isinstance(fps, bool) or not isinstance(fps, int | float) or not math.isfinite(fps) or fps <= 0:
            raise ManifestError(f"{where}: 'fps' must be a positive number, got {fps!r}.")
        if obj["split"] not in SPLITS:
            raise ManifestError(f"{where}: 'split' is {obj['split']!r}; use one of {list(SPLITS)}.")
        files = {}
        for key in ("audio", "motion"):
            p = Path(obj[key]).expanduser()
            p = p if p.is_absolute() else base / p
            if not p.is_file():
                raise ManifestError(f"{where}: {key} file {obj[key]} not found (looked for {p}).")
            files[key] = p
        motion = files["motion"]
        if motion.suffix == ".npy":
            frames, n_verts = _check_npy(motion, where)
            extra: dict[str, Any] = {"kind": "vertices", "num_vertices": n_verts}
        elif motion.suffix == ".npz":
            frames, shape, n_exp = _check_npz(motion, where)
            extra = {"kind": "flame", "shape": shape, "expression_dim": n_exp}
        else:
            raise ManifestError(
                f"{where}: motion file {obj['motion']} must be .npy (vertices) or .npz (FLAME parameters)."
            )
        name = obj.get("name", motion.stem)
        if name in names:
            raise ManifestError(
                f"{where}: sequence name '{name}' is already used on line {names[name]}; add a unique \"name\"."
            )
        names[name] = number
        entries.append(
            ManifestEntry(
                line=number,
                name=name,
                subject=obj["subject"],
                split=obj["split"],
                dataset=obj.get("dataset", default_dataset),
                audio=files["audio"],
                motion=motion,
                fps=float(fps),
                frames=frames,
                **extra,
            )
        )
    if not entries:
        raise ManifestError(f"manifest {manifest} has no lines; add one JSON object per sequence.")
    return entries


# ------------------------------------------------------------------------------------------------- dataset
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
    ) -> None:
        self.manifest = manifest
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
        if e.kind == "vertices":
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
            sample = FlameSample(
                motion=torch.from_numpy(np.ascontiguousarray(motion)),
                template=torch.from_numpy(flame_neutral(self.flame, e.shape)),
                params=params, params_fps=e.fps, expression=expression, jaw=jaw, **common,
            )  # fmt: skip
        if self.cache is not None:
            self.cache[index] = sample
        return sample


# ---------------------------------------------------------------------------------------------- datamodule
class ManifestDataModule(SplitLoadersMixin, L.LightningDataModule):
    """Sequences listed in a jsonl manifest (see the module docstring for the line format).

    Args:
        manifest: The jsonl file; paths inside it are relative to its folder.
        fps: Motion frame rate to train at; lines at other rates are resampled (see ``resample``).
        resample: Bring lines at another fps to ``fps`` (stride or linear interpolation); False makes such a
            line an error.
        flame_model: FLAME-format model (``generic_model.pkl``, ``flame2023.pkl`` or a file of the same
            structure) that decodes ``.npz`` FLAME-parameter lines; required when there are any.
        templates: ``{subject: [V, 3]}`` pickle of neutral meshes for ``.npy`` vertex lines; required when there
            are any.
        train_subjects: Training subjects; their order defines the style indices. None: the sorted subjects of
            the train split.
        sample_rate: Audio sample rate the encoder expects.
        batch_size: Sequences per batch (variable lengths are padded and masked).
        num_workers: DataLoader workers.
        cache: Keep loaded sequences in memory after first use.
        max_audio_seconds: Reject longer audio files (None: no limit).
        face_model_path: Mesh (``.ply``/``.obj``) or FLAME-format ``.pkl`` giving the triangles; defaults to
            ``flame_model``; None and no ``flame_model`` means no faces.
        regions_path: Region vertex sets for the metrics (``FLAME_masks.pkl`` format or a folder of
            ``<region>.txt``); defaults to ``FLAME_masks.pkl`` beside the manifest, else beside ``flame_model``.
        lip_region: Region name used for LVE.
        upper_face_regions: Region names whose union is the upper face used for FDD.
        dataset_name: Dataset name of lines without ``"dataset"``.
    """

    def __init__(
        self,
        manifest: str,
        fps: float = 30.0,
        resample: bool = True,
        flame_model: str | None = None,
        templates: str | None = None,
        train_subjects: list[str] | None = None,
        sample_rate: int = 16000,
        batch_size: int = 1,
        num_workers: int = 0,
        cache: bool = True,
        max_audio_seconds: float | None = None,
        face_model_path: str | None = None,
        regions_path: str | None = None,
        lip_region: str = "lips",
        upper_face_regions: list[str] = ["forehead", "eye_region"],  # noqa: B006 - jsonargparse needs a literal
        dataset_name: str = "manifest",
    ) -> None:
        super().__init__()
        if not fps > 0:
            raise ManifestError(f"data.fps must be positive, got {fps}.")
        self.manifest = Path(manifest)
        self.root = self.manifest.parent  # metrics.json reports regions relative to this
        self.fps = float(fps)
        self.resample = resample
        self.flame_model = flame_model
        self.templates_path = templates
        self._train_subjects = None if train_subjects is None else list(train_subjects)
        self.sample_rate = sample_rate
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.cache = cache
        self.max_audio_seconds = max_audio_seconds
        self.face_model_path = face_model_path
        if regions_path is None:  # resolved here so that metrics.json names the file really used
            beside = [self.root / "FLAME_masks.pkl"]
            if flame_model:
                beside.append(Path(flame_model).parent / "FLAME_masks.pkl")
            regions_path = str(next((p for p in beside if p.is_file()), beside[0]))
        self.regions_path = regions_path
        self.lip_region = lip_region
        self.upper_face_regions = list(upper_face_regions)
        self.dataset_name = dataset_name
        self._entries: list[ManifestEntry] | None = None
        self._templates: dict[str, np.ndarray] | None = None  # the templates pickle
        self._subject_templates: dict[str, np.ndarray] | None = None
        self._flame: Any = None
        self.datasets: dict[str, ManifestDataset] = {}

    # ---------------------------------------------------------------------------------------------- entries
    @property
    def entries(self) -> list[ManifestEntry]:
        """Validated manifest lines (read once, lazily, with every cross-line check)."""
        if self._entries is None:
            entries = read_manifest(self.manifest, self.dataset_name)
            for e in entries:
                if e.fps != self.fps and not self.resample:
                    raise ManifestError(
                        f"{self.manifest}:{e.line}: fps {e.fps:g} differs from data.fps={self.fps:g}; set "
                        "data.resample=true or convert the file."
                    )
            self._check_vertices(entries)
            self._entries = entries
        return self._entries

    def _check_vertices(self, entries: list[ManifestEntry]) -> None:
        first: tuple[int, int] | None = None  # (V, line)
        for e in entries:
            where = f"{self.manifest}:{e.line}"
            if e.kind == "flame":
                flame = self.flame(where)
                n_verts = flame.num_vertices
                if e.expression_dim > flame.n_expression:
                    raise ManifestError(
                        f"{where}: {e.motion} has {e.expression_dim} expression coefficients but "
                        f"{self.flame_model} holds {flame.n_expression}."
                    )
                if e.shape is not None and len(e.shape) > flame.n_shape:
                    raise ManifestError(
                        f"{where}: {e.motion} has {len(e.shape)} shape coefficients but {self.flame_model} "
                        f"holds {flame.n_shape}."
                    )
            else:
                n_verts = int(e.num_vertices)
                template = self._vertex_templates(where).get(e.subject)
                if template is None:
                    raise ManifestError(
                        f"{where}: subject '{e.subject}' has no template in {self.templates_path}; add it."
                    )
                if template.shape[0] != n_verts:
                    raise ManifestError(
                        f"{where}: {e.motion} has {n_verts} vertices but the template of '{e.subject}' in "
                        f"{self.templates_path} has {template.shape[0]}."
                    )
            if first is None:
                first = (n_verts, e.line)
            elif n_verts != first[0]:
                raise ManifestError(
                    f"{where}: {e.motion} has {n_verts} vertices but line {first[1]} has {first[0]}; all "
                    "sequences of a manifest must share one mesh topology."
                )

    def flame(self, where: str = "") -> Any:
        """The :class:`motion.face.flame.FLAME` decoding ``.npz`` lines (loaded once)."""
        if self._flame is None:
            if not self.flame_model:
                raise ManifestError(
                    f"{where or self.manifest}: FLAME-parameter motion needs a face model; pass "
                    "data.flame_model=<generic_model.pkl or FLAME-format .pkl>."
                )
            from motion.face.flame import FLAME
            from motion.face.flame_io import load_flame_model

            try:
                columns = np.shape(load_flame_model(self.flame_model)["shapedirs"])[2]
                n_shape = min(300, columns)  # FLAME files hold 300 identity columns, then the expression ones
                self._flame = FLAME(self.flame_model, n_shape=n_shape, n_expression=columns - n_shape).eval()
            except (FileNotFoundError, ValueError) as exc:
                raise ManifestError(f"data.flame_model: {str(exc).splitlines()[0]}") from None
        return self._flame

    def _vertex_templates(self, where: str) -> dict[str, np.ndarray]:
        if self._templates is None:
            if not self.templates_path:
                raise ManifestError(
                    f"{where}: vertex motion needs the subject's neutral mesh; pass data.templates=<templates.pkl>."
                )
            from talk.data.formats.vocaset import load_templates

            self._templates = load_templates(Path(self.templates_path))
        return self._templates

    # --------------------------------------------------------------------------------------------- metadata
    @property
    def templates(self) -> dict[str, np.ndarray]:
        """Subject -> neutral mesh ``[V, 3]``: the templates pickle, or FLAME's neutral of the subject's first line."""
        if self._subject_templates is None:
            out: dict[str, np.ndarray] = {}
            for e in self.entries:
                if e.subject not in out:
                    out[e.subject] = (
                        self._vertex_templates(f"{self.manifest}:{e.line}")[e.subject]
                        if e.kind == "vertices"
                        else flame_neutral(self.flame(), e.shape)
                    )
            self._subject_templates = out
        return self._subject_templates

    @property
    def train_subjects(self) -> list[str]:
        """Training subjects in style-index order."""
        if self._train_subjects is not None:
            return self._train_subjects
        return sorted({e.subject for e in self.entries if e.split == "train"})

    @property
    def style_index(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.train_subjects)}

    @property
    def num_vertices(self) -> int:
        e = self.entries[0]
        return int(e.num_vertices) if e.kind == "vertices" else int(self.flame().num_vertices)

    @property
    def motion_dim(self) -> int:
        """Size of one flattened motion frame, ``V * 3``."""
        return self.num_vertices * 3

    @property
    def num_styles(self) -> int:
        return len(self.train_subjects)

    def faces(self) -> np.ndarray | None:
        """Triangles ``[F, 3]`` from ``face_model_path`` (or ``flame_model``), or None when neither is given."""
        path = self.face_model_path or self.flame_model
        return None if path is None else load_faces(path, self.num_vertices)

    def regions(self) -> dict[str, np.ndarray]:
        """Metric regions ``{"lips": ids, "upper_face": ids}`` from ``regions_path``."""
        return metric_regions(self.regions_path, self.lip_region, self.upper_face_regions, self.num_vertices)

    # ----------------------------------------------------------------------------------------------- splits
    def setup(self, stage: str | None = None) -> None:
        entries = self.entries
        vertex_templates = {}
        if any(e.kind == "vertices" for e in entries):
            vertex_templates = self._vertex_templates(str(self.manifest))
        flame = self.flame() if any(e.kind == "flame" for e in entries) else None
        for split in SPLITS:
            self.datasets[split] = ManifestDataset(
                self.manifest, [e for e in entries if e.split == split], vertex_templates, flame,
                self.style_index, self.fps, self.sample_rate, self.max_audio_seconds, self.cache,
            )  # fmt: skip
        needed = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"]}.get(stage or "fit", [])
        for split in needed:
            if not self.datasets[split].names:
                raise ManifestError(
                    f'{self.manifest} has no line with "split": "{split}", which `{stage or "fit"}` needs.'
                )
