"""The base of every talk DataModule: the arguments they share, the split loaders and the typed dataset facts.

The training code reads a DataModule only through this interface: ``train_subjects``, ``templates()``,
``faces()``, ``regions()``, ``assets()``, ``fps``, ``sample_rate``, ``num_styles``, ``motion_dim`` and ``datasets``.
A format (``talk.data.formats``) says where its files are (:meth:`TalkDataModule._read_templates`, the default
face-model files, the default region file) and builds ``datasets`` in ``setup``.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset

from talk.data.asset_files import load_faces, metric_regions
from talk.data.batch import Batch, collate
from talk.data.sampler import GlobalBatchSampler
from talk.errors import DatasetError
from talk.pipeline.assets import Assets

SPLITS = ("train", "val", "test")
# Splits each Lightning stage reads (prediction runs over the test split but accepts an empty one).
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}


class TalkDataModule(L.LightningDataModule):
    """Shared arguments, split loaders and dataset facts of the talk DataModules (subclassed by each format).

    Args:
        root: Dataset folder (region and mesh files are looked for here by default).
        train_subjects: Training subjects; their order defines the style indices. None: the format decides
            (see :meth:`_default_train_subjects`).
        fps: Motion frame rate to train at.
        sample_rate: Audio sample rate the encoder expects.
        batch_size: Sequences per batch (variable lengths are padded and masked).
        num_workers: DataLoader workers.
        cache: Keep loaded sequences in memory after first use.
        max_audio_seconds: Reject longer audio files (None: no limit).
        face_model_path: Mesh (``.ply``/``.obj``) or FLAME-format ``.pkl`` whose triangles fit the vertices; None:
            the format's default file when present, else no faces.
        regions_path: Region vertex sets for the metrics (``FLAME_masks.pkl`` format or a folder of
            ``<region>.txt``), resolved by the format so that reports name the file really used.
        lip_region: Region name used for LVE.
        upper_face_regions: Region names whose union is the upper face used for FDD.
        dataset_name: Name carried with each batch.
    """

    def __init__(
        self,
        *,
        root: str | Path = "data",
        train_subjects: list[str] | None = None,
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
        dataset_name: str = "talk",
    ) -> None:
        super().__init__()
        if not fps > 0:
            raise DatasetError(f"data.fps must be positive, got {fps}.")
        self.root = Path(root)
        self._train_subjects = None if train_subjects is None else list(train_subjects)
        self.fps = float(fps)
        self.sample_rate = int(sample_rate)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.cache = cache
        self.max_audio_seconds = max_audio_seconds
        self.face_model_path = face_model_path
        self.regions_path = regions_path
        self.lip_region = lip_region
        self.upper_face_regions = list(upper_face_regions)
        self.dataset_name = dataset_name
        self.datasets: dict[str, Dataset] = {}
        self._templates: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------------------------------ format hooks
    def _read_templates(self) -> dict[str, np.ndarray]:
        """Subject -> neutral mesh ``[V, 3]`` float32, read from the dataset's files."""
        raise NotImplementedError

    def _default_train_subjects(self) -> list[str]:
        """Training subjects when ``train_subjects`` is None."""
        raise DatasetError("pass data.train_subjects: this dataset does not define its training subjects.")

    def _default_face_model_files(self) -> list[Path]:
        """Mesh or FLAME files tried in order when ``face_model_path`` is None (the first present one is used)."""
        return []

    def _empty_split_error(self, split: str, stage: str) -> DatasetError:
        """The error raised when ``stage`` needs ``split`` and it holds no sequence."""
        return DatasetError(f"the {split} split of {self.root} is empty; `{stage}` needs it.")

    # ---------------------------------------------------------------------------------------- the facts
    @property
    def train_subjects(self) -> list[str]:
        """Training subjects in style-index order."""
        if self._train_subjects is not None:
            return self._train_subjects
        return self._default_train_subjects()

    @property
    def style_index(self) -> dict[str, int]:
        """Training subject -> style index."""
        return {s: i for i, s in enumerate(self.train_subjects)}

    @property
    def num_styles(self) -> int:
        """Number of training subjects (style conditions)."""
        return len(self.train_subjects)

    def templates(self) -> dict[str, np.ndarray]:
        """Subject -> neutral mesh ``[V, 3]`` float32 (read once, lazily)."""
        if self._templates is None:
            self._templates = self._read_templates()
        return self._templates

    @property
    def num_vertices(self) -> int:
        """Vertices per mesh."""
        return next(iter(self.templates().values())).shape[0]

    @property
    def motion_dim(self) -> int:
        """Size of one flattened motion frame, ``V * 3``."""
        return self.num_vertices * 3

    def face_model_file(self) -> Path | None:
        """The file whose triangles mesh the vertices: ``face_model_path``, else the format's default, else None."""
        if self.face_model_path:
            return Path(self.face_model_path)
        return next((p for p in self._default_face_model_files() if p.is_file()), None)

    def faces(self) -> np.ndarray | None:
        """Triangles ``[F, 3]`` of the mesh topology, or None when no face model file is known."""
        path = self.face_model_file()
        return None if path is None else load_faces(path, self.num_vertices)

    def has_regions(self) -> bool:
        """Whether the region file (or folder) exists; :meth:`regions` says why when it does not."""
        return self.regions_path is not None and Path(self.regions_path).exists()

    def regions(self) -> dict[str, np.ndarray]:
        """Metric regions ``{"lips": ids, "upper_face": ids}`` from ``regions_path``, resolved by name.

        Raises:
            DatasetError: one sentence naming the missing or malformed region file and the fix.
        """
        if self.regions_path is None:
            raise DatasetError("this dataset has no region file; pass data.regions_path=<FLAME_masks.pkl>.")
        return metric_regions(self.regions_path, self.lip_region, self.upper_face_regions, self.num_vertices)

    def assets(self) -> Assets:
        """What a model trained on this data carries in its checkpoints (regions None without a region file)."""
        return Assets(
            train_subjects=tuple(self.train_subjects),
            templates=self.templates(),
            faces=self.faces(),
            regions=self.regions() if self.has_regions() else None,
            fps=self.fps,
            sample_rate=self.sample_rate,
        )

    # ------------------------------------------------------------------------------------------- splits
    def _require_splits(self, stage: str | None) -> None:
        """Raises :meth:`_empty_split_error` for a split that ``stage`` reads and that holds no sequence."""
        stage = stage or "fit"
        for split in STAGE_SPLITS.get(stage, ()):
            if len(self.datasets[split]) == 0:
                raise self._empty_split_error(split, stage)

    def _loader(self, split: str, shuffle: bool) -> DataLoader[Batch]:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            sampler=self._train_sampler(split) if shuffle else None,
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
        )

    def _train_sampler(self, split: str) -> GlobalBatchSampler:
        """The training order (:mod:`talk.data.sampler`): the same global batches of ``W * batch_size`` sequences
        in one process and in W (DDP), drawn from the run's seed (``seed_everything``) and the epoch."""
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))  # set by seed_everything (talk's configs: 0)
        return GlobalBatchSampler(self.datasets[split], self.batch_size, replicas, rank, seed)

    def train_dataloader(self) -> DataLoader[Batch]:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader[Batch]:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader[Batch]:
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader[Batch]:
        return self._loader("test", False)
