"""Vertex metrics with the published definitions (DESIGN.md §6), each named by its variant.

With prediction ``P`` and ground truth ``G`` of shape ``[T, V, 3]`` (metres) and template ``X`` ``[V, 3]``:

- ``lve`` (CodeTalker ``cal_metric.py``): per frame, the max over lip vertices of the squared L2 error; mean over
  all frames pooled across the test set. Unit m^2 (papers print it x1e-5).
- ``lve_mm`` (ARTalk): square root of the pooled mean of that per-frame max, in millimetres.
- ``fdd`` (signed): per sequence ``S = mean_v std_t(||x_tv - X_v||^2)`` over upper-face vertices (ddof 0);
  ``FDD_seq = S_G - S_P``; mean over sequences. Unit m^2 (papers print it x1e-7). ``abs_fdd``: mean of |FDD_seq|.
- ``mve``: mean over sequences of the mean over frames and vertices of the (unsquared) L2 error, in metres.

When prediction and ground truth differ in length, both are cut to the shorter one, as CodeTalker does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor


def lip_max_sq_error(pred: Tensor, gt: Tensor, lip_ids: Tensor) -> Tensor:
    """Per-frame max over lip vertices of the squared L2 error: ``[T]``."""
    diff = (pred[:, lip_ids] - gt[:, lip_ids]).pow(2).sum(dim=-1)
    return diff.max(dim=1).values


def rooted_mm(lve: float) -> float:
    """LVE-mm of a pooled LVE in m^2: its square root in millimetres."""
    return math.sqrt(lve) * 1000.0


def lve_mm(pred: Tensor, gt: Tensor, lip_ids: Tensor | None = None) -> float:
    """LVE-mm of one sequence ``[T, V, 3]`` (all vertices when ``lip_ids`` is None)."""
    ids = torch.arange(pred.shape[1]) if lip_ids is None else torch.as_tensor(lip_ids)
    return rooted_mm(float(lip_max_sq_error(pred.double(), gt.double(), ids).mean()))


def upper_face_dynamics(motion: Tensor, template: Tensor, upper_ids: Tensor) -> Tensor:
    """``S``: mean over upper-face vertices of the std over time (ddof 0) of the squared displacement."""
    disp = (motion[:, upper_ids] - template[upper_ids]).pow(2).sum(dim=-1)  # [T, Vu]
    return disp.std(dim=0, unbiased=False).mean()


def mean_vertex_error(pred: Tensor, gt: Tensor) -> Tensor:
    """Mean over frames and vertices of the L2 error."""
    return (pred - gt).norm(dim=-1).mean()


@dataclass
class SequenceMetrics:
    """Per-sequence values kept for the per-sequence CSV and for pooling."""

    name: str
    frames: int
    lve: float  # mean over this sequence's frames of the per-frame max lip squared error (m^2)
    fdd: float  # S_G - S_P (m^2)
    mve: float  # metres


@dataclass
class VertexMetrics:
    """Accumulates the metrics over a test set.

    Pooling runs over the sequences in name order, and a sequence counts once however often it is added (a
    distributed sampler pads the last shard by repeating sequences), so the metrics of a split do not depend on
    how it was batched or sharded: :meth:`merge` of the parts that several processes evaluated equals one
    process's result exactly.

    Args:
        lip_ids: Lip vertex ids.
        upper_ids: Upper-face vertex ids.
    """

    lip_ids: Tensor
    upper_ids: Tensor
    sequences: list[SequenceMetrics] = field(default_factory=list)
    _lip_sums: dict[str, float] = field(default_factory=dict)  # per sequence: sum over frames of the lip max

    def update(self, name: str, pred: Tensor, gt: Tensor, template: Tensor) -> SequenceMetrics:
        """Adds one sequence; ``pred``/``gt`` ``[T, V, 3]``, ``template`` ``[V, 3]``. A name already added is kept
        as it was (see the class docstring)."""
        if name in self._lip_sums:
            return next(s for s in self.sequences if s.name == name)
        t = min(pred.shape[0], gt.shape[0])
        pred, gt = pred[:t].double(), gt[:t].double()
        template = template.double()
        lip = lip_max_sq_error(pred, gt, self.lip_ids)
        fdd = upper_face_dynamics(gt, template, self.upper_ids) - upper_face_dynamics(
            pred, template, self.upper_ids
        )
        seq = SequenceMetrics(name, t, float(lip.mean()), float(fdd), float(mean_vertex_error(pred, gt)))
        self._lip_sums[name] = float(lip.sum())
        self.sequences.append(seq)
        return seq

    def state(self) -> tuple[list[SequenceMetrics], dict[str, float]]:
        """What :meth:`merge` needs from another process (picklable)."""
        return self.sequences, self._lip_sums

    def merge(self, states: list[tuple[list[SequenceMetrics], dict[str, float]]]) -> None:
        """Adds the sequences of other processes' :meth:`state`; names already present are kept as they are."""
        for sequences, lip_sums in states:
            for seq in sequences:
                if seq.name not in self._lip_sums:
                    self._lip_sums[seq.name] = lip_sums[seq.name]
                    self.sequences.append(seq)

    def compute(self) -> dict[str, float]:
        """Pooled metrics in SI units (see module docstring), summed over the sequences in name order."""
        if not self.sequences:
            raise ValueError("no sequences were evaluated.")
        ordered = sorted(self.sequences, key=lambda s: s.name)
        frames = sum(s.frames for s in ordered)
        lve = sum(self._lip_sums[s.name] for s in ordered) / frames
        n = len(ordered)
        return {
            "lve": lve,
            "lve_mm": rooted_mm(lve),
            "fdd": sum(s.fdd for s in ordered) / n,
            "abs_fdd": sum(abs(s.fdd) for s in ordered) / n,
            "mve": sum(s.mve for s in ordered) / n,
            "sequences": n,
            "frames": frames,
        }


# How the report prints each metric: (label, scale, format).
DISPLAY = {
    "lve": ("LVE (x1e-5 m^2)", 1e5, "{:.4f}"),
    "lve_mm": ("LVE-mm", 1.0, "{:.3f}"),
    "fdd": ("FDD (x1e-7 m^2)", 1e7, "{:+.4f}"),
    "abs_fdd": ("ABS-FDD (x1e-7 m^2)", 1e7, "{:.4f}"),
    "mve": ("MVE (mm)", 1e3, "{:.3f}"),
    # image metrics of the portrait generator (talk.image_metrics, talk.image_metric_hooks)
    "psnr": ("PSNR (dB)", 1.0, "{:.2f}"),
    "ssim": ("SSIM", 1.0, "{:.4f}"),
    "lpips": ("LPIPS", 1.0, "{:.4f}"),
    "fid": ("FID", 1.0, "{:.2f}"),
    "csim": ("CSIM", 1.0, "{:.4f}"),
    "lse_d": ("LSE-D", 1.0, "{:.3f}"),
    "lse_c": ("LSE-C", 1.0, "{:.3f}"),
    "mouth_sync": ("mouth sync (r)", 1.0, "{:+.3f}"),  # talk.mouth_sync: weight-free, frames vs driving mesh
}
