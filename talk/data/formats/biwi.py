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

The region and mesh-file readers here (:func:`load_region_sets`, :func:`metric_regions`, :func:`load_faces`) are
shared with the manifest DataModule.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Literal

import numpy as np
from torch.utils.data import Dataset

from talk.data.batch import Sample
from talk.data.formats.vocaset import SequenceDataset, VocasetDataModule, split_name
from talk.errors import DatasetError

BIWI_SUBJECTS = ["F1", "F2", "F3", "F4", "F5", "F6", "F7", "F8", "M1", "M2", "M3", "M4", "M5", "M6"]
BIWI_TRAIN = ["F2", "F3", "F4", "M3", "M4", "M5"]
BIWI_VERTICES = 23370
BIWI_FPS = 25.0


# ------------------------------------------------------------------------------------- region and mesh files
def load_region_sets(path: str | Path) -> dict[str, np.ndarray]:
    """Reads named vertex sets from a ``FLAME_masks.pkl``-format pickle or a folder of ``<name>.txt`` files.

    A text file holds integer vertex ids separated by commas and/or whitespace (CodeTalker's BIWI
    ``regions/lve.txt`` and ``regions/fdd.txt``); the region is named after the file stem.

    Args:
        path: The pickle, or the folder of text files.

    Returns:
        Region name -> int64 vertex ids ``[N]``.
    """
    path = Path(path)
    if path.is_dir():
        out = {}
        for txt in sorted(path.glob("*.txt")):
            tokens = [t for t in re.split(r"[,\s]+", txt.read_text()) if t]
            try:
                out[txt.stem] = np.asarray([int(t) for t in tokens], dtype=np.int64)
            except ValueError:
                raise DatasetError(
                    f"region file {txt} must hold integer vertex ids separated by commas or spaces."
                ) from None
        if not out:
            raise DatasetError(f"region folder {path} holds no <region>.txt files (e.g. lve.txt, fdd.txt).")
        return out
    if not path.is_file():
        raise DatasetError(
            f"region file {path} not found; pass data.regions_path=<FLAME_masks.pkl or folder of <region>.txt>."
        )
    from motion.face.flame_io import load_flame_masks

    try:
        return load_flame_masks(path)
    except Exception as exc:  # noqa: BLE001 - FlameModelFormatError and friends already name the file
        raise DatasetError(str(exc)) from None


def metric_regions(
    path: str | Path, lip_region: str, upper_face_regions: list[str], num_vertices: int
) -> dict[str, np.ndarray]:
    """The two vertex sets the metrics use: ``{"lips": ids, "upper_face": ids}`` (upper face = union).

    Args:
        path: Region file or folder (see :func:`load_region_sets`).
        lip_region: Region name used for LVE.
        upper_face_regions: Region names whose union is the FDD upper face.
        num_vertices: Vertex count of the meshes; ids must be below it.
    """
    sets = load_region_sets(path)
    missing = [r for r in [lip_region, *upper_face_regions] if r not in sets]
    if missing:
        raise DatasetError(f"{path} has no region(s) {missing}; it holds {sorted(sets)}.")
    for name in [lip_region, *upper_face_regions]:
        ids = sets[name]
        if ids.size == 0:
            raise DatasetError(f"region '{name}' in {path} is empty.")
        if ids.min() < 0 or ids.max() >= num_vertices:
            raise DatasetError(
                f"region '{name}' in {path} has vertex ids up to {int(ids.max())} but the meshes have "
                f"{num_vertices} vertices; the region file belongs to another topology."
            )
    upper = np.unique(np.concatenate([sets[r] for r in upper_face_regions]))
    return {"lips": sets[lip_region].astype(np.int64), "upper_face": upper.astype(np.int64)}


def load_faces(path: str | Path, num_vertices: int) -> np.ndarray:
    """Triangles ``[F, 3]`` from a FLAME-format ``.pkl`` (key ``f``) or a mesh file (``.ply``/``.obj``).

    Args:
        path: The file.
        num_vertices: Vertex count of the dataset's meshes (the triangles must index them).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"face model {path} not found; pass data.face_model_path=<FLAME .pkl or mesh .ply/.obj>."
        )
    if path.suffix == ".pkl":
        from motion.face.flame_io import load_flame_model

        try:
            faces = np.asarray(load_flame_model(path)["f"], dtype=np.int64)
        except Exception as exc:  # noqa: BLE001
            raise DatasetError(str(exc)) from None
    else:
        import trimesh

        try:
            # process=False keeps the file's vertex order, which is what the vertex ids refer to
            mesh = trimesh.load(path, process=False, force="mesh")
        except Exception as exc:  # noqa: BLE001
            raise DatasetError(f"{path} is not a readable mesh file ({type(exc).__name__}: {exc}).") from None
        faces = np.asarray(mesh.faces, dtype=np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.size == 0:
        raise DatasetError(f"{path} holds no triangles (faces of shape {faces.shape}).")
    if faces.max() >= num_vertices:
        raise DatasetError(
            f"{path} has triangles indexing vertex {int(faces.max())} but the meshes have {num_vertices} "
            "vertices; pass the mesh of this dataset's topology."
        )
    return faces


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
        sample_rate: Audio sample rate the encoder expects.
        batch_size: Sequences per batch (variable lengths are padded and masked).
        num_workers: DataLoader workers.
        cache: Keep loaded sequences in memory after first use (BIWI is about 4 GB as float32).
        max_audio_seconds: Reject longer audio files (None: no limit).
        face_model_path: Mesh (``.ply``/``.obj``) or FLAME-format ``.pkl`` whose triangles fit the vertices;
            defaults to ``<root>/BIWI.ply`` or ``<root>/templates/BIWI.ply`` when present, else no faces.
        regions_path: Region vertex sets for the metrics: a folder of ``<region>.txt`` files or a
            ``FLAME_masks.pkl``-format pickle; defaults to ``<root>/regions`` (CodeTalker's ``lve.txt``/``fdd.txt``).
        lip_region: Region name used for LVE.
        upper_face_regions: Region names whose union is the upper face used for FDD.
        dataset_name: Name carried with each batch.
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
        sample_rate: int = 16000,
        batch_size: int = 1,
        num_workers: int = 0,
        cache: bool = True,
        max_audio_seconds: float | None = None,
        face_model_path: str | None = None,
        regions_path: str | None = None,
        lip_region: str = "lve",
        upper_face_regions: list[str] = ["fdd"],  # noqa: B006 - jsonargparse needs a literal
        dataset_name: str = "biwi",
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
            sample_rate=sample_rate,
            batch_size=batch_size,
            num_workers=num_workers,
            cache=cache,
            max_audio_seconds=max_audio_seconds,
            face_model_path=face_model_path,
            # resolved here so that metrics.json names the file that was really used
            regions_path=regions_path or str(Path(root) / "regions"),
            lip_region=lip_region,
            upper_face_regions=upper_face_regions,
            dataset_name=dataset_name,
        )
        self.test_split = test_split
        self.per_condition = per_condition

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.per_condition:
            self.datasets["test"] = PerConditionDataset(self.datasets["test"], self.train_subjects)

    def faces(self) -> np.ndarray | None:
        """Triangles ``[F, 3]`` from ``face_model_path`` or ``<root>/BIWI.ply``, or None when there is none."""
        if self.face_model_path:
            return load_faces(self.face_model_path, self.num_vertices)
        for candidate in (self.root / "BIWI.ply", self.root / "templates" / "BIWI.ply"):
            if candidate.is_file():
                return load_faces(candidate, self.num_vertices)
        return None

    def regions(self) -> dict[str, np.ndarray]:
        """Metric regions ``{"lips": ids, "upper_face": ids}`` from ``regions_path`` (default ``<root>/regions``)."""
        return metric_regions(self.regions_path, self.lip_region, self.upper_face_regions, self.num_vertices)
