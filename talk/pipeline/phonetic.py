"""The phonetic generator: phone posteriors -> a decoded phone time line -> articulated face motion.

Models that regress motion from speech features learn an average mouth: where they are unsure whether the lips
close, they half close them, and on voices they never heard they are unsure at every /p/, /b/ and /m/ (measured
in the README's "Real voices" section). :class:`PhoneticGenerator` makes the decision explicit, as tools that
work on any voice do (Rhubarb Lip Sync, OVRLipSync, JALI):

1. the acoustic model's phone posteriors (:class:`audio.PhonePosteriors`, trained on real speech) are refined by
   a small learned convolution over 100 Hz frames (:class:`PhoneClassifier`; it starts as the identity on the
   posteriors and learns corrections from labelled speech with a cross-entropy loss);
2. a Viterbi search over visemes (:func:`talk.pipeline.phone_decode.decode_phones`) turns them into phone segments;
3. the articulatory model that made the training data (``talk.synth.articulation``: dominance-model
   coarticulation, calibrated lip contact) turns the segments into expression coefficients and jaw rotation of
   the face model, so a decoded bilabial closes the lips exactly and a pause keeps the mouth still.

The output is face-model motion ``[B, T, n_expression + 3]`` for a face model with the procedural head's named
expression components (``motion.face.procedural.face.EXPRESSION_NAMES``: every ``talk data synth`` / ``talk data
speech`` set). Offline only: the decode needs the whole utterance (``--stream`` says so in one line).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from audio.features import AudioFeatures
from motion.face.procedural.face import EXPRESSION_NAMES
from motion.lm import Sampling
from talk.pipeline.phone_decode import decode_phones
from talk.synth.face import CONTACT_JAW  # the jaw angles of each speaker's calibrated lip contact

CHUNK_SECONDS, REACH_SECONDS = 10.0, 2.0  # articulation windows, and how far from a window phones are read


class PhoneClassifier(nn.Module):
    """Refines 100 Hz acoustic features ``[B, T, P + 1]`` (P phone log-posteriors / 10, then c0) into phone logits
    ``[B, T, P]``: the posteriors plus a learned residual (Conv1d layers, ``kernel_size`` frames each, ReLU,
    dropout; the last layer starts at zero, so an untrained classifier decodes the acoustic model's posteriors).

    Args:
        num_phones: P.
        hidden_dim: Channels of the hidden layers.
        num_layers: Hidden Conv1d layers (>= 1).
        kernel_size: Frames per convolution (odd).
        dropout: Dropout after each hidden layer (training only).
    """

    def __init__(
        self, num_phones: int = 42, hidden_dim: int = 128, num_layers: int = 3, kernel_size: int = 5,
        dropout: float = 0.1,
    ) -> None:  # fmt: skip
        super().__init__()
        if num_layers < 1 or kernel_size < 1 or kernel_size % 2 != 1:
            raise ValueError(
                f"PhoneClassifier needs num_layers >= 1 and an odd kernel_size, got {num_layers} and {kernel_size}."
            )
        self.num_phones = int(num_phones)
        pad = kernel_size // 2
        self.inp = nn.Conv1d(num_phones + 1, hidden_dim, kernel_size, padding=pad)
        self.convs = nn.ModuleList(
            nn.Conv1d(hidden_dim, hidden_dim, kernel_size, padding=pad) for _ in range(num_layers - 1)
        )
        self.out = nn.Conv1d(hidden_dim, num_phones, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: Tensor) -> Tensor:
        x = features.transpose(1, 2)
        h = self.dropout(F.relu(self.inp(x)))
        for conv in self.convs:
            h = h + self.dropout(F.relu(conv(h)))
        return (10.0 * x[:, : self.num_phones] + self.out(h)).transpose(1, 2)


@dataclass(frozen=True)
class _Profile:
    """What the articulatory model reads of a speaker (``talk.synth.speakers.SpeakerProfile``'s fields)."""

    jaw_gain: float = 1.0
    round_gain: float = 1.0
    blink_rate: float = 0.3
    smile_bias: float = 0.0


class PhoneticGenerator(nn.Module):
    """Phone posteriors -> phone segments -> articulated face-model motion (see the module docstring).

    Args:
        classifier: The learned refinement of the posteriors.
        phones: The acoustic model's phone names, in the order of its posteriors.
        n_expression: Expression coefficients of the face model (motion is ``n_expression + 3`` wide).
        num_styles: Training speakers; each has its own calibrated lip contact (:meth:`set_contact`).
        min_frames: Shortest decoded viseme, in 10 ms frames.
        switch_penalty: Cost of each change of viseme in the decode, nats.
        jaw_gain: Scales every jaw opening of the articulation.
        round_gain: Scales lip rounding.
        blinks: Add seeded blinks and brow motion (the articulatory model's idle motion); False keeps the upper
            face still.
        idle_seed: Seed of that idle motion.
    """

    def __init__(
        self,
        classifier: PhoneClassifier,
        phones: tuple[str, ...] | list[str],
        n_expression: int,
        num_styles: int = 1,
        min_frames: int = 1,
        switch_penalty: float = 0.0,
        jaw_gain: float = 1.0,
        round_gain: float = 1.0,
        blinks: bool = True,
        idle_seed: int = 0,
    ) -> None:
        super().__init__()
        if len(phones) != classifier.num_phones:
            raise ValueError(f"{len(phones)} phone names for a classifier of {classifier.num_phones} phones.")
        if n_expression < len(EXPRESSION_NAMES):
            raise ValueError(
                f"the phonetic generator drives the {len(EXPRESSION_NAMES)} named expression components of the "
                f"procedural head ({', '.join(EXPRESSION_NAMES[:4])}, ...); this face model has only {n_expression}."
            )
        if min_frames < 1 or switch_penalty < 0:
            raise ValueError(f"min_frames must be >= 1 and switch_penalty >= 0, got {min_frames}, {switch_penalty}.")
        self.classifier = classifier
        self.phones = tuple(phones)
        self.n_expression = int(n_expression)
        self.min_frames = int(min_frames)
        self.switch_penalty = float(switch_penalty)
        self.profile = _Profile(jaw_gain=float(jaw_gain), round_gain=float(round_gain))
        self.blinks = bool(blinks)
        self.idle_seed = int(idle_seed)
        self.register_buffer("contact_press", torch.zeros(num_styles, len(CONTACT_JAW)))
        self.register_buffer("contact_ready", torch.tensor(False))

    @property
    def motion_dim(self) -> int:
        return self.n_expression + 3

    def logits(self, features: AudioFeatures) -> Tensor:
        """Phone logits ``[B, T, P]`` at the features' 100 Hz frames."""
        if abs(features.frame_rate - 100.0) > 1e-6 or features.x.shape[-1] != len(self.phones) + 1:
            raise ValueError(
                "the phonetic generator reads audio.PhonePosteriors features (100 Hz, "
                f"{len(self.phones) + 1} values per frame); got {features.frame_rate} Hz x {features.x.shape[-1]}."
            )
        return self.classifier(features.x)

    def set_contact(self, press: Tensor) -> None:
        """Stores the lip press that closes each training speaker's lips at the jaw angles ``CONTACT_JAW``
        ``[S, K]`` (``talk.training.phonetic.calibrate_contact``)."""
        self.contact_press.copy_(press.to(self.contact_press))
        self.contact_ready.fill_(True)

    def _contact(self, style: Tensor, b: int):  # -> talk.synth.articulation.LipContact | None
        from talk.synth.articulation import LipContact

        if not bool(self.contact_ready):
            return None
        press = self.contact_press
        row = press[style[b]] if not style.is_floating_point() else style[b].to(press) @ press
        return LipContact(np.asarray(CONTACT_JAW), row.double().cpu().numpy())

    def segments(self, features: AudioFeatures) -> list[list[tuple[str, float, float]]]:
        """The decoded phone time line of every sequence (labels ARPAbet or ``"sil"``, seconds)."""
        with torch.no_grad():
            log_probs = torch.log_softmax(self.logits(features).float(), dim=-1).cpu().numpy()
        valid = features.mask.sum(dim=1).tolist()
        return [
            decode_phones(log_probs[b, : int(n)], self.phones, features.frame_rate, self.min_frames,
                          self.switch_penalty)  # fmt: skip
            for b, n in enumerate(valid)
        ]

    def articulate(
        self, phones: list[tuple[str, float, float]], num_frames: int, fps: float, contact: object = None
    ) -> Tensor:
        """Face-model motion ``[num_frames, n_expression + 3]`` (float64) saying ``phones``: frame ``t`` is the
        articulation at time ``t / fps``."""
        from talk.synth.articulation import (
            ArticulatoryTrajectory,
            build_trajectory,
            draw_idle_motion,
            face_controls,
        )
        from talk.synth.phones import Phone, to_utterance

        duration = max(num_frames / fps, phones[-1][2] if phones else 0.0, 1.0 / 60)
        utterance = to_utterance([Phone(*p) for p in phones], duration)
        trajectory = build_trajectory(utterance, self.profile)
        if self.blinks:
            idle = draw_idle_motion(np.random.default_rng(self.idle_seed), self.profile, utterance.duration)
        else:
            idle = _NoIdle()
        times = np.arange(num_frames) / fps
        parts = []
        # in windows of CHUNK_SECONDS with the phones within REACH_SECONDS: the dominance of a phone decays as a
        # Gaussian of width <= 0.1 s, so farther phones weigh exactly nothing in float64, and time and memory grow
        # linearly with the length instead of as frames x phones
        step = max(1, int(CHUNK_SECONDS * fps))
        for start in range(0, num_frames, step):
            t = times[start : start + step]
            near = (trajectory.centers + trajectory.half_widths >= t[0] - REACH_SECONDS) & (
                trajectory.centers - trajectory.half_widths <= t[-1] + REACH_SECONDS
            )
            window = ArticulatoryTrajectory(
                trajectory.centers[near], trajectory.half_widths[near], trajectory.targets[near],
                trajectory.log_weights[near], trajectory.taus[near],
            )  # fmt: skip
            controls = face_controls(window, idle, t, EXPRESSION_NAMES, self.n_expression, contact)
            parts.append(np.concatenate([controls.expression, controls.jaw_pose], axis=1))
        return torch.from_numpy(np.concatenate(parts) if parts else np.zeros((0, self.motion_dim)))

    def generate(
        self, features: AudioFeatures, num_frames: Tensor, style: Tensor, sampling: Sampling, fps: float
    ) -> Tensor:
        """Motion ``[B, T, n_expression + 3]``, ``T = num_frames.max()`` (zero past each sequence's frames).
        ``sampling`` is not used: the decode is deterministic."""
        t = int(num_frames.max())
        out = features.x.new_zeros(features.x.shape[0], t, self.motion_dim)
        for b, phones in enumerate(self.segments(features)):
            n = int(num_frames[b])
            out[b, :n] = self.articulate(phones, n, fps, self._contact(style, b)).to(out)
        return out

    def generate_pieces(
        self,
        features: AudioFeatures,
        num_frames: Tensor,
        style: Tensor,
        sampling: Sampling,
        fps: float,
        piece_frames: int,
    ) -> Iterator[Tensor]:
        """:meth:`generate` cut into pieces ``[B, m, D]`` of at most ``piece_frames`` frames (the decode needs the
        whole utterance; the motion of a few minutes of speech is a few MB)."""
        motion = self.generate(features, num_frames, style, sampling, fps)
        for start in range(0, motion.shape[1], max(1, piece_frames)):
            yield motion[:, start : start + piece_frames]


class _NoIdle:
    """Idle motion that adds nothing (``blinks=False``)."""

    def __call__(self, times: np.ndarray) -> dict[str, np.ndarray]:
        return {}
