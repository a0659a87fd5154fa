"""Lightning callbacks of talk: test-time comparison videos."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from talk.metrics import lve_mm


class ComparisonVideos(L.Callback):
    """Renders the first test sequences as ``prediction | ground truth | error heat map`` videos with their audio.

    Enable from the command line or YAML: ``talk test ... --trainer.callbacks+=talk.training.callbacks.ComparisonVideos``.
    Videos go to ``<default_root_dir>/videos/<sequence>.mp4``, captioned with the sequence name and its LVE-mm.

    Args:
        num_sequences: How many test sequences to render (in test order).
        size: Panel height and width in pixels.
        max_error_mm: Error mapped to the top of the colour bar.
        background: RGB in [0, 1] behind the meshes.
    """

    def __init__(
        self,
        num_sequences: int = 4,
        size: int = 256,
        max_error_mm: float = 5.0,
        background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> None:
        if num_sequences < 0 or size < 16 or size % 2:
            raise ValueError("ComparisonVideos needs num_sequences >= 0 and an even size >= 16.")
        self.num_sequences = num_sequences
        self.size = size
        self.max_error_mm = max_error_mm
        self.background = tuple(background)
        self.written: list[Path] = []

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.written = []

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if (
            not trainer.is_global_zero  # under DDP the first process renders its first sequences
            or len(self.written) >= self.num_sequences
            or not isinstance(outputs, dict)
            or "vertices" not in outputs
        ):
            return
        assets = pl_module.assets
        if assets is None or assets.faces is None:
            return
        faces = assets.faces
        lips = None if assets.regions is None else assets.regions.get("lips")
        sample_rate = assets.sample_rate
        out_dir = Path(trainer.default_root_dir) / "videos"
        out_dir.mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(batch.names):
            if len(self.written) >= self.num_sequences:
                break
            t = int(batch.motion_lengths[i])
            pred = outputs["vertices"][i, :t].float().cpu()
            truth = batch.motion[i, :t].float().cpu()
            error = lve_mm(pred, truth, lips)
            self.written.append(self._write(out_dir / f"{name}.mp4", pred, truth, faces, batch, i, sample_rate,
                                            float(pl_module.fps), f"{name}  LVE {error:.2f} mm"))  # fmt: skip

    def _write(
        self, path: Path, pred, truth, faces, batch, i: int, sample_rate: int, fps: float, caption: str
    ):  # noqa: ANN001
        import soundfile as sf

        from render.compare import ComparisonRenderer

        renderer = ComparisonRenderer(
            panel_size=(self.size, self.size), max_error_mm=self.max_error_mm, background=self.background
        )
        audio = batch.audio[i, : int(batch.audio_lengths[i])].float().cpu().numpy()
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "audio.wav"
            sf.write(wav, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16")
            faces_t = torch.as_tensor(faces, dtype=torch.long)
            renderer.write_video(path, pred, faces_t, fps, ground_truth=truth, audio=wav, caption=caption)
        return path
