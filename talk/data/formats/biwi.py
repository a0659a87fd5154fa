"""BIWI (3D Audio-Visual Corpus of Affective Communication) in the processed layout of FaceFormer and CodeTalker.

Layout::

    <root>/wav/<SUBJECT>_<eNN>.wav
    <root>/vertices_npy/<SUBJECT>_<eNN>.npy     [T, 23370*3] at 25 fps
    <root>/templates.pkl                         {subject: [23370, 3]} (latin1 pickle)
    <root>/regions/lve.txt, fdd.txt              CodeTalker's lip / upper-face vertex ids ("2, 6, 21, ...")
    <root>/BIWI.ply                              optional mesh whose triangles are used for rendering

Subjects F1-F8 and M1-M6, sentences e01-e40. Splits (DESIGN.md §5): train subjects F2 F3 F4 M3 M4 M5 with
e01-e32 for training and e33-e36 for validation; Test-A = the same subjects on e37-e40; Test-B = the other eight
subjects on e37-e40. As in FaceFormer and CodeTalker, a test sequence of a subject unseen in training is evaluated
once per training-speaker condition (``per_condition``); its name gets the suffix ``_condition_<SUBJECT>``.

BIWI is read in VOCASET's processed layout, so :class:`BiwiDataModule` is a :class:`VocasetDataModule` with BIWI's
subjects, sentence ranges, test splits and default mesh and region files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from torch.utils.data import Dataset

from talk.data.batch import Sample
from talk.data.formats.vocaset import SequenceDataset, VocasetDataModule, split_name
from talk.errors import DatasetError

BIWI_SUBJECTS = ["F1", "F2", "F3", "F4", "F5", "F6", "F7", "F8", "M1", "M2", "M3", "M4", "M5", "M6"]
BIWI_TRAIN = ["F2", "F3", "F4", "M3", "M4", "M5"]
BIWI_VERTICES = 23370
BIWI_FPS = 25.0


# --------------------------------------------------------------------------------------------------- datasets
class PerConditionDataset(Dataset):
    """Repeats every sequence of an unseen subject once per training-speaker condition.

    A seen subject keeps its own style index; an unseen one appears ``len(train_subjects)`` times, with style
    ``i`` and the name ``<name>_condition_<train_subjects[i]>`` (the naming of FaceFormer's saved predictions).
    """

    def __init__(self, base: SequenceDataset, train_subjects: list[str]) -> None:
        self.base = base
        self.items: list[tuple[int, int, str]] = []  # (base index, style, name)
        for i, name in enumerate(base.names):
            style = base.style_index.get(split_name(name)[0], -1)
            if style >= 0:
                self.items.append((i, style, name))
            else:
                for s, condition in enumerate(train_subjects):
                    self.items.append((i, s, f"{name}_condition_{condition}"))
        self.names = [name for _, _, name in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        i, style, name = self.items[index]
        return dataclasses.replace(self.base[i], name=name, style=style)


class BiwiDataModule(VocasetDataModule):
    """BIWI in the FaceFormer/CodeTalker processed layout (25 fps, 23370 vertices).

    Args:
        root: Dataset root holding ``wav/``, ``vertices_npy/`` and ``templates.pkl``.
        train_subjects: Training subjects (also the validation and Test-A subjects); their order defines the
            style indices.
        test_split: ``"A"``: the training subjects on the test sentences; ``"B"``: every other subject of
            ``all_subjects`` on the test sentences.
        all_subjects: Every subject of the corpus (Test-B is ``all_subjects`` minus ``train_subjects``).
        train_sentences: Inclusive sentence-number range ``[first, last]`` for training.
        val_sentences: Inclusive sentence-number range for validation.
        test_sentences: Inclusive sentence-number range for testing.
        per_condition: Evaluate each test sequence of a subject unseen in training once per training-speaker
            condition (FaceFormer/CodeTalker protocol). False gives one sample with style -1, which the model
            resolves with its ``test_condition`` (or the average style).
        source_fps: Frame rate of the stored vertices (BIWI: 25).
        fps: Frame rate to train at; ``source_fps / fps`` must be an integer stride.
        regions_path: Region vertex sets for the metrics: a folder of ``<region>.txt`` files or a
            ``FLAME_masks.pkl``-format pickle; defaults to ``<root>/regions`` (CodeTalker's ``lve.txt``/``fdd.txt``).
        lip_region: Region name used for LVE.
        upper_face_regions: Region names whose union is the upper face used for FDD.
        dataset_name: Name carried with each batch.
        **kwargs: The arguments every format shares (:class:`~talk.data.base.TalkDataModule`): ``sample_rate``,
            ``batch_size``, ``num_workers``, ``cache`` (BIWI is about 4 GB as float32), ``max_audio_seconds``,
            ``face_model_path`` (default: ``<root>/BIWI.ply`` or ``<root>/templates/BIWI.ply`` when present).
    """

    def __init__(
        self,
        root: str = "data/biwi",
        train_subjects: list[str] = BIWI_TRAIN,
        test_split: Literal["A", "B"] = "A",
        all_subjects: list[str] = BIWI_SUBJECTS,
        train_sentences: tuple[int, int] = (1, 32),
        val_sentences: tuple[int, int] = (33, 36),
        test_sentences: tuple[int, int] = (37, 40),
        per_condition: bool = True,
        source_fps: float = BIWI_FPS,
        fps: float = BIWI_FPS,
        regions_path: str | None = None,
        lip_region: str = "lve",
        upper_face_regions: list[str] = ["fdd"],  # noqa: B006 - jsonargparse needs a literal
        dataset_name: str = "biwi",
        **kwargs: Any,
    ) -> None:
        if test_split not in ("A", "B"):
            raise DatasetError(f"data.test_split must be 'A' or 'B', got {test_split!r}.")
        train = list(train_subjects)
        unknown = [s for s in train if s not in all_subjects]
        if unknown:
            raise DatasetError(f"train_subjects {unknown} are not in all_subjects {list(all_subjects)}.")
        test = train if test_split == "A" else [s for s in all_subjects if s not in train]
        super().__init__(
            root=root,
            train_subjects=train,
            val_subjects=train,
            test_subjects=test,
            train_sentences=train_sentences,
            val_sentences=val_sentences,
            test_sentences=test_sentences,
            source_fps=source_fps,
            fps=fps,
            # resolved here so that metrics.json names the file that was really used
            regions_path=regions_path or str(Path(root) / "regions"),
            lip_region=lip_region,
            upper_face_regions=upper_face_regions,
            dataset_name=dataset_name,
            **kwargs,
        )
        self.test_split = test_split
        self.per_condition = per_condition

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.per_condition:
            self.datasets["test"] = PerConditionDataset(self.datasets["test"], self.train_subjects)

    def _default_face_model_files(self) -> list[Path]:
        return [self.root / "BIWI.ply", self.root / "templates" / "BIWI.ply"]
