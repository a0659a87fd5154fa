"""Image metrics of the portrait path (DESIGN.md §6): PSNR and SSIM with their published definitions, and the
accumulator ``talk test`` reports them with, per clip and over a split.

- ``psnr``: ``10 log10(data_range^2 / MSE)`` over all pixels and channels of one image, in dB; identical images
  give ``inf``.
- ``ssim``: Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5) and ``C1 = (0.01 L)^2``,
  ``C2 = (0.03 L)^2`` (``L`` the data range), population (co)variances; the SSIM map is taken where the window fits
  inside the image (no padding) and averaged over those pixels and over the channels. This is scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1,
  channel_axis=...)``, which filters with padding and then crops the window's half-width off every side. It is
  differentiable, so the training loss uses it too.

The split-wide figure is the mean over frames of the per-frame value (each frame weighs the same), and each clip's
figure the mean over its frames; frames whose PSNR is infinite count as ``PSNR_CAP`` dB so that one exact frame
does not make a mean infinite.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import torch
import torch.nn.functional as F_
from torch import Tensor

__all__ = ["IMAGE_UNITS", "PSNR_CAP", "ClipScores", "ImageMetrics", "gaussian_window", "psnr", "ssim"]

IMAGE_UNITS = {"psnr": "dB", "ssim": "1"}
PSNR_CAP = 100.0  # dB: what an exact frame counts as in a mean
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per image, in dB.

    Args:
        pred: ``[B,C,H,W]`` images.
        target: ``[B,C,H,W]`` reference images, same range.
        data_range: Peak value minus lowest value of the image type (1 for [0,1] floats).

    Returns:
        ``[B]`` PSNR in dB (``inf`` where the images are equal).
    """
    mse = (pred - target).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse)  # mse 0 -> inf


def gaussian_window(
    size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, dtype: torch.dtype = torch.float32
) -> Tensor:
    """The normalised 1-D Gaussian ``[size]`` (odd size) SSIM filters with along each axis."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    return (g / g.sum()).to(dtype)


def _filter(x: Tensor, window: Tensor) -> Tensor:
    """Separable Gaussian filter of ``[B,C,H,W]`` per channel, valid part only: ``[B,C,H-k+1,W-k+1]``."""
    c, k = x.shape[1], window.numel()
    x = F_.conv2d(x, window.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F_.conv2d(x, window.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def ssim(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Structural similarity per image (the definition in the module docstring), differentiable.

    Args:
        pred: ``[B,C,H,W]`` images, H and W at least 11.
        target: ``[B,C,H,W]`` reference images.
        data_range: Peak value minus lowest value (1 for [0,1] floats).

    Returns:
        ``[B]`` mean SSIM (1 for identical images).
    """
    if min(pred.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(pred.shape[-2:])}."
        )
    window = gaussian_window(dtype=pred.dtype).to(pred.device)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _filter(pred, window), _filter(target, window)
    var_x = _filter(pred * pred, window) - mu_x**2
    var_y = _filter(target * target, window) - mu_y**2
    cov = _filter(pred * target, window) - mu_x * mu_y
    num = (2.0 * mu_x * mu_y + c1) * (2.0 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (num / den).flatten(1).mean(dim=1)


@dataclass(frozen=True)
class ClipScores:
    """One method's figures on one clip: ``frames`` evaluated, mean PSNR (dB) and mean SSIM over them."""

    name: str
    frames: int
    psnr: float
    ssim: float


class ImageMetrics:
    """PSNR and SSIM of one method (a generator or a baseline) over a split, kept per clip.

    Frames are added once each, by clip name and frame index (a repeated frame, as a distributed sampler pads with,
    replaces itself), and :meth:`merge` pools the states of several processes.
    """

    def __init__(self) -> None:
        self._frames: dict[str, dict[int, tuple[float, float]]] = defaultdict(dict)

    def update(self, pred: Tensor, target: Tensor, clips: list[str], frames: list[int]) -> None:
        """Adds a batch: ``pred`` and ``target`` ``[B,3,H,W]`` in [0,1], clip name and frame index per image."""
        pred, target = pred.detach().double(), target.detach().double()
        p = psnr(pred, target).clamp(max=PSNR_CAP).tolist()
        s = ssim(pred, target).tolist()
        for i, (clip, frame) in enumerate(zip(clips, frames, strict=True)):
            self._frames[clip][int(frame)] = (p[i], s[i])

    def state(self) -> dict[str, dict[int, tuple[float, float]]]:
        return {clip: dict(frames) for clip, frames in self._frames.items()}

    def merge(self, states: list[dict[str, dict[int, tuple[float, float]]]]) -> None:
        for state in states:
            for clip, frames in state.items():
                self._frames[clip].update(frames)

    @property
    def frames(self) -> int:
        return sum(len(f) for f in self._frames.values())

    def clips(self) -> list[ClipScores]:
        """Per-clip means, sorted by clip name."""
        out = []
        for clip in sorted(self._frames):
            values = list(self._frames[clip].values())
            n = len(values)
            out.append(ClipScores(clip, n, sum(v[0] for v in values) / n, sum(v[1] for v in values) / n))
        return out

    def compute(self) -> dict[str, float]:
        """``psnr`` and ``ssim``: means over every frame of the split; ``sequences`` (clips) and ``frames``."""
        values = [v for frames in self._frames.values() for v in frames.values()]
        n = len(values)
        return {
            "psnr": sum(v[0] for v in values) / n if n else math.nan,
            "ssim": sum(v[1] for v in values) / n if n else math.nan,
            "sequences": len(self._frames),
            "frames": n,
        }
