"""Phoneme time line -> continuous articulatory trajectory (coarticulation), plus non-speech face motion.

The trajectory is a function of continuous time: the voice synthesizer samples it at its control rate and the
mesh writer samples it at 60 fps, so the sound and the motion are two views of one movement.

Coarticulation follows the dominance model of Cohen & Massaro: every phoneme p pulls channel c towards its
target with a weight that is flat over the phoneme's core and decays as a Gaussian outside it,
``D_pc(t) = w_pc * exp(-(max(0, |t - m_p| - h_p) / tau_c)^2)``, and the channel value is the
dominance-weighted mean of the targets. The Gaussian tail makes the blend smooth; a phoneme with overwhelming
dominance (the lip channels of p/b/m) reaches its target over its whole core, so bilabial closures really
close.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from talk.synth.phonemes import CHANNELS, VISIBLE_CHANNELS, Utterance
from talk.synth.speakers import SpeakerProfile

# Coarticulation time constants (seconds) per channel: lip rounding spreads furthest (anticipatory rounding
# starts a syllable ahead), lip closure is the most local.
TAU: Mapping[str, float] = {
    "jaw": 0.04,
    "lip_round": 0.09,
    "lip_closure": 0.015,
    "stretch": 0.06,
    "upper_lip_raise": 0.025,
    "lower_lip_depress": 0.025,
    "tongue_front": 0.04,
    "rhotic": 0.045,
}

# Fraction of the segment (or of the closure, for plosives) over which the target is held.
_CORE = {
    "vowel": 0.6,
    "plosive": 0.5,
    "nasal": 0.5,
    "fricative": 0.7,
    "approximant": 0.4,
    "aspirate": 0.2,
    "pause": 0.85,
}


@dataclass(frozen=True)
class ArticulatoryTrajectory:
    """Continuous articulatory trajectory of one utterance.

    Args:
        centers: ``[P]`` core centre of each phoneme, seconds.
        half_widths: ``[P]`` half length of each core, seconds.
        targets: ``[P, C]`` per-phoneme targets (speaker gains applied), C = ``len(CHANNELS)``.
        log_weights: ``[P, C]`` log dominance weights.
        taus: ``[P, C]`` coarticulation time constants, seconds.
    """

    centers: np.ndarray
    half_widths: np.ndarray
    targets: np.ndarray
    log_weights: np.ndarray
    taus: np.ndarray

    def __call__(self, times: np.ndarray) -> np.ndarray:
        """Samples the trajectory.

        Args:
            times: ``[N]`` times in seconds.

        Returns:
            ``[N, C]`` channel values, columns in ``CHANNELS`` order.
        """
        times = np.asarray(times, dtype=np.float64)
        dist = np.maximum(np.abs(times[:, None] - self.centers[None, :]) - self.half_widths[None, :], 0.0)
        # [N, P, C] log dominance; softmax over phonemes (max-subtracted, so never 0/0).
        logd = self.log_weights[None, :, :] - (dist[:, :, None] / self.taus[None, :, :]) ** 2
        logd -= logd.max(axis=1, keepdims=True)
        dom = np.exp(logd)
        return (dom * self.targets[None]).sum(axis=1) / dom.sum(axis=1)

    def channel(self, values: np.ndarray, name: str) -> np.ndarray:
        """Column ``name`` of an ``[N, C]`` array returned by ``__call__``."""
        return values[:, CHANNELS.index(name)]


def build_trajectory(utterance: Utterance, speaker: SpeakerProfile) -> ArticulatoryTrajectory:
    """Turns the phoneme segments of ``utterance`` into a trajectory, with the speaker's articulation style.

    Args:
        utterance: The sentence.
        speaker: Supplies jaw and lip-rounding gains.
    """
    centers, halves, targets, weights, taus = [], [], [], [], []
    gains = np.ones(len(CHANNELS))
    gains[CHANNELS.index("jaw")] = speaker.jaw_gain
    gains[CHANNELS.index("lip_round")] = speaker.round_gain
    for seg in utterance.segments:
        ph = seg.phoneme
        # Plosives hold their articulation over the closure, which ends at the release burst.
        start, end = seg.start, (seg.release if ph.kind == "plosive" else seg.end)
        centers.append(0.5 * (start + end))
        halves.append(0.5 * _CORE[ph.kind] * (end - start))
        targets.append([ph.target(c) for c in CHANNELS])
        weights.append([ph.weight(c) for c in CHANNELS])
        taus.append([ph.tau.get(c, TAU[c]) for c in CHANNELS])
    return ArticulatoryTrajectory(
        centers=np.asarray(centers),
        half_widths=np.asarray(halves),
        targets=np.asarray(targets) * gains[None, :],
        log_weights=np.log(np.asarray(weights)),
        taus=np.asarray(taus),
    )


def lip_aperture(values: np.ndarray) -> np.ndarray:
    """Effective lip opening (jaw radians equivalent, >= 0) from ``[N, C]`` trajectory samples.

    Mirrors the mesh: the jaw separates the lips, lip_closure removes that fraction of the jaw gap (see
    ``face_controls``), raising the upper / depressing the lower lip opens them a little even with the jaw
    closed.
    """
    col = {c: values[:, i] for i, c in enumerate(CHANNELS)}
    closure = np.clip(col["lip_closure"], 0.0, 1.0)
    gap = (
        np.clip(col["jaw"], 0.0, None) * (1.0 - closure)
        + 0.03 * np.clip(col["upper_lip_raise"], 0.0, None)
        + 0.03 * np.clip(col["lower_lip_depress"], 0.0, None)
    )
    return np.clip(gap, 0.0, None)


@dataclass(frozen=True)
class IdleMotion:
    """Face motion that is not driven by speech (blinks, brows, smile drift), as smooth functions of time.

    Args:
        blink_times: ``[Kb]`` blink onsets, seconds.
        blink_amp: ``[Kb, 2]`` left/right closure amplitude of each blink.
        brow_events: ``[Ke, 4]`` rows of (centre s, half width s, raise amplitude, furrow amplitude).
        smile_bias: Constant smile of the speaker.
        smile_drift: ``[3, 3]`` rows of (amplitude, frequency Hz, phase) of a slow smile wander.
    """

    blink_times: np.ndarray
    blink_amp: np.ndarray
    brow_events: np.ndarray
    smile_bias: float
    smile_drift: np.ndarray

    def __call__(self, times: np.ndarray) -> dict[str, np.ndarray]:
        """Samples the idle motion at ``times`` ``[N]``; returns expression name -> ``[N]`` values."""
        t = np.asarray(times, dtype=np.float64)[:, None]
        # Blink: lid closes in 60 ms, reopens in 90 ms (150 ms total), raised-cosine edges.
        u = t - self.blink_times[None, :]
        close = 0.5 - 0.5 * np.cos(np.pi * np.clip(u / 0.06, 0.0, 1.0))
        opening = 0.5 + 0.5 * np.cos(np.pi * np.clip((u - 0.06) / 0.09, 0.0, 1.0))
        lid = np.where(u < 0.06, close, opening) * (u >= 0) * (u <= 0.15)
        blink = lid[:, :, None] * self.blink_amp[None, :, :]
        out = {"blink_left": blink[..., 0].sum(axis=1), "blink_right": blink[..., 1].sum(axis=1)}
        c, hw, raise_amp, furrow_amp = (self.brow_events[:, i][None, :] for i in range(4))
        bump = np.exp(-0.5 * ((t - c) / hw) ** 2)
        out["brow_raise"] = (bump * raise_amp).sum(axis=1)
        out["brow_furrow"] = (bump * furrow_amp).sum(axis=1)
        a, f, ph = (self.smile_drift[:, i][None, :] for i in range(3))
        out["smile"] = self.smile_bias + (a * np.sin(2 * np.pi * f * t + ph)).sum(axis=1)
        return {k: v.astype(np.float64) for k, v in out.items()}


def draw_idle_motion(rng: np.random.Generator, speaker: SpeakerProfile, duration: float) -> IdleMotion:
    """Draws blinks, brow events and smile drift for one sentence, independently of its content.

    Args:
        rng: Source of randomness.
        speaker: Supplies blink rate and smile bias.
        duration: Sentence length in seconds.
    """
    blinks: list[float] = []
    t = rng.exponential(1.0 / speaker.blink_rate) - 0.5
    while t < duration:
        if t > -0.1:
            blinks.append(t)
        t += 0.35 + rng.exponential(1.0 / speaker.blink_rate)  # refractory gap so blinks never overlap
    n_blink = len(blinks)
    amp = np.clip(
        rng.uniform(0.9, 1.05, size=(n_blink, 1)) + rng.normal(0, 0.03, size=(n_blink, 2)), 0.0, 1.0
    )
    n_brow = int(rng.poisson(0.6 * duration))
    brow = np.stack(
        [
            rng.uniform(0, duration, n_brow),
            rng.uniform(0.15, 0.4, n_brow),
            rng.uniform(0.1, 0.6, n_brow) * (rng.random(n_brow) < 0.7),
            rng.uniform(0.1, 0.4, n_brow) * (rng.random(n_brow) < 0.35),
        ],
        axis=1,
    )
    drift = np.stack(
        [rng.uniform(0.0, 0.05, 3), rng.uniform(0.05, 0.4, 3), rng.uniform(0, 2 * np.pi, 3)], axis=1
    )
    return IdleMotion(
        np.asarray(blinks, dtype=np.float64).reshape(-1),
        amp.reshape(-1, 2),
        brow.reshape(-1, 4),
        speaker.smile_bias,
        drift,
    )


@dataclass(frozen=True)
class LipContact:
    """The lip_press that brings the lips exactly into contact, as a function of the jaw opening.

    Face-model blendshapes are linear, so a fixed lip_press closes the lips at one jaw angle only (and makes
    them overlap below it). The generator calibrates this curve on the actual face model and speaker (see
    ``talk.synth.writer.calibrate_lip_contact``) and drives ``lip_press = lip_closure * press(jaw)``.

    Args:
        jaw: ``[K]`` increasing jaw angles, radians.
        press: ``[K]`` lip_press closing the lips at each angle (0 at jaw 0, where the lips touch at rest).
    """

    jaw: np.ndarray
    press: np.ndarray

    def __call__(self, jaw: np.ndarray) -> np.ndarray:
        """lip_press for contact at each jaw angle (linear interpolation, extrapolated linearly above the
        grid)."""
        jaw = np.clip(np.asarray(jaw, dtype=np.float64), 0.0, None)
        slope = (self.press[-1] - self.press[-2]) / (self.jaw[-1] - self.jaw[-2])
        above = self.press[-1] + slope * (jaw - self.jaw[-1])
        return np.where(jaw > self.jaw[-1], above, np.interp(jaw, self.jaw, self.press))


@dataclass(frozen=True)
class FaceControls:
    """Per-frame face-model parameters.

    Args:
        expression: ``[T, n_expression]`` expression coefficients (components indexed by name).
        jaw_pose: ``[T, 3]`` jaw axis-angle; only x (opening) is used.
    """

    expression: np.ndarray
    jaw_pose: np.ndarray


def face_controls(
    trajectory: ArticulatoryTrajectory,
    idle: IdleMotion,
    times: np.ndarray,
    expression_names: Sequence[str],
    n_expression: int,
    contact: LipContact | None = None,
) -> FaceControls:
    """Samples speech articulation and idle motion at ``times`` and lays them out as face-model parameters.

    Args:
        trajectory: Speech articulation.
        idle: Blinks, brows and smile.
        times: ``[T]`` frame times, seconds.
        expression_names: The face model's semantic expression components, in index order.
        n_expression: Number of expression coefficients of the model (>= len(expression_names)).
        contact: Calibrated lip contact; None uses ``lip_press = lip_closure``.
    """
    values = trajectory(times)
    expr = np.zeros((len(times), n_expression), dtype=np.float64)
    index = {name: i for i, name in enumerate(expression_names)}
    jaw = trajectory.channel(values, "jaw")
    closure = np.clip(trajectory.channel(values, "lip_closure"), 0.0, 1.0)
    # Hidden channels (tongue, rhotic) only shape the sound; the visible ones become expressions.
    sources = {c: trajectory.channel(values, c) for c in VISIBLE_CHANNELS if c not in ("jaw", "lip_closure")}
    sources["lip_press"] = closure * (contact(jaw) if contact is not None else 1.0)
    for name, val in idle(times).items():
        sources[name] = sources.get(name, 0.0) + val
    for name, val in sources.items():
        if name not in index:
            raise KeyError(f"The face model has no expression component named {name!r}.")
        expr[:, index[name]] = val
    jaw_pose = np.zeros((len(times), 3), dtype=np.float64)
    jaw_pose[:, 0] = jaw
    return FaceControls(expr, jaw_pose)
