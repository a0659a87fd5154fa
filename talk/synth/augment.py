"""Audio degradations of training speech: room reverb, noise, band limits, level (seeded; nothing moves in time).

``talk data speech`` degrades a random subset of its sequences so that a model trained on clean synthesised speech
meets the channels real recordings come through; the motion and the phone timings are untouched by all of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import signal


@dataclass(frozen=True)
class Augmentation:
    """Degradations of one waveform, each None when not applied; the phone timings are untouched by all.

    Args:
        rt60: Room reverb: decay time (s) of an exponentially decaying noise impulse response.
        drr_db: Direct-to-reverberant energy ratio of that response.
        snr_db: Additive noise, relative to the active speech power.
        noise_color: "white", "pink" or "brown" (power spectrum 1, 1/f, 1/f^2).
        band: Zero-phase pass band (low, high) in Hz; low 0 is a low-pass.
        gain_db: Level change (a limiter then keeps the peak under 0.99).
    """

    rt60: float | None = None
    drr_db: float | None = None
    snr_db: float | None = None
    noise_color: str | None = None
    band: tuple[float, float] | None = None
    gain_db: float | None = None

    def to_json(self) -> dict:
        """Plain-JSON view (rounded) for speech_meta.json; applied degradations only."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        return {k: [round(x, 1) for x in v] if k == "band" else v if isinstance(v, str) else round(v, 4)
                for k, v in out.items()}  # fmt: skip


def draw_augmentation(rng: np.random.Generator, sample_rate: int) -> Augmentation:
    """A random subset of the degradations with random strengths (reverb 35 %, noise 50 %, band 25 %, level
    50 % of sequences; about one in eight stays clean)."""
    rt60 = drr = snr = color = band = gain = None
    if rng.random() < 0.35:
        rt60, drr = float(rng.uniform(0.1, 0.5)), float(rng.uniform(-3.0, 10.0))
    if rng.random() < 0.5:
        snr, color = float(rng.uniform(15.0, 40.0)), ("white", "pink", "brown")[int(rng.integers(3))]
    if rng.random() < 0.25:
        telephone = rng.random() < 0.5
        band = (
            (300.0, 3400.0)
            if telephone
            else (0.0, float(rng.uniform(2500.0, min(7000.0, 0.4 * sample_rate))))
        )
    if rng.random() < 0.5:
        gain = float(rng.uniform(-20.0, 6.0))
    return Augmentation(rt60, drr, snr, color, band, gain)


def _active_power(x: np.ndarray, sample_rate: int) -> float:
    """Mean power of the 20 ms frames within 30 dB of the loudest one (the speech, not the pauses)."""
    w = max(1, sample_rate // 50)
    p = (x[: len(x) // w * w].reshape(-1, w) ** 2).mean(axis=1)
    return float(p[p >= 1e-3 * p.max()].mean()) if p.size and p.max() > 0 else 0.0


def apply_augmentation(
    audio: np.ndarray, sample_rate: int, aug: Augmentation, rng: np.random.Generator
) -> np.ndarray:
    """Applies ``aug`` to ``[N]`` audio: reverb, noise, band limit, level, in that order (room, then channel).

    The reverb's direct path is at lag 0 and the filters are zero-phase, so nothing moves in time.

    Returns:
        ``[N]`` float32, peak at most 0.99.
    """
    x = np.asarray(audio, dtype=np.float64)
    n = len(x)
    if aug.rt60 is not None and aug.drr_db is not None:
        t = np.arange(1, int(aug.rt60 * sample_rate)) / sample_rate
        tail = rng.standard_normal(len(t)) * np.exp(-np.log(1000.0) * t / aug.rt60)  # -60 dB at rt60
        ir = np.concatenate([[1.0], tail / np.sqrt(np.sum(tail**2)) * 10 ** (-aug.drr_db / 20)])
        power = np.mean(x**2)
        x = signal.fftconvolve(x, ir)[:n]
        x *= np.sqrt(power / max(np.mean(x**2), 1e-20))
    if aug.snr_db is not None:
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1.0 / sample_rate)
        alpha = {"white": 0.0, "pink": 1.0, "brown": 2.0}[aug.noise_color or "white"]
        spectrum[1:] /= np.maximum(f[1:], 20.0) ** (alpha / 2)  # (floored at 20 Hz: no DC drift)
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, n)
        noise *= np.sqrt(
            _active_power(x, sample_rate) / max(np.mean(noise**2), 1e-20) / 10 ** (aug.snr_db / 10)
        )
        x = x + noise
    if aug.band is not None:
        low, high = aug.band
        sos = (signal.butter(4, [low, high], "bandpass", fs=sample_rate, output="sos") if low > 0
               else signal.butter(6, high, "lowpass", fs=sample_rate, output="sos"))  # fmt: skip
        x = signal.sosfiltfilt(sos, x)
    if aug.gain_db is not None:
        x = x * 10 ** (aug.gain_db / 20)
    peak = np.abs(x).max(initial=0.0)
    return (x * (0.99 / peak if peak > 0.99 else 1.0)).astype(np.float32)
