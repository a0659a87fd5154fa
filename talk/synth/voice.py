"""Source-filter speech synthesizer driven by the articulatory trajectory.

A glottal pulse train (Rosenberg flow derivative, with jitter, shimmer and an intonation contour) excites a
cascade of five formant resonators whose frequencies follow the trajectory every 5 ms: jaw opening raises F1,
the (hidden) tongue position moves F2, lip rounding lowers F2 and F3, spreading raises F2, r-colouring lowers
F3, and all formants scale with the inverse vocal-tract length. The oral branch's amplitude follows the lip
aperture computed from the same trajectory, so a bilabial closure silences it exactly when the mesh lips
touch. Parallel branches add nasal murmur (m, n), frication noise bands (f v s z sh) and release bursts
(p b t d k g).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from talk.synth.articulation import ArticulatoryTrajectory, lip_aperture
from talk.synth.phonemes import CHANNELS, Utterance
from talk.synth.speakers import SpeakerProfile

BLOCK_SECONDS = 0.005  # formant coefficients are updated every 5 ms
CONTROL_RATE = 400  # Hz: rate at which the trajectory is sampled for amplitudes
PEAK = 0.5

# Per-kind source settings (voicing, oral gate, nasal, aspiration). The oral gate is a non-lip occlusion
# (tongue closure of t/d/k/g/n, narrow fricative constriction); lip closure acts through the aperture instead.
_SOURCE = {
    "vowel": (1.0, 1.0, 0.0, 0.0),
    "approximant": (1.0, 0.75, 0.0, 0.0),
    "nasal": (1.0, 0.0, 1.0, 0.0),
    "fricative": (0.0, 0.0, 0.0, 0.0),
    "aspirate": (0.0, 1.0, 0.0, 0.6),
    "pause": (0.0, 0.0, 0.0, 0.0),
}
_RAMP = 0.012  # seconds over which source controls cross-fade between segments


@dataclass(frozen=True)
class Voice:
    """A synthesized utterance.

    Args:
        audio: ``[N]`` float32 waveform, peak ``PEAK``.
        sample_rate: Samples per second.
        formants: ``[Nb, 5]`` formant frequencies (Hz) per 5 ms block.
        block_times: ``[Nb]`` block centre times, seconds.
    """

    audio: np.ndarray
    sample_rate: int
    formants: np.ndarray
    block_times: np.ndarray


def formant_tracks(values: np.ndarray, vocal_tract_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Formant frequencies and bandwidths from trajectory samples.

    Args:
        values: ``[N, C]`` trajectory samples (``CHANNELS`` order).
        vocal_tract_scale: Tract length relative to a reference adult male.

    Returns:
        ``([N, 5], [N, 5])`` frequencies and bandwidths in Hz.
    """
    col = {c: values[:, i] for i, c in enumerate(CHANNELS)}
    jaw, rnd, stretch = col["jaw"], np.clip(col["lip_round"], 0, None), np.clip(col["stretch"], 0, None)
    tongue, rhotic = col["tongue_front"], np.clip(col["rhotic"], 0, None)
    f1 = 230.0 + 2200.0 * jaw - 40.0 * rnd
    f2 = 1450.0 + 700.0 * tongue + 200.0 * stretch - 300.0 * rnd
    f3 = 2500.0 + 250.0 * tongue + 100.0 * stretch - 250.0 * rnd - 800.0 * rhotic
    f4 = np.full_like(f1, 3500.0)
    f5 = np.full_like(f1, 4500.0)
    freqs = np.stack([f1, np.maximum(f2, f1 + 200.0), np.maximum(f3, f2 + 300.0), f4, f5], axis=1)
    freqs = freqs / vocal_tract_scale
    # Lip closure damps the first formant (energy leaks into the walls): wider B1 when the aperture is small.
    closed = np.exp(-lip_aperture(values) / 0.02)
    bws = np.stack(
        [
            70.0 + 80.0 * closed,
            np.full_like(f1, 90.0),
            np.full_like(f1, 150.0),
            np.full_like(f1, 250.0),
            np.full_like(f1, 350.0),
        ],
        axis=1,
    )
    return freqs, bws


def _resonator_sos(freqs: np.ndarray, bws: np.ndarray, sr: int) -> np.ndarray:
    """``[K]`` centre frequencies and bandwidths -> ``[K, 6]`` unity-DC-gain two-pole sections."""
    freqs = np.clip(freqs, 50.0, 0.45 * sr)
    r = np.exp(-np.pi * bws / sr)
    a1 = -2.0 * r * np.cos(2.0 * np.pi * freqs / sr)
    a2 = r * r
    zeros = np.zeros_like(a1)
    return np.stack([1.0 + a1 + a2, zeros, zeros, np.ones_like(a1), a1, a2], axis=-1)


def _bandpass_sos(low: float, high: float, sr: int) -> np.ndarray:
    """One second-order band-pass section (constant 0 dB peak gain) covering ``[low, high]`` Hz, ``[1,
    6]``."""
    high = min(high, 0.45 * sr)
    centre = np.sqrt(low * high)
    w0 = 2.0 * np.pi * centre / sr
    alpha = np.sin(w0) * np.sinh(0.5 * np.log(2.0) * np.log2(high / low) * w0 / np.sin(w0))
    a0 = 1.0 + alpha
    return np.asarray([[alpha / a0, 0.0, -alpha / a0, 1.0, -2.0 * np.cos(w0) / a0, (1.0 - alpha) / a0]])


def time_varying_resonator(
    x: np.ndarray, freqs: np.ndarray, bws: np.ndarray, block: int, sr: int
) -> np.ndarray:
    """Filters ``x`` through a two-pole resonator whose frequency and bandwidth change every block.

    The resonator (unity gain at DC) is written as twice the real part of a complex one-pole filter. Inside a
    block the pole is fixed, so the recursion has a closed form evaluated for all blocks at once with a
    cumulative sum; only the one complex carry between blocks is propagated sequentially. This is ~20x faster
    than calling a filter routine per block and has no transients when the coefficients change.

    Args:
        x: ``[N]`` input.
        freqs: ``[Nb]`` centre frequency per block, Hz (Nb = ceil(N / block)).
        bws: ``[Nb]`` bandwidth per block, Hz.
        block: Block length in samples.
        sr: Sampling rate.

    Returns:
        ``[N]`` output.
    """
    n = len(x)
    nb = len(freqs)
    xb = np.zeros(nb * block)
    xb[:n] = x
    xb = xb.reshape(nb, block)
    pole = np.exp(-np.pi * bws / sr + 2j * np.pi * np.clip(freqs, 50.0, 0.45 * sr) / sr)  # [Nb]
    k = np.arange(block)
    powers = pole[:, None] ** k[None, :]  # p^k, |p|^-block stays far from overflow for bandwidths < 1 kHz
    zero_state = powers * np.cumsum(xb / powers, axis=1)  # response to this block's input alone
    carry_gain = pole[:, None] * powers  # p^(k+1): how the previous block's last output decays into this one
    y = np.empty_like(zero_state)
    carry = 0.0 + 0.0j
    last_zs, last_gain = zero_state[:, -1], carry_gain[:, -1]
    carries = np.empty(nb, dtype=np.complex128)
    for b in range(nb):  # scalar recursion over blocks only
        carries[b] = carry
        carry = last_zs[b] + last_gain[b] * carry
    y = zero_state + carry_gain * carries[:, None]
    # Real resonator = |1-p|^2 / ((1 - p z^-1)(1 - p* z^-1)) = 2 Re(|1-p|^2 p / (p - p*) / (1 - p z^-1)).
    coef = np.abs(1.0 - pole) ** 2 * pole / (pole - np.conj(pole))
    return (2.0 * (coef[:, None] * y).real).reshape(-1)[:n]


def _piecewise(points_t: list[float], points_v: list[float], t: np.ndarray) -> np.ndarray:
    return np.interp(t, np.asarray(points_t), np.asarray(points_v))


def source_controls(utterance: Utterance, t: np.ndarray) -> dict[str, np.ndarray]:
    """Voicing, oral gate, nasal and aspiration controls (each ``[N]`` in [0, 1]) at times ``t``.

    Plosives are split into a silent closure and a release (voiced for b/d/g, aspirated for p/t/k); values
    cross-fade over ``_RAMP`` seconds around each boundary.
    """
    pieces: list[tuple[float, float, tuple[float, float, float, float]]] = []
    for seg in utterance.segments:
        ph = seg.phoneme
        if ph.kind == "plosive":
            pieces.append((seg.start, seg.release, (0.0, 0.0, 0.0, 0.0)))
            pieces.append((seg.release, seg.end, (1.0, 1.0, 0.0, 0.1) if ph.voiced else (0.0, 1.0, 0.0, 0.6)))
        elif ph.kind == "fricative" and ph.voiced:
            pieces.append((seg.start, seg.end, (0.7, 0.25, 0.0, 0.0)))
        else:
            pieces.append((seg.start, seg.end, _SOURCE[ph.kind]))
    times: list[float] = []
    vals: list[tuple[float, ...]] = []
    for start, end, val in pieces:
        half = min(_RAMP, end - start) / 2.0
        times += [start + half, end - half]
        vals += [val, val]
    arr = np.asarray(vals)
    return {
        name: _piecewise(times, list(arr[:, i]), t)
        for i, name in enumerate(("voicing", "oral", "nasal", "aspiration"))
    }


def _f0_contour(
    utterance: Utterance, speaker: SpeakerProfile, t: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Intonation: declination, a pitch accent on each stressed vowel, slow wobble, final fall."""
    rel = 0.5 * speaker.f0_range * (0.6 - 1.2 * t / utterance.duration)
    for seg in utterance.segments:
        if seg.stressed:
            centre = 0.5 * (seg.start + seg.end)
            rel = rel + speaker.f0_range * rng.uniform(0.5, 1.0) * np.exp(-0.5 * ((t - centre) / 0.09) ** 2)
    rel = rel + 0.015 * np.sin(2 * np.pi * rng.uniform(3.0, 5.0) * t + rng.uniform(0, 2 * np.pi))
    return speaker.f0 * (1.0 + rel)


def _glottal_source(f0: np.ndarray, speaker: SpeakerProfile, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Rosenberg glottal flow derivative with per-period jitter and shimmer, ``[N]``."""
    base_phase = np.cumsum(f0 / sr)
    n_periods = int(base_phase[-1]) + 2
    jitter = 1.0 + speaker.jitter * rng.standard_normal(n_periods)
    phase = np.cumsum(f0 / sr * jitter[base_phase.astype(np.int64)])
    period = phase.astype(np.int64)
    p = phase - period
    # Flow: opening 40 % of the period, closing 16 %, closed the rest; its derivative (radiation at the lips
    # included) has the sharp negative peak at glottal closure that excites the formants.
    t_open, t_close = 0.40, 0.16
    flow = np.where(
        p < t_open,
        0.5 * (1.0 - np.cos(np.pi * p / t_open)),
        np.where(p < t_open + t_close, np.cos(0.5 * np.pi * (p - t_open) / t_close), 0.0),
    )
    deriv = np.diff(flow, prepend=0.0) * (sr / np.maximum(f0, 1.0))
    shimmer = 1.0 + speaker.shimmer * rng.standard_normal(n_periods)
    return deriv * shimmer[np.minimum(period, n_periods - 1)]


def _noise_branches(
    utterance: Utterance, speaker: SpeakerProfile, glottal: np.ndarray, sr: int, rng: np.random.Generator
) -> np.ndarray:
    """Frication (band noise over fricatives) and release bursts, summed, ``[N]``.

    Each event filters only its own stretch of noise (plus 10 ms of filter warm-up that is discarded).
    """
    n = len(glottal)
    out = np.zeros(n)
    noise = rng.standard_normal(n + int(0.01 * sr))
    warm = int(0.01 * sr)
    for seg in utterance.segments:
        ph = seg.phoneme
        if ph.noise_band is None:
            continue
        if ph.kind == "fricative":
            ramp = min(0.025, 0.4 * (seg.end - seg.start))
            t0, t1 = seg.start - ramp / 2, seg.end + ramp / 2
        else:  # plosive burst: 1 ms attack, 6 ms exponential decay from the release
            t0, t1 = seg.release - 0.001, seg.release + 0.03
        i0, i1 = max(0, int(t0 * sr)), min(n, int(np.ceil(t1 * sr)))
        if i1 <= i0:
            continue
        t = np.arange(i0, i1) / sr
        if ph.kind == "fricative":
            env = np.interp(t, [t0, t0 + ramp, t1 - ramp, t1], [0.0, 1.0, 1.0, 0.0])
            if ph.voiced:  # voiced frication is modulated by the glottal pulses
                env = env * np.where(glottal[i0:i1] < 0, 1.0, 0.5)
        else:
            u = t - seg.release
            env = np.where(u < 0, np.clip(1.0 + u / 0.001, 0.0, 1.0), np.exp(-u / 0.006))
        lo, hi = (f / speaker.vocal_tract_scale for f in ph.noise_band)
        sos = np.concatenate([_bandpass_sos(lo, hi, sr)] * 2)  # two sections: steeper skirts
        band = signal.sosfilt(sos, noise[i0 : i1 + warm])[warm:]
        out[i0:i1] += ph.noise_gain * env * band
    return out


def synthesize_voice(
    utterance: Utterance,
    trajectory: ArticulatoryTrajectory,
    speaker: SpeakerProfile,
    rng: np.random.Generator,
    sample_rate: int = 16000,
) -> Voice:
    """Synthesizes the audio of ``utterance`` spoken with ``trajectory``.

    Args:
        utterance: Phoneme segments (source events: voicing, nasality, frication, bursts).
        trajectory: Articulation (formants and lip aperture).
        speaker: Voice parameters (f0, vocal-tract scale, jitter, shimmer, breathiness).
        rng: Source of randomness (noise, jitter, intonation).
        sample_rate: Output sampling rate.
    """
    sr = int(sample_rate)
    n = int(round(utterance.duration * sr))
    t = np.arange(n) / sr
    ctrl_t = np.arange(int(np.ceil(utterance.duration * CONTROL_RATE)) + 1) / CONTROL_RATE
    values = trajectory(ctrl_t)
    aperture = np.interp(t, ctrl_t, lip_aperture(values))
    # Radiated amplitude grows with the opening and saturates (a wide-open /a/ is not 5x louder than /i/).
    open_amp = aperture / (aperture + 0.025)
    ctl = source_controls(utterance, t)
    f0 = _f0_contour(utterance, speaker, t, rng)
    glottal = _glottal_source(f0, speaker, sr, rng)
    noise = rng.standard_normal(n)
    oral_gain = ctl["oral"] * open_amp
    breath = speaker.breathiness * ctl["voicing"]
    excitation = oral_gain * (ctl["voicing"] * glottal + (ctl["aspiration"] + breath) * 2.0 * noise)

    # Cascade formant filter with coefficients updated per block.
    block = max(1, int(round(BLOCK_SECONDS * sr)))
    n_blocks = (n + block - 1) // block
    block_t = (np.arange(n_blocks) + 0.5) * block / sr
    block_values = np.stack(
        [np.interp(block_t, ctrl_t, values[:, i]) for i in range(values.shape[1])], axis=1
    )
    freqs, bws = formant_tracks(block_values, speaker.vocal_tract_scale)
    oral = excitation
    for k in range(freqs.shape[1]):
        oral = time_varying_resonator(oral, freqs[:, k], bws[:, k], block, sr)

    # Nasal murmur: low resonance plus a weak higher one, independent of the lips (m is hummed with lips
    # shut).
    nasal_sos = _resonator_sos(
        np.asarray([260.0, 2100.0]) / speaker.vocal_tract_scale, np.asarray([110.0, 300.0]), sr
    )
    nasal = signal.sosfilt(nasal_sos, ctl["nasal"] * ctl["voicing"] * glottal) * 0.35

    y = oral + nasal + _noise_branches(utterance, speaker, glottal, sr, rng)
    y = y * (PEAK / max(float(np.abs(y).max()), 1e-9))
    y += 2e-4 * rng.standard_normal(n)  # recording noise floor, ~-74 dBFS, so silences are not digital zero
    return Voice(y.astype(np.float32), sr, freqs.astype(np.float32), block_t)
