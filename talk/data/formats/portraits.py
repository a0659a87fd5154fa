"""The synthetic portrait-video set (``talk data portraits``) as a LightningDataModule for the portrait generator.

    dm = PortraitDataModule("data/portraits", size=128, batch_size=8)
    dm.setup("fit"); batch = next(iter(dm.train_dataloader()))   # dict of [B,...] tensors (PortraitClips' keys)

Samples come from :class:`talk.synth.portrait_dataset.PortraitClips` (the warp and the conditioning renders are
computed per sample, as at inference); splits are by clip (hence by identity) as the set's manifest says. Unlike
the audio-to-motion data modules (:class:`talk.data.base.TalkDataModule`) it has no audio, subjects or vertex
templates: a portrait model needs none of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import lightning as L
from torch.utils.data import DataLoader

from talk.errors import DatasetError
from talk.synth.portrait_dataset import PortraitClips

STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}


class PortraitLoaders(L.LightningDataModule):
    """The loaders of the portrait data modules: ``self.datasets[split]`` batched by ``batch_size`` samples with
    ``num_workers`` worker processes, shuffled for training."""

    datasets: dict
    batch_size: int
    num_workers: int

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)


class PortraitDataModule(PortraitLoaders):
    """Train / val / test loaders over a portrait set written by ``talk data portraits --out ROOT``.

    Args:
        root: The set's folder (``manifest.jsonl``, ``mesh.npz``, ``clips/``).
        size: Image side the samples are served at (frames resized, cameras scaled); a multiple of the
            generator's ``2^levels`` (16 by default).
        batch_size: Samples per batch.
        num_workers: DataLoader worker processes (each sample's warp and render run in the worker).
        train_reference: ``"first"``: the reference is frame 0 (the face at rest, as from a still portrait);
            ``"random"``: a random frame of the same clip per training sample (an open mouth or a turned head in
            the reference too). Validation and test always use frame 0.
        falloff: Reach of the motion outside the mesh, a fraction of the image side (``render.warp.mesh_flow``).
        dataset_name: Name written with the test report.
    """

    def __init__(
        self,
        root: str | Path = "data/portraits",
        size: int = 128,
        batch_size: int = 8,
        num_workers: int = 0,
        train_reference: Literal["first", "random"] = "first",
        falloff: float = 0.125,
        dataset_name: str = "portraits",
    ) -> None:
        super().__init__()
        if batch_size < 1 or num_workers < 0:
            raise DatasetError(
                f"batch_size={batch_size}, num_workers={num_workers}; pass batch_size >= 1, num_workers >= 0."
            )
        self.root = Path(root)
        self.size = int(size)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.train_reference = train_reference
        self.falloff = float(falloff)
        self.dataset_name = dataset_name
        self.datasets: dict[str, PortraitClips] = {}
        self.clip_names: dict[int, str] = {}
        self._check_root()  # before the trainer starts: the error is the run's only output

    def _check_root(self) -> None:
        if not (self.root / "manifest.jsonl").is_file() or not (self.root / "mesh.npz").is_file():
            raise DatasetError(
                f"no portrait set in '{self.root}' (no manifest.jsonl / mesh.npz); write one with "
                f"`talk data portraits --out {self.root}` or pass data.init_args.root."
            )

    def setup(self, stage: str | None = None) -> None:
        self._check_root()
        records = [
            json.loads(line)
            for line in (self.root / "manifest.jsonl").read_text().splitlines()
            if line.strip()
        ]
        self.clip_names = {int(r["index"]): str(r["name"]) for r in records}
        for split in STAGE_SPLITS.get(stage or "fit", ()):
            if split in self.datasets:
                continue
            if not any(r["split"] == split for r in records):
                raise DatasetError(
                    f"the portrait set in '{self.root}' has no {split} clips; write more clips with "
                    f"`talk data portraits --out {self.root} --clips N` (about 5% of clips go to each of val and test)."
                )
            reference = self.train_reference if split == "train" else "first"
            self.datasets[split] = PortraitClips(self.root, split, self.size, reference, self.falloff)
