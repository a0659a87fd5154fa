"""DataLoaders of the train/val/test splits, shared by every talk DataModule."""

from __future__ import annotations

from torch.utils.data import DataLoader, Dataset

from talk.data.batch import Batch, collate


class SplitLoadersMixin:
    """``train/val/test/predict_dataloader`` over ``self.datasets[split]`` with the talk collate function.

    The DataModule sets ``datasets`` (split name -> Dataset), ``batch_size`` and ``num_workers``; prediction
    runs over the test split.
    """

    datasets: dict[str, Dataset]
    batch_size: int
    num_workers: int

    def _loader(self, split: str, shuffle: bool) -> DataLoader[Batch]:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader[Batch]:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader[Batch]:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader[Batch]:
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader[Batch]:
        return self._loader("test", False)
