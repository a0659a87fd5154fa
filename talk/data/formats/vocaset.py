"""VOCASET in the processed layout used by FaceFormer, CodeTalker and SelfTalk.

Layout (read exactly as published)::

    <root>/wav/<SUBJECT>_<SENTENCE>.wav
    <root>/vertices_npy/<SUBJECT>_<SENTENCE>.npy     [T, V*3] at 60 fps
    <root>/templates.pkl                              {subject: [V, 3]} (latin1 pickle)

The subject is the file name without its last ``_``-separated part. Vertices are stored at 60 fps and read with a
stride (``[::2]`` for 30 fps). The synthetic dataset written by ``talk data synth`` uses the same layout and adds
``face_model.pkl`` (FLAME format) and ``FLAME_masks.pkl`` beside it.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from audio.io import load_audio
from talk.data.batch import Sample
from talk.data.loaders import SplitLoadersMixin
from talk.errors import DatasetError

VOCASET_TRAIN = [
    "FaceTalk_170728_03272_TA",
    "FaceTalk_170904_00128_TA",
    "FaceTalk_170725_00137_TA",
    "FaceTalk_170915_00223_TA",
    "FaceTalk_170811_03274_TA",
    "FaceTalk_170913_03279_TA",
    "FaceTalk_170904_03276_TA",
    "FaceTalk_170912_03278_TA",
]
VOCASET_VAL = ["FaceTalk_170811_03275_TA", "FaceTalk_170908_03277_TA"]
VOCASET_TEST = ["FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA"]


def split_name(name: str) -> tuple[str, str]:
    """``'FaceTalk_170725_00137_TA_sentence01'`` -> ``('FaceTalk_170725_00137_TA', 'sentence01')``."""
    if "_" not in name:
        raise DatasetError(
            f"sequence name '{name}' has no '_<SENTENCE>' suffix; expected <SUBJECT>_<SENTENCE>."
        )
    subject, sentence = name.rsplit("_", 1)
    return subject, sentence


def sentence_number(sentence: str) -> int:
    """``'sentence07'`` -> 7 (the trailing digits)."""
    match = re.search(r"(\d+)$", sentence)
    if match is None:
        raise DatasetError(f"sentence id '{sentence}' does not end in a number (expected e.g. 'sentence07').")
    return int(match.group(1))


def load_templates(path: Path) -> dict[str, np.ndarray]:
    """Reads ``templates.pkl`` ({subject: [V, 3]}, written by Python 2 in the original release, hence latin1)."""
    if not path.is_file():
        raise DatasetError(
            f"templates file {path} not found; the processed layout needs <root>/templates.pkl."
        )
    try:
        with open(path, "rb") as f:
            templates = pickle.load(f, encoding="latin1")
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the file is not a templates pickle
        raise DatasetError(
            f"{path} is not a readable templates pickle ({type(exc).__name__}: {exc})."
        ) from None
    if not isinstance(templates, dict) or not templates:
        raise DatasetError(f"{path} must hold a non-empty dict subject -> [V, 3] array.")
    out = {}
    for subject, value in templates.items():
        arr = np.asarray(value, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise DatasetError(f"template of '{subject}' in {path} has shape {arr.shape}; expected [V, 3].")
        out[str(subject)] = arr
    return out


class SequenceDataset(Dataset):
    """Reads processed-layout sequences on demand (vertices memory-mapped), optionally caching them."""

    def __init__(
        self,
        root: Path,
        names: list[str],
        templates: dict[str, np.ndarray],
        style_index: dict[str, int],
        stride: int,
        sample_rate: int,
        max_audio_seconds: float | None,
        cache: bool,
        dataset: str,
    ) -> None:
        self.root = root
        self.names = names
        self.templates = templates
        self.style_index = style_index
        self.stride = stride
        self.sample_rate = sample_rate
        self.max_audio_seconds = max_audio_seconds
        self.cache = {} if cache else None
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Sample:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        name = self.names[index]
        subject, _ = split_name(name)
        template = self.templates[subject]
        npy = self.root / "vertices_npy" / f"{name}.npy"
        try:
            verts = np.load(npy, mmap_mode="r")
        except Exception as exc:  # noqa: BLE001
            raise DatasetError(f"{npy} is not a readable .npy file ({exc}).") from None
        v = template.shape[0]
        if verts.ndim != 2 or verts.shape[1] != v * 3:
            raise DatasetError(
                f"{npy} has shape {tuple(verts.shape)} but the template of '{subject}' has {v} vertices; "
                f"expected [T, {v * 3}]."
            )
        motion = np.ascontiguousarray(verts[:: self.stride], dtype=np.float32).reshape(-1, v, 3)
        if not np.isfinite(motion).all():
            raise DatasetError(f"{npy} contains NaN or infinite vertex coordinates.")
        wav = load_audio(self.root / "wav" / f"{name}.wav", self.sample_rate, self.max_audio_seconds)
        sample = Sample(
            name=name,
            subject=subject,
            audio=torch.from_numpy(np.asarray(wav, dtype=np.float32)),
            motion=torch.from_numpy(motion),
            template=torch.from_numpy(template),
            style=self.style_index.get(subject, -1),
            dataset=self.dataset,
        )
        if self.cache is not None:
            self.cache[index] = sample
        return sample


class VocasetDataModule(SplitLoadersMixin, L.LightningDataModule):
    """VOCASET (or any dataset in its processed layout, such as ``talk data synth`` output).

    Args:
        root: Dataset root holding ``wav/``, ``vertices_npy/`` and ``templates.pkl``.
        train_subjects: Training subjects; their order defines the style (one-hot) indices.
        val_subjects: Validation subjects.
        test_subjects: Test subjects.
        train_sentences: Inclusive sentence-number range ``[first, last]`` used for training subjects.
        val_sentences: Inclusive sentence-number range for validation subjects.
        test_sentences: Inclusive sentence-number range for test subjects.
        source_fps: Frame rate of the stored vertices (VOCASET: 60).
        fps: Frame rate to train at; ``source_fps / fps`` must be an integer stride.
        sample_rate: Audio sample rate the encoder expects.
        batch_size: Sequences per batch (variable lengths are padded and masked).
        num_workers: DataLoader workers.
        cache: Keep loaded sequences in memory after first use (fine for datasets that fit in RAM).
        max_audio_seconds: Reject longer audio files (None: no limit).
        face_model_path: FLAME-format model whose faces (``f``) triangulate the vertices; defaults to
            ``<root>/face_model.pkl`` when present. For VOCASET pass your own FLAME ``generic_model.pkl``.
        regions_path: ``FLAME_masks.pkl``-format region file for the metrics; defaults to
            ``<root>/FLAME_masks.pkl`` when present.
        lip_region: Region name used for LVE.
        upper_face_regions: Region names whose union is the upper face used for FDD.
        dataset_name: Name carried with each batch.
    """

    def __init__(
        self,
        root: str = "data/vocaset",
        train_subjects: list[str] = VOCASET_TRAIN,
        val_subjects: list[str] = VOCASET_VAL,
        test_subjects: list[str] = VOCASET_TEST,
        train_sentences: tuple[int, int] = (1, 40),
        val_sentences: tuple[int, int] = (21, 40),
        test_sentences: tuple[int, int] = (21, 40),
        source_fps: float = 60.0,
        fps: float = 30.0,
        sample_rate: int = 16000,
        batch_size: int = 1,
        num_workers: int = 0,
        cache: bool = True,
        max_audio_seconds: float | None = None,
        face_model_path: str | None = None,
        regions_path: str | None = None,
        lip_region: str = "lips",
        upper_face_regions: list[str] = ["forehead", "eye_region"],  # noqa: B006 - jsonargparse needs a literal
        dataset_name: str = "vocaset",
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.train_subjects = list(train_subjects)
        self.val_subjects = list(val_subjects)
        self.test_subjects = list(test_subjects)
        self.ranges = {"train": train_sentences, "val": val_sentences, "test": test_sentences}
        stride = source_fps / fps
        if abs(stride - round(stride)) > 1e-6 or round(stride) < 1:
            raise DatasetError(f"source_fps={source_fps} is not an integer multiple of fps={fps}.")
        self.stride = int(round(stride))
        self.source_fps = source_fps
        self.fps = fps
        self.sample_rate = sample_rate
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.cache = cache
        self.max_audio_seconds = max_audio_seconds
        self.face_model_path = face_model_path
        self.regions_path = regions_path
        self.lip_region = lip_region
        self.upper_face_regions = list(upper_face_regions)
        self.dataset_name = dataset_name
        self._templates: dict[str, np.ndarray] | None = None
        self.datasets: dict[str, SequenceDataset] = {}

    # ----------------------------------------------------------------------------------------------- metadata
    @property
    def templates(self) -> dict[str, np.ndarray]:
        """Subject -> neutral mesh ``[V, 3]`` (read once, lazily)."""
        if self._templates is None:
            if not self.root.is_dir():
                raise DatasetError(
                    f"dataset root {self.root} does not exist; create one with `talk data synth --out {self.root}` "
                    "or point data.root at your processed VOCASET."
                )
            self._templates = load_templates(self.root / "templates.pkl")
        return self._templates

    @property
    def num_vertices(self) -> int:
        return next(iter(self.templates.values())).shape[0]

    @property
    def motion_dim(self) -> int:
        """Size of one flattened motion frame, ``V * 3``."""
        return self.num_vertices * 3

    @property
    def num_styles(self) -> int:
        return len(self.train_subjects)

    def faces(self) -> np.ndarray | None:
        """Triangles ``[F, 3]`` of the mesh topology, or None when no face model file is known."""
        path = Path(self.face_model_path) if self.face_model_path else self.root / "face_model.pkl"
        if not path.is_file():
            if self.face_model_path:
                raise DatasetError(f"face model {path} not found; pass data.face_model_path=<FLAME .pkl>.")
            return None
        from motion.face.flame_io import load_flame_model

        return np.asarray(load_flame_model(path)["f"], dtype=np.int64)

    def regions(self) -> dict[str, np.ndarray]:
        """Metric regions: ``{"lips": ids, "upper_face": ids}`` plus the source file, resolved by name."""
        path = Path(self.regions_path) if self.regions_path else self.root / "FLAME_masks.pkl"
        if not path.is_file():
            raise DatasetError(
                f"region file {path} not found; metrics need FLAME_masks.pkl (pass data.regions_path)."
            )
        from motion.face.flame_io import load_flame_masks

        masks = load_flame_masks(path)
        missing = [r for r in [self.lip_region, *self.upper_face_regions] if r not in masks]
        if missing:
            raise DatasetError(f"{path} has no region(s) {missing}; it holds {sorted(masks)}.")
        upper = np.unique(np.concatenate([np.asarray(masks[r]) for r in self.upper_face_regions]))
        return {
            "lips": np.asarray(masks[self.lip_region], dtype=np.int64),
            "upper_face": upper.astype(np.int64),
        }

    # ------------------------------------------------------------------------------------------------ splits
    def _scan(self) -> dict[str, list[str]]:
        wav_dir, npy_dir = self.root / "wav", self.root / "vertices_npy"
        for d in (wav_dir, npy_dir):
            if not d.is_dir():
                raise DatasetError(
                    f"{d} not found; the processed layout needs <root>/wav and <root>/vertices_npy."
                )
        wavs = {p.stem for p in wav_dir.glob("*.wav")}
        npys = {p.stem for p in npy_dir.glob("*.npy")}
        for name in sorted(npys - wavs):
            raise DatasetError(
                f"{npy_dir / (name + '.npy')} has no matching audio {wav_dir / (name + '.wav')}."
            )
        for name in sorted(wavs - npys):
            raise DatasetError(
                f"{wav_dir / (name + '.wav')} has no matching vertices {npy_dir / (name + '.npy')}."
            )
        by_split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        subjects = {"train": self.train_subjects, "val": self.val_subjects, "test": self.test_subjects}
        for name in sorted(wavs):
            subject, sentence = split_name(name)
            number = sentence_number(sentence)
            for split, members in subjects.items():
                lo, hi = self.ranges[split]
                if subject in members and lo <= number <= hi:
                    by_split[split].append(name)
        return by_split

    def setup(self, stage: str | None = None) -> None:
        templates = self.templates
        by_split = self._scan()
        style_index = {s: i for i, s in enumerate(self.train_subjects)}
        for split, names in by_split.items():
            for subject in sorted({split_name(n)[0] for n in names}):
                if subject not in templates:
                    raise DatasetError(
                        f"subject '{subject}' has sequences but no template in {self.root}/templates.pkl."
                    )
            self.datasets[split] = SequenceDataset(
                self.root, names, templates, style_index, self.stride, self.sample_rate,
                self.max_audio_seconds, self.cache, self.dataset_name,
            )  # fmt: skip
        needed = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"]}.get(stage or "fit", [])
        for split in needed:
            if not self.datasets[split].names:
                raise DatasetError(
                    f"the {split} split of {self.root} is empty: no sequence matches its subjects and "
                    f"sentences {self.ranges[split]}; check data.{split}_subjects / data.{split}_sentences."
                )
