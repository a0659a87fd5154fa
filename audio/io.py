"""Loading audio files into mono float32 waveforms, with one-sentence errors for bad input."""

from __future__ import annotations

import math
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np

from talk.errors import UserError

# Shortest audio accepted: one 25 ms analysis window (400 samples at 16 kHz), the input span of the first frame
# of both MelEncoder (default win_length) and wav2vec2-style encoders. Anything shorter yields no features.
MIN_SECONDS = 0.025
# Peak below -60 dBFS: almost certainly a wrong input device or an empty recording.
SILENCE_PEAK = 1e-3
# Samples at or above this magnitude count as "at full scale" for the clipping warning.
CLIP_LEVEL = 0.999
# Fraction of full-scale samples above which the file is reported as clipped (0.1 %).
CLIP_FRACTION = 1e-3


class AudioError(UserError, ValueError):
    """An audio input the user supplied cannot be used; the message names the file and the fix."""


class AudioFileNotFoundError(AudioError, FileNotFoundError):
    """The audio path does not exist."""


class UnreadableAudioError(AudioError):
    """The file exists but is not audio that soundfile, librosa or ffmpeg can decode."""


class EmptyAudioError(AudioError):
    """The file decodes to no samples, or to fewer than one analysis frame."""


class NonFiniteAudioError(AudioError):
    """The file contains NaN or infinite samples (possible only in float formats)."""


class AudioTooLongError(AudioError):
    """The file is longer than the caller's ``max_seconds``."""


class AudioWarning(UserWarning):
    """A usable but suspicious audio input (clipped or nearly silent)."""


def load_audio(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None) -> np.ndarray:
    """Load an audio file as a mono float32 waveform.

    Decoding tries soundfile first (wav 8/16/24/32-bit integer and float, flac, ogg/vorbis/opus, mp3, aiff,
    ...), then librosa's audioread fallback, then the ffmpeg binary of imageio-ffmpeg (m4a/aac, mp4, webm).
    Integer formats are scaled to [-1, 1). Channels are averaged to mono (the ffmpeg fallback uses ffmpeg's
    own downmix). Other rates are resampled with soxr in high-quality mode (librosa's default resampler) to
    exactly ``ceil(N * sample_rate / source_rate)`` samples.

    Args:
        path: Audio file to read.
        sample_rate: Output sample rate in Hz.
        max_seconds: Reject files longer than this many seconds; None = no limit.

    Returns:
        Waveform [N] float32 at ``sample_rate``, N >= ``MIN_SECONDS * sample_rate``.

    Raises:
        AudioFileNotFoundError: ``path`` does not exist.
        UnreadableAudioError: ``path`` is a directory, unreadable, or not decodable audio.
        EmptyAudioError: no samples, or shorter than ``MIN_SECONDS``.
        NonFiniteAudioError: NaN or Inf samples.
        AudioTooLongError: longer than ``max_seconds``.
        ValueError: ``sample_rate`` or ``max_seconds`` is not positive.

    Warns:
        AudioWarning: when the file looks clipped or is nearly silent.
    """
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"load_audio: sample_rate must be a positive integer, got {sample_rate!r}.")
    sample_rate = int(sample_rate)
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"load_audio: max_seconds must be positive or None, got {max_seconds!r}.")

    path = Path(path).expanduser()
    if not path.exists():
        raise AudioFileNotFoundError(f"Audio file '{path}' does not exist; check the path.")
    if path.is_dir():
        raise UnreadableAudioError(
            f"'{path}' is a directory, not an audio file; pass a .wav/.flac/.mp3 file."
        )
    if not os.access(path, os.R_OK):
        raise UnreadableAudioError(
            f"Audio file '{path}' cannot be read (permission denied); fix its permissions."
        )

    if max_seconds is not None:
        # Check the header first so that a huge file is rejected before it is decoded into memory.
        duration = _header_duration(path)
        if duration is not None and duration > max_seconds:
            raise _too_long(path, duration, max_seconds)

    data, source_rate = _decode(path, sample_rate)  # [N, C] float32
    if data.size == 0:
        raise EmptyAudioError(f"Audio file '{path}' contains no samples; pass a recording with speech in it.")
    finite = np.isfinite(data)
    if not finite.all():
        bad = int(data.size - finite.sum())
        raise NonFiniteAudioError(
            f"Audio file '{path}' contains {bad} non-finite samples (NaN or Inf); re-export it from the source."
        )
    if max_seconds is not None and data.shape[0] / source_rate > max_seconds:
        raise _too_long(path, data.shape[0] / source_rate, max_seconds)

    # Clipping is judged on the decoded samples, before resampling can smooth or overshoot the flat tops.
    magnitude = np.abs(data)
    peak = float(magnitude.max())
    clipped = float(np.mean(magnitude >= CLIP_LEVEL))
    if peak > 1.0 or clipped > CLIP_FRACTION:
        warnings.warn(
            f"Audio file '{path}' looks clipped (peak {peak:.3f}, {100 * clipped:.2f}% of samples at full scale); "
            f"lower the recording gain for better lip motion.",
            AudioWarning,
            stacklevel=2,
        )

    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if source_rate != sample_rate:
        wav = _resample(wav, source_rate, sample_rate)
    wav = np.ascontiguousarray(wav, dtype=np.float32)

    min_samples = math.ceil(MIN_SECONDS * sample_rate)
    if wav.shape[0] < min_samples:
        raise EmptyAudioError(
            f"Audio file '{path}' is only {1000 * wav.shape[0] / sample_rate:.1f} ms long; at least "
            f"{1000 * MIN_SECONDS:.0f} ms of audio is needed for one feature frame."
        )
    peak_out = float(np.abs(wav).max())
    if peak_out < SILENCE_PEAK:
        level = "-inf" if peak_out == 0 else f"{20 * math.log10(peak_out):.0f}"
        warnings.warn(
            f"Audio file '{path}' is nearly silent (peak {level} dBFS); check the recording or input device.",
            AudioWarning,
            stacklevel=2,
        )
    return wav


def _resample(wav: np.ndarray, source_rate: int, sample_rate: int) -> np.ndarray:
    """High-quality resampling to exactly ``ceil(N * sample_rate / source_rate)`` samples.

    This is librosa.resample(res_type="soxr_hq") without its lazy scipy.signal import (seconds on first use):
    soxr is the library librosa itself calls, and the length fix matches librosa's ``fix=True``.
    """
    target = -(-wav.shape[0] * sample_rate // source_rate)
    try:
        import soxr
    except ImportError:  # soxr ships with librosa >= 0.10; fall back to librosa's own call just in case
        import librosa

        return librosa.resample(wav, orig_sr=source_rate, target_sr=sample_rate, res_type="soxr_hq")
    out = soxr.resample(wav, source_rate, sample_rate, quality="HQ")
    if out.shape[0] < target:
        out = np.pad(out, (0, target - out.shape[0]))
    return out[:target]


def _too_long(path: Path, duration: float, max_seconds: float) -> AudioTooLongError:
    return AudioTooLongError(
        f"Audio file '{path}' is {duration:.1f} s long, more than max_seconds={max_seconds:g}; trim it or raise "
        f"max_seconds."
    )


def _header_duration(path: Path) -> float | None:
    """Duration in seconds from the file header, or None when soundfile cannot parse the header."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # the decode step below reports unreadable files with a proper message
        return None
    return info.frames / info.samplerate if info.samplerate > 0 else None


def _decode(path: Path, sample_rate: int) -> tuple[np.ndarray, int]:
    """Decode ``path`` to ([N, C] float32, rate), trying soundfile, librosa, then ffmpeg.

    Every decoder failure is caught broadly on purpose: this is the user boundary, and a decoder's own
    traceback (libsndfile, audioread, ffmpeg) tells the user nothing about what to do.
    """
    import soundfile as sf

    reasons = []
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return data, int(rate)
    except Exception as err:
        reasons.append(_reason(err))

    try:
        import librosa

        with warnings.catch_warnings():
            # librosa announces its own fallback with UserWarning/FutureWarning; the outcome is reported below.
            warnings.simplefilter("ignore")
            data, rate = librosa.load(str(path), sr=None, mono=False, dtype=np.float32)
        data = data[:, None] if data.ndim == 1 else data.T
        return np.ascontiguousarray(data), int(rate)
    except Exception:
        pass  # the soundfile reason is the informative one; audioread usually just lacks a backend

    try:
        return _decode_ffmpeg(path, sample_rate), sample_rate
    except Exception as err:
        reasons.append(_reason(err))
    raise UnreadableAudioError(
        f"'{path}' is not a readable audio file ({'; '.join(r for r in reasons if r)}); convert it to WAV or "
        f"FLAC, e.g. `ffmpeg -i input output.wav`."
    ) from None


def _decode_ffmpeg(path: Path, sample_rate: int) -> np.ndarray:
    """Decode with imageio-ffmpeg's bundled binary to mono float32 at ``sample_rate``; returns [N, 1]."""
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    cmd = [exe, "-nostdin", "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(sample_rate)]
    cmd += ["-f", "f32le", "-acodec", "pcm_f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        last = lines[-1].replace(f"{path}: ", "") if lines else f"exit code {proc.returncode}"
        raise RuntimeError(f"ffmpeg: {last}")
    return np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)[:, None]


def _reason(err: Exception) -> str:
    """A short, single-line description of a decoder error (without repeating the path)."""
    text = getattr(err, "error_string", None) or str(err) or type(err).__name__
    text = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return text.rstrip(".")[:120]
