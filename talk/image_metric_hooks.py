"""Hooks for the image metrics that need a pretrained network: LPIPS, FID, CSIM and SyncNet's LSE-C / LSE-D.

talk ships none of those networks and downloads nothing at run time: each hook takes a file the user provides, a
TorchScript export of the network (``torch.jit.save`` of a traced or scripted module, so that no architecture or
third-party package is needed here), and computes the metric's own formula around it. A hook without its file, or
without what it needs (SyncNet needs audio), is skipped, and :meth:`MetricHook.skip_reason` says so in one line
that names the file to provide.

The networks' contracts (images ``[B,3,H,W]`` float in [0,1], at the evaluated size; any resizing, cropping,
face alignment or normalisation a network needs is part of its export):

- LPIPS (Zhang et al. 2018): ``net(pred, target) -> [B]`` (or ``[B,1,1,1]``) distances, lower is better; the
  mean over frames is reported. E.g. a trace of ``lpips.LPIPS(net="alex")`` behind ``x * 2 - 1``.
- FID (Heusel et al. 2017): ``net(images) -> [B,D]`` features (Inception-v3 pool3, D = 2048, in the original);
  the Frechet distance between Gaussians fitted to the generated frames' and the real frames' features.
- CSIM: ``net(images) -> [B,D]`` identity embeddings (ArcFace in the literature); the mean cosine similarity
  between each generated frame and its reference portrait, higher is better.
- LSE-C / LSE-D (Wav2Lip's SyncNet evaluation): ``net.embed_video(frames [T,3,H,W]) -> [T,D]`` and
  ``net.embed_audio(audio [N] at 16 kHz, frames T) -> [T,D]``, one embedding per video frame; per clip the mean
  distance between video and audio embeddings at each offset in ``[-max_offset, max_offset]`` frames, LSE-D the
  smallest, LSE-C the median minus the smallest (:func:`sync_scores`); means over clips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "CSIMHook",
    "FIDHook",
    "LPIPSHook",
    "MetricHook",
    "SyncNetHook",
    "frechet_distance",
    "sync_scores",
]


class MetricHook:
    """A metric computed with a user-provided TorchScript network (see the module docstring).

    Args:
        weights: The TorchScript file, or None when the user gave none (the hook is then skipped).
        option: How the user passes ``weights`` (named in the skip message), e.g. ``--model.init_args.lpips_weights``.
    """

    name: ClassVar[str] = ""
    keys: ClassVar[tuple[str, ...]] = ()  # the figures compute() returns
    units: ClassVar[dict[str, str]] = {}
    needs_audio: ClassVar[bool] = False

    def __init__(self, weights: str | Path | None = None, option: str = "") -> None:
        self.weights = None if weights in (None, "") else Path(weights)
        self.option = option
        self._net: Any = None

    def skip_reason(self, has_audio: bool = False) -> str | None:
        """One line saying why the metric is skipped, or None when it can run."""
        if self.weights is None:
            return f"{self.name}: skipped (no network file); pass {self.option}=FILE (a TorchScript export)."
        if not self.weights.is_file():
            return f"{self.name}: skipped ({self.weights} does not exist); pass {self.option}=FILE."
        if self.needs_audio and not has_audio:
            return f"{self.name}: skipped (the data has no audio)."
        return None

    @property
    def net(self) -> Any:
        if self._net is None:
            try:
                self._net = torch.jit.load(str(self.weights), map_location="cpu").eval()
            except RuntimeError as exc:
                from talk.errors import UserError

                raise UserError(f"{self.weights} is not a TorchScript file ({str(exc).splitlines()[0]}); "
                                f"pass {self.option} a file written by torch.jit.save.") from None  # fmt: skip
        return self._net

    def update(self, pred: Tensor, target: Tensor, reference: Tensor, clips: list[str]) -> None:
        """Adds a batch: generated, real and reference frames ``[B,3,H,W]`` in [0,1], clip name per frame."""
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError


class LPIPSHook(MetricHook):
    """LPIPS of every generated frame against the real one; mean over frames (lower is better)."""

    name, keys, units = "LPIPS", ("lpips",), {"lpips": "1"}

    def __init__(self, weights: str | Path | None = None, option: str = "") -> None:
        super().__init__(weights, option)
        self._sum, self._n = 0.0, 0

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor, reference: Tensor, clips: list[str]) -> None:
        d = self.net(pred.float().cpu(), target.float().cpu()).reshape(pred.shape[0])
        self._sum, self._n = self._sum + float(d.double().sum()), self._n + pred.shape[0]

    def compute(self) -> dict[str, float]:
        return {"lpips": self._sum / max(self._n, 1)}


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` between two Gaussians (means ``[D]``, covariances
    ``[D,D]``); the matrix square root's tiny imaginary part from rounding is dropped."""
    from scipy import linalg

    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # singular product: regularise, as is usual for few samples
        eps = 1e-6 * np.eye(sigma1.shape[0])
        covmean = linalg.sqrtm((sigma1 + eps) @ (sigma2 + eps))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


class FIDHook(MetricHook):
    """FID between the generated frames and the real frames of the split (lower is better)."""

    name, keys, units = "FID", ("fid",), {"fid": "1"}

    def __init__(self, weights: str | Path | None = None, option: str = "") -> None:
        super().__init__(weights, option)
        self._fake: list[np.ndarray] = []
        self._real: list[np.ndarray] = []

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor, reference: Tensor, clips: list[str]) -> None:
        self._fake.append(self.net(pred.float().cpu()).double().numpy())
        self._real.append(self.net(target.float().cpu()).double().numpy())

    def compute(self) -> dict[str, float]:
        fake, real = np.concatenate(self._fake), np.concatenate(self._real)
        stats = [(f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))) for f in (fake, real)]
        return {"fid": frechet_distance(*stats[0], *stats[1])}


class CSIMHook(MetricHook):
    """Cosine similarity of identity embeddings, generated frame vs its reference portrait (higher is better)."""

    name, keys, units = "CSIM", ("csim",), {"csim": "1"}

    def __init__(self, weights: str | Path | None = None, option: str = "") -> None:
        super().__init__(weights, option)
        self._sum, self._n = 0.0, 0

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor, reference: Tensor, clips: list[str]) -> None:
        a, b = self.net(pred.float().cpu()), self.net(reference.float().cpu())
        cos = torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)
        self._sum, self._n = self._sum + float(cos.double().sum()), self._n + pred.shape[0]

    def compute(self) -> dict[str, float]:
        return {"csim": self._sum / max(self._n, 1)}


def sync_scores(video: Tensor, audio: Tensor, max_offset: int = 15) -> tuple[float, float]:
    """LSE-D and LSE-C of one clip from per-frame embeddings ``video`` and ``audio`` ``[T,D]``.

    For each offset ``k`` in ``[-max_offset, max_offset]``, the mean over frames ``t`` of
    ``||video[t] - audio[t + k]||`` (audio zero-padded past its ends, as SyncNet's evaluation pads it);
    LSE-D is the smallest mean distance, LSE-C the median of the means minus that smallest.
    """
    t = video.shape[0]
    padded = torch.nn.functional.pad(audio, (0, 0, max_offset, max_offset))
    means = torch.stack(
        [(video - padded[k : k + t]).norm(dim=1).mean() for k in range(2 * max_offset + 1)]
    ).double()
    low = float(means.min())
    return low, float(means.median()) - low


class SyncNetHook(MetricHook):
    """LSE-D (lower is better) and LSE-C (higher is better) of generated clips against their audio."""

    name, keys, units, needs_audio = "LSE-C/LSE-D", ("lse_d", "lse_c"), {"lse_d": "1", "lse_c": "1"}, True

    def __init__(self, weights: str | Path | None = None, option: str = "", max_offset: int = 15) -> None:
        super().__init__(weights, option)
        self.max_offset = max_offset
        self._scores: list[tuple[float, float]] = []

    @torch.no_grad()
    def update_clip(self, frames: Tensor, audio: Tensor) -> None:
        """Adds one whole clip: generated frames ``[T,3,H,W]`` in [0,1] and its audio ``[N]`` at 16 kHz."""
        video = self.net.embed_video(frames.float().cpu())
        sound = self.net.embed_audio(audio.float().cpu(), frames.shape[0])
        self._scores.append(sync_scores(video, sound, self.max_offset))

    def update(self, pred: Tensor, target: Tensor, reference: Tensor, clips: list[str]) -> None:
        raise NotImplementedError("SyncNet scores whole clips with their audio: call update_clip.")

    def compute(self) -> dict[str, float]:
        n = max(len(self._scores), 1)
        return {"lse_d": sum(s[0] for s in self._scores) / n, "lse_c": sum(s[1] for s in self._scores) / n}
