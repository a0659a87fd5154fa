"""The Sphinx MFCC front end and 1s_c_d_dd features, as PocketSphinx 5.1 computes them for a whole utterance.

This mirrors PocketSphinx's floating-point build (``fe_interface.c``, ``fe_sigproc.c``, ``fe_noise.c``,
``feat.c``, ``cmn.c``) configured by the model's ``feat.params``: audio is 16-bit integer PCM, analysis is in
float64, cepstra are float32. Against ``Decoder(mfclogdir=...)`` on the 16 bundled real recordings the cepstra
agree within 3e-5 (float32 rounding of values up to ~80), frame counts exactly (see ``tests/audio/sphinx``).

Framing (exact, ``process_raw(..., full_utt=True)``): with ``W = 410`` samples (0.025625 s) and hop ``H = 160``
(100 frames/s), N > 0 samples give ``T = 1`` frame if ``N < W`` and ``T = 2 + (N - W) // H`` frames otherwise.
Frame ``i < T - 1`` covers samples ``[i * H, i * H + W)``; the last frame covers ``[(T - 1) * H, N)`` (250 to
409 samples; the whole input when ``N < W``), zero-padded to W after pre-emphasis. Frame i is therefore centred
near ``i * 10 ms + 12.8 ms``.

Per frame: pre-emphasis ``y[n] = x[n] - 0.97 x[n - 1]`` over the signal (``x[-1] = 0``), symmetric Hamming
window of W, 512-point FFT power spectrum, 25 triangular mel filters from 130 to 6800 Hz (edges rounded to FFT
bins, unit area, Sphinx's construction), the causal noise suppression of ``-remove_noise yes`` (a recursive
per-utterance noise and floor tracker with temporal masking and smoothed gains; its state starts at frame 0 as
in a freshly made decoder), ``log(energy + 1e-4)``, orthonormal DCT-II to 13 cepstra, sine lifter 22.

Features: batch CMN (the mean over the frames whose c0 >= 0, subtracted from every frame), then 1s_c_d_dd:
``[c_t, c_{t+2} - c_{t-2}, (c_{t+3} - c_{t-1}) - (c_{t+1} - c_{t-3})]`` (39 dims, no delta scaling), the
normalized first and last frames repeated 3 times beyond each end.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from torch import Tensor

from audio.io import EmptyAudioError, NonFiniteAudioError
from audio.sphinx.model_io import SphinxModelError

__all__ = ["SphinxFrontEnd", "add_deltas", "batch_cmn", "to_pcm16"]

_LOG_FLOOR = 1e-4  # added to every mel energy before the log (fe_sigproc.c LOG_FLOOR)
_DELTA_PAD = 3  # frames replicated beyond each end for the 1s_c_d_dd window
_BLOCK = 2048  # frames per FFT block


def to_pcm16(wav: Tensor | np.ndarray) -> np.ndarray:
    """The samples ``process_raw`` would see: float in [-1, 1] times 32768, rounded and clipped to int16.

    Args:
        wav: ``[N]`` mono waveform, float in [-1, 1] (as ``load_audio`` / soundfile return int16 files, so
            16-bit recordings come back bit-exact) or already int16.

    Returns:
        float64 ``[N]`` of whole numbers in [-32768, 32767].
    """
    x = wav.detach().cpu().numpy() if isinstance(wav, Tensor) else np.asarray(wav)
    if x.ndim != 1 or x.size == 0:
        raise EmptyAudioError(
            f"Sphinx features need a non-empty mono waveform [N], got shape {tuple(x.shape)}"
        )
    if x.dtype == np.int16:
        return x.astype(np.float64)
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise NonFiniteAudioError(
            "waveform contains NaN or infinite samples; clean it before computing features"
        )
    return np.clip(np.round(x * 32768.0), -32768.0, 32767.0)


def batch_cmn(cep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PocketSphinx's ``-cmn batch``: subtracts the mean over frames with ``c0 >= 0`` (``[T, C]`` -> same, mean).

    PocketSphinx divides by zero when no frame qualifies (digital silence); the mean over all frames is used then.
    """
    keep = cep[:, 0] >= 0
    mean = cep[keep].mean(0, dtype=np.float64) if keep.any() else cep.mean(0, dtype=np.float64)
    mean = mean.astype(np.float32)
    return cep - mean, mean


def add_deltas(cep: np.ndarray) -> np.ndarray:
    """1s_c_d_dd: ``[T, C]`` normalized cepstra -> ``[T, 3C]`` (cepstra, deltas, double deltas), see module doc."""
    pad = np.concatenate([np.repeat(cep[:1], _DELTA_PAD, 0), cep, np.repeat(cep[-1:], _DELTA_PAD, 0)])
    n = len(cep)

    def at(k: int) -> np.ndarray:  # frames t + k for t in [0, n)
        return pad[_DELTA_PAD + k : _DELTA_PAD + k + n]

    delta = at(2) - at(-2)
    ddelta = (at(3) - at(-1)) - (at(1) - at(-3))
    return np.concatenate([cep, delta, ddelta], axis=1)


def _mel_filterbank(sample_rate: float, n_fft: int, n_filters: int, lower: float, upper: float) -> np.ndarray:
    """Sphinx's mel filters ``[n_fft // 2 + 1, n_filters]`` (``fe_build_melfilters``, float32 like the C code).

    Edges are equally spaced in mel, rounded to FFT bins; each triangle is scaled to unit area; the Nyquist bin is
    never used. The float32 arithmetic is kept so that the bin rounding decisions match PocketSphinx's.
    """
    f32 = np.float32

    def mel(hz: float) -> np.float32:
        return f32(2595.0 * math.log10(1.0 + float(f32(hz)) / 700.0))

    def melinv(m: np.float32) -> np.float32:
        return f32(700.0 * (10.0 ** (float(m) / 2595.0) - 1.0))

    melmin, melmax = mel(lower), mel(upper)
    melbw = f32((melmax - melmin) / f32(n_filters + 1))
    fftfreq = f32(f32(sample_rate) / f32(n_fft))
    fb = np.zeros((n_fft // 2 + 1, n_filters), dtype=np.float32)
    for i in range(n_filters):
        edges = []
        for j in range(3):
            hz = melinv(f32(f32(i + j) * melbw + melmin))
            edges.append(f32(int(float(hz / fftfreq) + 0.5)) * fftfreq)
        lo, mid, hi = edges
        for k in range(n_fft // 2):  # the Nyquist bin ends every filter
            hz = f32(k) * fftfreq
            if hz < lo:
                continue
            if hz > hi:
                break
            up = f32(f32(hz - lo) / f32(mid - lo))
            down = f32(f32(hi - hz) / f32(hi - mid))
            area = f32(f32(2.0) / f32(hi - lo))
            fb[k, i] = min(f32(up * area), f32(down * area))
    return fb


def _suppress_noise(mel: np.ndarray) -> np.ndarray:
    """``-remove_noise yes`` (``fe_noise.c``): per-filter gains from a causal noise/floor tracker, ``[T, F]``.

    Recursions per filter (float64): smoothed power ``p = 0.7 p + 0.3 e``; noise = lower envelope of p (rises with
    0.995, falls with 0.5); signal ``s = max(p - noise, 1)``; floor = lower envelope of s; temporal masking (decay
    0.85, masked to 0.2 of the peak); ``s = max(s, floor)``; gain ``s / p`` clamped to [1/20, 20], averaged over
    +-4 neighbouring filters; output = energy times gain. State starts from frame 0 (p = e, noise = floor = e / 20).
    """
    n_frames, n_filt = mel.shape
    idx = np.arange(n_filt)
    smooth = (np.abs(idx[:, None] - idx[None, :]) <= 4).astype(np.float64)
    smooth /= smooth.sum(1, keepdims=True)
    out = np.empty_like(mel)
    power = mel[0].copy()
    noise = mel[0] / 20.0
    floor = mel[0] / 20.0
    peak = np.zeros(n_filt)
    c_pow, c_a, c_b = 1 - 0.7, 1 - 0.995, 1 - 0.5
    for t in range(n_frames):
        energy = mel[t]
        power = 0.7 * power + c_pow * energy
        noise = np.where(power >= noise, 0.995 * noise + c_a * power, 0.5 * noise + c_b * power)
        signal = np.maximum(power - noise, 1.0)
        floor = np.where(signal >= floor, 0.995 * floor + c_a * signal, 0.5 * floor + c_b * signal)
        peak = peak * 0.85
        masked = np.where(signal < 0.85 * peak, peak * 0.2, signal)
        peak = np.where(signal > peak, signal, peak)
        signal = np.maximum(masked, floor)
        big = signal >= 20.0 * power
        gain = np.where(big, 20.0, signal / np.where(big, 1.0, power))
        gain = np.maximum(gain, 1.0 / 20.0)
        out[t] = energy * (smooth @ gain)
    return out


class SphinxFrontEnd:
    """Waveform -> Sphinx cepstra and 1s_c_d_dd features (see the module docstring for the exact contract).

    Args:
        sample_rate: Input rate in Hz (the model's: 16000).
        frame_rate: Frames per second (hop = sample_rate / frame_rate, rounded).
        window_length: Analysis window in seconds (samples = window_length * sample_rate, rounded).
        alpha: Pre-emphasis coefficient (used in float32 like PocketSphinx).
        n_fft: FFT size (>= window samples, power of two).
        n_filters: Number of mel filters.
        lower_hz: Lower edge of the first mel filter.
        upper_hz: Upper edge of the last mel filter.
        n_cep: Cepstra kept (C).
        lifter: Sine lifter length (0: none).
        remove_noise: Apply PocketSphinx's noise suppression (``-remove_noise``).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        frame_rate: int = 100,
        window_length: float = 0.025625,
        alpha: float = 0.97,
        n_fft: int = 512,
        n_filters: int = 25,
        lower_hz: float = 130.0,
        upper_hz: float = 6800.0,
        n_cep: int = 13,
        lifter: int = 22,
        remove_noise: bool = True,
    ) -> None:
        self.sample_rate = sample_rate
        self.hop = int(sample_rate / frame_rate + 0.5)
        self.win = int(float(np.float32(window_length)) * sample_rate + 0.5)
        if not 1 < self.hop <= self.win <= n_fft or n_fft & (n_fft - 1):
            raise ValueError(f"invalid framing: hop {self.hop}, window {self.win}, n_fft {n_fft}")
        if upper_hz > sample_rate / 2 + 1.0 or not 0 <= lower_hz < upper_hz:
            raise ValueError(f"mel filter range {lower_hz}-{upper_hz} Hz does not fit {sample_rate} Hz audio")
        self.alpha = float(np.float32(alpha))
        self.n_fft = n_fft
        self.n_cep = n_cep
        self.remove_noise = remove_noise
        half = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(self.win // 2) / (self.win - 1.0))
        self.window = np.ones(self.win)  # the C code leaves the middle sample of an odd window unweighted
        self.window[: self.win // 2] = half
        self.window[self.win - self.win // 2 :] = half[::-1]
        self.filters = _mel_filterbank(sample_rate, n_fft, n_filters, lower_hz, upper_hz).astype(np.float64)
        j = np.arange(n_filters)
        cos = np.cos(np.pi / n_filters * np.arange(n_cep)[:, None] * (j[None, :] + 0.5)).astype(np.float32)
        scale = np.full(n_cep, np.float32(math.sqrt(2.0 / n_filters)), dtype=np.float32)
        scale[0] = np.float32(math.sqrt(1.0 / n_filters))
        self.dct = cos.astype(np.float64).T  # [F, C]
        self.dct_scale = scale
        lift = 1 + (lifter // 2) * np.sin(np.arange(n_cep) * np.pi / lifter) if lifter else np.ones(n_cep)
        self.lifter = lift.astype(np.float32)

    @classmethod
    def from_feat_params(cls, params: Mapping[str, str], sample_rate: int = 16000) -> SphinxFrontEnd:
        """The front end a model's ``feat.params`` describes (only what PocketSphinx's en-us model uses)."""
        for key, allowed in (
            ("transform", "dct"),
            ("feat", "1s_c_d_dd"),
            ("agc", "none"),
            ("varnorm", "no"),
            ("cmn", "batch"),
        ):
            if params.get(key, allowed) != allowed:
                raise SphinxModelError(f"feat.params: -{key} {params[key]} is not supported (only {allowed})")
        try:
            return cls(
                sample_rate=sample_rate,
                frame_rate=int(params.get("frate", 100)),
                window_length=float(params.get("wlen", 0.025625)),
                alpha=float(params.get("alpha", 0.97)),
                n_filters=int(params.get("nfilt", 40)),
                lower_hz=float(params.get("lowerf", 133.33334)),
                upper_hz=float(params.get("upperf", 6855.4976)),
                n_cep=int(params.get("ncep", 13)),
                lifter=int(params.get("lifter", 0)),
                remove_noise=params.get("remove_noise", "no") in ("yes", "true", "1"),
            )
        except ValueError as err:
            raise SphinxModelError(f"feat.params: unusable setting ({err})") from None

    def num_frames(self, n_samples: int) -> int:
        """Frames produced for ``n_samples`` > 0 samples: 1 if fewer than a window, else ``2 + (N - W) // H``."""
        if n_samples <= 0:
            return 0
        return 1 if n_samples < self.win else 2 + (n_samples - self.win) // self.hop

    def mel_energies(self, wav: Tensor | np.ndarray) -> np.ndarray:
        """Mel filter energies ``[T, F]`` (float64) after noise suppression, before the log."""
        x = to_pcm16(wav)
        n_frames = self.num_frames(len(x))
        y = x.copy()
        y[1:] -= self.alpha * x[:-1]
        total = (n_frames - 1) * self.hop + self.win
        y = np.concatenate([y, np.zeros(max(0, total - len(y)))])[:total]
        windows = np.lib.stride_tricks.sliding_window_view(y, self.win)[:: self.hop][:n_frames]  # a view
        mel = np.empty((n_frames, self.filters.shape[1]))
        for a in range(0, n_frames, _BLOCK):  # blocks keep the FFT buffers small for long audio
            spec = np.fft.rfft(windows[a : a + _BLOCK] * self.window, n=self.n_fft)
            mel[a : a + _BLOCK] = (spec.real**2 + spec.imag**2) @ self.filters
        return _suppress_noise(mel) if self.remove_noise else mel

    def cepstra(self, wav: Tensor | np.ndarray) -> np.ndarray:
        """Raw cepstra ``[T, C]`` float32, before CMN: what ``Decoder(mfclogdir=...)`` writes."""
        logmel = np.log(self.mel_energies(wav) + _LOG_FLOOR)
        cep = (logmel @ self.dct).astype(np.float32) * self.dct_scale
        return cep * self.lifter

    def features(self, wav: Tensor | np.ndarray) -> np.ndarray:
        """1s_c_d_dd features ``[T, 3C]`` float32 (batch CMN, then deltas and double deltas)."""
        return add_deltas(batch_cmn(self.cepstra(wav))[0])
