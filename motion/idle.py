"""Idle head motion: a seeded, procedural head-pose model for faces whose motion model has no head pose.

Speech-driven face models in ``talk`` are trained on face-centred motion (VOCASET, BIWI, FLAME expression + jaw,
the synthetic set): the head never turns, and a perfectly still head reads as lifeless. :func:`head_pose` draws a
head-pose track that looks alive and follows the speech loosely, as people's heads do:

- **drift**: per axis (pitch, yaw, roll) a sum of four slow sinusoids of seeded frequencies (0.04 Hz to
  ``max_hz``) and phases, scaled to the axis' amplitude;
- **speech coupling**: while the speaker talks (``activity`` near 1) the drift grows by ``speech_gain`` (heads move
  more during speech than in pauses);
- **nods**: at each speech onset (where the activity rises through one half) the head dips by ``nod_deg`` in
  pitch with a smooth 0.3 s bump, as speakers mark phrase starts.

The track is causal in the audio (frame ``t`` depends on ``activity[:t + 1]`` and the seed only), so a stream and
an offline run draw the same motion. :func:`apply_head_pose` rotates meshes about a pivot in the neck
(:func:`neck_pivot`) and lets the head sway with the rotation. Blinks come from the motion model where it has them
(the synthetic flagships sample them); this module moves the head only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["IdleHead", "apply_head_pose", "head_pose", "neck_pivot", "rotation_matrices", "speech_activity"]


@dataclass(frozen=True)
class IdleHead:
    """Settings of :func:`head_pose` (degrees, Hz).

    Attributes:
        pitch_deg: Drift amplitude of the pitch (nodding axis, about x).
        yaw_deg: Drift amplitude of the yaw (turning, about y).
        roll_deg: Drift amplitude of the roll (tilting, about z).
        speech_gain: Relative growth of the drift while speaking (0: speech does not change it).
        nod_deg: Pitch dip at each speech onset (0: no nods).
        max_hz: Highest drift frequency.
    """

    pitch_deg: float = 2.5
    yaw_deg: float = 4.0
    roll_deg: float = 1.5
    speech_gain: float = 0.6
    nod_deg: float = 1.5
    max_hz: float = 0.35

    def __post_init__(self) -> None:
        values = (self.pitch_deg, self.yaw_deg, self.roll_deg, self.speech_gain, self.nod_deg)
        if min(values) < 0 or not self.max_hz > 0.04:
            raise ValueError(
                f"IdleHead: amplitudes and speech_gain must be >= 0 and max_hz > 0.04 Hz, got {self}."
            )


def speech_activity(wav: np.ndarray | Tensor, sample_rate: int, n_frames: int, fps: float) -> np.ndarray:
    """How much each motion frame is speech: ``[n_frames]`` in [0, 1], causal.

    The level of each frame's audio (RMS over the frame's hop, in dB) is mapped linearly from 35 dB below the
    recording's loudest frame (0) to 10 dB below it (1), then smoothed by a one-pole filter (time constant 0.15 s)
    that looks only backwards.
    """
    x = np.asarray(wav.detach().cpu() if isinstance(wav, Tensor) else wav, np.float64).reshape(-1)
    hop = sample_rate / fps
    level = np.empty(int(n_frames))
    for i in range(int(n_frames)):
        seg = x[int(round(i * hop)) : int(round((i + 1) * hop))]
        level[i] = 10.0 * math.log10(float(np.mean(seg * seg)) + 1e-10) if seg.size else -100.0
    peak = float(level.max()) if level.size else 0.0
    raw = np.clip((level - (peak - 35.0)) / 25.0, 0.0, 1.0)
    alpha = 1.0 - math.exp(-1.0 / (0.15 * fps))
    out = np.empty_like(raw)
    state = 0.0
    for i, r in enumerate(raw):
        state += alpha * (r - state)
        out[i] = state
    return out


def head_pose(
    n_frames: int,
    fps: float,
    seed: int = 0,
    activity: np.ndarray | None = None,
    settings: IdleHead | None = None,
) -> Tensor:
    """A head-pose track ``[n_frames, 3]``: pitch, yaw, roll in radians (module docstring).

    Args:
        n_frames: Frames T.
        fps: Frame rate.
        seed: Seed of the drift's frequencies and phases; the same seed gives the same track.
        activity: ``[T]`` speech activity in [0, 1] (:func:`speech_activity`); None: no speech coupling, no nods.
        settings: Amplitudes and frequencies (default :class:`IdleHead`).
    """
    settings = settings or IdleHead()
    if n_frames < 0 or not fps > 0:
        raise ValueError(f"head_pose: n_frames must be >= 0 and fps > 0, got {n_frames} and {fps}.")
    rng = np.random.default_rng(int(seed))
    t = np.arange(int(n_frames)) / float(fps)
    act = np.zeros(len(t)) if activity is None else np.asarray(activity, np.float64).reshape(-1)[: len(t)]
    if len(act) < len(t):
        raise ValueError(f"head_pose: activity has {len(act)} frames for {len(t)}.")
    angles = []
    for amplitude in (settings.pitch_deg, settings.yaw_deg, settings.roll_deg):
        hz = rng.uniform(0.04, settings.max_hz, 4)
        phase = rng.uniform(0.0, 2.0 * math.pi, 4)
        weight = rng.uniform(0.5, 1.0, 4)
        wave = (weight * np.sin(2.0 * math.pi * hz * t[:, None] + phase)).sum(1) / weight.sum()
        angles.append(amplitude * wave * (1.0 + settings.speech_gain * act))
    if settings.nod_deg > 0 and len(t) > 1:
        onsets = np.flatnonzero((act[1:] >= 0.5) & (act[:-1] < 0.5)) + 1
        for k in onsets:  # a smooth dip starting at the onset (causal)
            u = (t - t[k]) / 0.3
            bump = np.where((u >= 0) & (u <= 1), np.sin(math.pi * np.clip(u, 0, 1)) ** 2, 0.0)
            angles[0] = angles[0] + settings.nod_deg * bump  # +pitch tips the face down (rotation about +x)
    return torch.from_numpy(np.radians(np.stack(angles, 1))).float()


def rotation_matrices(pose: Tensor) -> Tensor:
    """Rotation matrices ``[T, 3, 3]`` of pitch/yaw/roll ``[T, 3]`` (radians): ``R = Rz(roll) Ry(yaw) Rx(pitch)``,
    for column vectors in a y-up, z-towards-the-viewer head frame (+yaw turns the face to its left, +x)."""
    p, y, r = pose.unbind(-1)
    one, zero = torch.ones_like(p), torch.zeros_like(p)
    rx = torch.stack([one, zero, zero, zero, p.cos(), -p.sin(), zero, p.sin(), p.cos()], -1).view(-1, 3, 3)
    ry = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], -1).view(-1, 3, 3)
    rz = torch.stack([r.cos(), -r.sin(), zero, r.sin(), r.cos(), zero, zero, zero, one], -1).view(-1, 3, 3)
    return rz @ ry @ rx


def neck_pivot(template: Tensor) -> Tensor:
    """A pivot ``[3]`` in the neck for a head mesh ``[V, 3]`` (y up, face towards +z): centred in x, a tenth of the
    head's height above its lowest point, a third of its depth in from the back."""
    lo, hi = template.min(0).values, template.max(0).values
    size = hi - lo
    return torch.stack([(lo[0] + hi[0]) / 2, lo[1] + 0.1 * size[1], lo[2] + size[2] / 3])


def apply_head_pose(vertices: Tensor, pose: Tensor, pivot: Tensor) -> Tensor:
    """Meshes ``[T, V, 3]`` rotated by ``pose`` ``[T, 3]`` (:func:`rotation_matrices`) about ``pivot`` ``[3]``."""
    rot = rotation_matrices(pose.to(vertices.dtype)).to(vertices.device)
    pivot = pivot.to(vertices)
    return (vertices - pivot) @ rot.transpose(1, 2) + pivot
