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

import difflib
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from audio.io import load_audio
from talk.data.asset_files import load_templates
from talk.data.base import SPLITS, TalkDataModule
from talk.data.batch import Sample
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


class VocasetDataModule(TalkDataModule):
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
        regions_path: Region vertex sets for the metrics (``FLAME_masks.pkl`` format or a folder of
            ``<region>.txt``); defaults to ``<root>/FLAME_masks.pkl``.
        dataset_name: Name carried with each batch.
        **kwargs: The arguments every format shares (:class:`~talk.data.base.TalkDataModule`): ``sample_rate``,
            ``batch_size``, ``num_workers``, ``cache``, ``max_audio_seconds``, ``face_model_path`` (default:
            ``<root>/face_model.pkl`` when present; for VOCASET pass your FLAME ``generic_model.pkl``),
            ``lip_region``, ``upper_face_regions``.
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
        regions_path: str | None = None,
        dataset_name: str = "vocaset",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            root=root,
            train_subjects=train_subjects,
            fps=fps,
            # resolved here so that metrics.json names the file that was really used
            regions_path=regions_path or str(Path(root) / "FLAME_masks.pkl"),
            dataset_name=dataset_name,
            **kwargs,
        )
        self.val_subjects = list(val_subjects)
        self.test_subjects = list(test_subjects)
        self.ranges = {"train": train_sentences, "val": val_sentences, "test": test_sentences}
        stride = source_fps / fps
        if abs(stride - round(stride)) > 1e-6 or round(stride) < 1:
            raise DatasetError(f"source_fps={source_fps} is not an integer multiple of fps={fps}.")
        self.stride = int(round(stride))
        self.source_fps = source_fps

    # ------------------------------------------------------------------------------------------ format hooks
    def _read_templates(self) -> dict[str, np.ndarray]:
        if not self.root.is_dir():
            problem = "is a file, not a folder" if self.root.exists() else "does not exist"
            raise DatasetError(
                f"dataset root {self.root} {problem}; create one with `talk data synth --out {self.root}` "
                "or point data.root at your processed VOCASET."
            )
        return load_templates(self.root / "templates.pkl")

    def _default_face_model_files(self) -> list[Path]:
        return [self.root / "face_model.pkl"]

    def _empty_split_error(self, split: str, stage: str) -> DatasetError:
        return DatasetError(
            f"the {split} split of {self.root} is empty: no sequence matches its subjects and "
            f"sentences {self.ranges[split]}; check data.{split}_subjects / data.{split}_sentences."
        )

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
        by_split: dict[str, list[str]] = {split: [] for split in SPLITS}
        subjects = {"train": self.train_subjects, "val": self.val_subjects, "test": self.test_subjects}
        present = sorted({split_name(name)[0] for name in wavs})
        # a misspelt or unconverted subject would otherwise be left out of its split without a word
        for split, members in subjects.items():
            for subject in members:
                if subject not in present:
                    close = difflib.get_close_matches(subject, present, n=1, cutoff=0.6)
                    hint = f"did you mean '{close[0]}'? " if close else ""
                    raise DatasetError(
                        f"data.{split}_subjects names '{subject}', which has no sequences in {self.root}; {hint}"
                        f"its subjects are {', '.join(present) or 'none'}."
                    )
        for name in sorted(wavs):
            subject, sentence = split_name(name)
            number = sentence_number(sentence)
            for split, members in subjects.items():
                lo, hi = self.ranges[split]
                if subject in members and lo <= number <= hi:
                    by_split[split].append(name)
        return by_split

    def setup(self, stage: str | None = None) -> None:
        templates = self.templates()
        by_split = self._scan()
        for split, names in by_split.items():
            for subject in sorted({split_name(n)[0] for n in names}):
                if subject not in templates:
                    raise DatasetError(
                        f"subject '{subject}' has sequences but no template in {self.root}/templates.pkl."
                    )
            self.datasets[split] = SequenceDataset(
                self.root, names, templates, self.style_index, self.stride, self.sample_rate,
                self.max_audio_seconds, self.cache, self.dataset_name,
            )  # fmt: skip
        self._require_splits(stage)
