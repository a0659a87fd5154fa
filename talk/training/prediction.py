"""``talk predict`` output: every predicted sequence as ``<run dir>/predictions/<name>.npz`` (and, on request, meshes).

The predict split is the data's test split (``TalkDataModule.predict_dataloader``). ``talk predict`` adds this
writer by itself (options ``--predictions.*``); in Python, pass it to ``Trainer(callbacks=[...])``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter

from talk.errors import CheckpointError
from talk.files import write_bytes_atomic

__all__ = ["PredictionWriter"]


class PredictionWriter(BasePredictionWriter):
    """Writes what ``predict_step`` returns, one file per sequence, as each batch is predicted.

    ``<output_dir>/<name>.npz`` holds ``vertices`` (float32 ``[T, V, 3]``, the sequence's own ``T`` frames, padding
    removed) and ``fps``; with ``meshes`` also ``<output_dir>/<name>/frame_00000.<meshes>, ...`` (one mesh per frame,
    the model's mesh faces; see ``render.export.export_meshes``). Files are written atomically and replace those of
    an earlier prediction of the same sequence. Each process writes the sequences of its own batches (prediction
    batches are disjoint across processes), so multi-device prediction writes every sequence once.

    Args:
        output_dir: Folder of the predictions; None: ``predictions/`` in the run directory
            (``trainer.default_root_dir``).
        meshes: Also write each sequence's meshes in this format (``obj`` or ``ply``); None: vertices only.

    Attributes:
        path: The folder written to (resolved when prediction starts).
        written: Sequences this process has written.
    """

    def __init__(self, output_dir: str | None = None, meshes: Literal["obj", "ply"] | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.meshes = meshes
        self.written = 0
        self.path = Path(output_dir or "predictions")
        self._faces: Any = None
        self._fps = 30.0

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after the checkpoint is restored: its assets (faces, fps) are the ones the model was trained with
        self.path = Path(self.output_dir or Path(trainer.default_root_dir) / "predictions")
        self.written = 0
        assets = getattr(pl_module, "assets", None)
        dm = getattr(trainer, "datamodule", None)
        self._fps = float(getattr(assets, "fps", None) or getattr(dm, "fps", None) or 30.0)
        self._faces = getattr(assets, "faces", None)
        if self._faces is None and dm is not None and hasattr(dm, "faces"):
            self._faces = dm.faces()
        if self.meshes and self._faces is None:
            raise CheckpointError(
                f"--predictions.meshes {self.meshes}: this model has no mesh faces; set data.face_model_path to "
                "the face model's file, or predict vertices only."
            )

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        vertices = prediction["vertices"].detach().float().cpu().numpy()  # [B, T, V, 3]
        for i, name in enumerate(prediction["names"]):
            sequence = np.ascontiguousarray(vertices[i, : int(prediction["lengths"][i])])
            buffer = io.BytesIO()
            np.savez(buffer, vertices=sequence, fps=np.float64(self._fps))
            write_bytes_atomic(self.path / f"{name}.npz", buffer.getvalue())
            if self.meshes:
                from render.export import export_meshes

                export_meshes(
                    sequence, self._faces, self.path / name, fmt=self.meshes, fps=self._fps, overwrite=True
                )
            self.written += 1

    def summary(self) -> str:
        """Where the files went, in one line (``talk predict`` prints it at the end)."""
        meshes = f", meshes in <name>/*.{self.meshes}" if self.meshes else ""
        return f"predictions: {self.written} sequences in {self.path} (<name>.npz: vertices [T, V, 3], fps{meshes})"
