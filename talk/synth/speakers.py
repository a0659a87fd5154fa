"""Synthetic speaker identities: head shape, voice and speaking style, drawn deterministically from a seed."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Stream tags keep the random streams of different purposes independent, so that e.g. adding a field to the
# speaker draw does not change every sentence of the dataset.
SPEAKER_STREAM = 1
SENTENCE_STREAM = 2


@dataclass(frozen=True)
class SpeakerProfile:
    """Everything that makes one synthetic speaker differ from another.

    Args:
        name: Subject name, e.g. "SYN_01_F" (the VOCASET-style loader takes the file name minus its last
            "_"-separated part as the subject).
        index: 0-based speaker index within the dataset.
        sex: "F" or "M"; sets the f0 and vocal-tract ranges.
        shape: FLAME shape coefficients (N(0,1)*0.8 over the first columns).
        f0: Mean fundamental frequency in Hz.
        f0_range: Intonation range as a fraction of f0 (pitch accents and declination scale with it).
        vocal_tract_scale: Vocal-tract length relative to a reference adult male; formants scale with its
            inverse.
        rate: Speaking rate (> 1 is faster).
        jaw_gain: Multiplies the jaw opening of every gesture.
        round_gain: Multiplies lip rounding.
        smile_bias: Constant smile added to the face (a speaker's resting expression).
        blink_rate: Mean blinks per second.
        breathiness: Aspiration noise mixed into the voice.
        jitter: Period-to-period f0 perturbation (fraction).
        shimmer: Period-to-period amplitude perturbation (fraction).
    """

    name: str
    index: int
    sex: str
    shape: tuple[float, ...]
    f0: float
    f0_range: float
    vocal_tract_scale: float
    rate: float
    jaw_gain: float
    round_gain: float
    smile_bias: float
    blink_rate: float
    breathiness: float
    jitter: float
    shimmer: float

    def to_json(self) -> dict:
        """Plain-JSON view for synth_meta.json."""
        out = asdict(self)
        out["shape"] = [round(float(v), 6) for v in self.shape]
        return out


def speaker_name(index: int, sex: str) -> str:
    """Subject name of speaker ``index`` (0-based): "SYN_01_F", "SYN_02_M", ..."""
    return f"SYN_{index + 1:02d}_{sex}"


def make_speaker(seed: int, index: int, n_shape: int = 20) -> SpeakerProfile:
    """Draws speaker ``index`` of the dataset with the given seed (deterministic, independent per index).

    Sexes alternate (F, M, F, ...) so that any number of speakers is balanced.

    Args:
        seed: Dataset seed.
        index: 0-based speaker index.
        n_shape: Number of leading FLAME shape coefficients that vary; the rest are 0.
    """
    rng = np.random.default_rng([seed, index, SPEAKER_STREAM])
    sex = "F" if index % 2 == 0 else "M"
    female = sex == "F"
    shape = rng.standard_normal(n_shape) * 0.8
    return SpeakerProfile(
        name=speaker_name(index, sex),
        index=index,
        sex=sex,
        shape=tuple(float(v) for v in shape),
        f0=float(rng.uniform(180.0, 230.0) if female else rng.uniform(100.0, 130.0)),
        f0_range=float(rng.uniform(0.12, 0.25)),
        vocal_tract_scale=float(rng.uniform(0.82, 0.9) if female else rng.uniform(0.95, 1.06)),
        rate=float(rng.uniform(0.85, 1.2)),
        jaw_gain=float(rng.uniform(0.8, 1.25)),
        round_gain=float(rng.uniform(0.75, 1.25)),
        smile_bias=float(rng.uniform(-0.05, 0.2)),
        blink_rate=float(rng.uniform(0.15, 0.45)),
        breathiness=float(rng.uniform(0.01, 0.05) * (1.5 if female else 1.0)),
        jitter=float(rng.uniform(0.005, 0.015)),
        shimmer=float(rng.uniform(0.03, 0.08)),
    )
