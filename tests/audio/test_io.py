"""load_audio: formats, subtypes, rates, channel counts, every bad input, warnings."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio.io import (
    AudioError,
    AudioFileNotFoundError,
    AudioTooLongError,
    AudioWarning,
    EmptyAudioError,
    NonFiniteAudioError,
    UnreadableAudioError,
    load_audio,
)

ASSET = Path(__file__).resolve().parents[2] / "assets" / "speech" / "arctic_a0009.wav"


def tone(sample_rate: int, seconds: float = 0.5, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_hz(y: np.ndarray, sample_rate: int) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.argmax(spec) * sample_rate / len(y))


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))


def no_audio_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    assert not [w for w in caught if issubclass(w.category, AudioWarning)], [str(w.message) for w in caught]
    return out


# --------------------------------------------------------------------------------------------- good input


@pytest.mark.parametrize(
    ("ext", "subtype", "tol"),
    [
        ("wav", "PCM_U8", 1.0 / 64),
        ("wav", "PCM_16", 1e-4),
        ("wav", "PCM_24", 1e-6),
        ("wav", "PCM_32", 1e-6),
        ("wav", "FLOAT", 0.0),
        ("wav", "DOUBLE", 1e-7),
        ("flac", "PCM_16", 1e-4),
        ("flac", "PCM_24", 1e-6),
    ],
)
def test_lossless_subtypes_round_trip(tmp_path: Path, ext: str, subtype: str, tol: float) -> None:
    y = tone(16000)
    path = tmp_path / f"x_{subtype}.{ext}"
    sf.write(path, y, 16000, subtype=subtype)
    out = no_audio_warnings(load_audio, path)
    assert out.dtype == np.float32 and out.ndim == 1 and out.flags.c_contiguous
    assert out.shape == y.shape
    np.testing.assert_allclose(out, y, atol=tol + 1e-7)


@pytest.mark.parametrize(
    ("fmt", "ext", "subtype"), [("OGG", "ogg", "VORBIS"), ("MP3", "mp3", "MPEG_LAYER_III")]
)
def test_lossy_formats(tmp_path: Path, fmt: str, ext: str, subtype: str) -> None:
    y = tone(16000, seconds=1.0)
    path = tmp_path / f"x.{ext}"
    sf.write(path, y, 16000, format=fmt, subtype=subtype)
    out = load_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - len(y)) < 0.05 * 16000  # codec priming may add or drop a few ms
    assert dominant_hz(out, 16000) == pytest.approx(440, abs=2)
    assert rms(out) == pytest.approx(rms(y), rel=0.1)


@pytest.mark.parametrize("source_rate", [8000, 22050, 44100, 48000])
def test_resamples_any_rate(tmp_path: Path, source_rate: int) -> None:
    seconds = 0.5
    path = tmp_path / "x.wav"
    sf.write(path, tone(source_rate, seconds), source_rate, subtype="FLOAT")
    out = load_audio(path, sample_rate=16000)
    assert len(out) == 8000  # ceil(N * 16000 / source_rate)
    assert dominant_hz(out, 16000) == pytest.approx(440, abs=2)
    # Resampling keeps the level: the RMS of a 0.5-amplitude sine is 0.5 / sqrt(2).
    assert rms(out[400:-400]) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_resamples_to_other_target_rates(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    sf.write(path, tone(16000, 0.5), 16000)
    assert len(load_audio(path, sample_rate=22050)) == pytest.approx(0.5 * 22050, abs=1)
    assert len(load_audio(path, sample_rate=16000)) == 8000


@pytest.mark.parametrize("channels", [2, 6])
def test_channels_are_averaged(tmp_path: Path, channels: int) -> None:
    y = tone(16000)
    gains = np.linspace(1.0, 0.25, channels, dtype=np.float32)
    data = y[:, None] * gains[None, :]  # [N, C]
    path = tmp_path / f"x{channels}.wav"
    sf.write(path, data, 16000, subtype="FLOAT")
    out = load_audio(path)
    np.testing.assert_allclose(out, y * gains.mean(), atol=1e-6)


def test_librosa_fallback_when_soundfile_read_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.wav"
    sf.write(path, tone(22050), 22050, subtype="PCM_16")
    expected = load_audio(path)

    def broken_read(*args, **kwargs):
        raise RuntimeError("simulated soundfile failure")

    monkeypatch.setattr(sf, "read", broken_read)
    np.testing.assert_allclose(load_audio(path), expected, atol=1e-6)


def test_ffmpeg_fallback_reads_m4a(tmp_path: Path) -> None:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    src = tmp_path / "x.wav"
    sf.write(src, tone(44100, 1.0), 44100)
    dst = tmp_path / "x.m4a"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(src), "-c:a", "aac", str(dst)]
    subprocess.run(cmd, check=True, capture_output=True)
    out = load_audio(dst)
    assert abs(len(out) - 16000) < 0.1 * 16000
    assert dominant_hz(out, 16000) == pytest.approx(440, abs=2)


def test_bundled_speech_asset() -> None:
    out = no_audio_warnings(load_audio, ASSET)
    assert out.shape == (sf.info(str(ASSET)).frames,)
    assert 0.1 < float(np.abs(out).max()) <= 1.0
    half = load_audio(ASSET, sample_rate=8000)
    assert len(half) == pytest.approx(len(out) / 2, abs=1)


def test_accepts_str_path(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    sf.write(path, tone(16000), 16000)
    assert load_audio(str(path)).shape == (8000,)


# ---------------------------------------------------------------------------------------------- bad input


def assert_one_clean_line(err: BaseException, path: Path) -> None:
    message = str(err)
    assert "\n" not in message
    assert str(path) in message
    # Raised "from None": no decoder traceback is chained under the user's message.
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioFileNotFoundError, match="does not exist") as info:
        load_audio(path)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, AudioError)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(UnreadableAudioError, match="is a directory"):
        load_audio(tmp_path)


def test_text_file_renamed_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("these are meeting notes, not audio\n" * 20)
    with pytest.raises(UnreadableAudioError, match="is not a readable audio file") as info:
        load_audio(path)
    assert_one_clean_line(info.value, path)
    assert "Traceback" not in str(info.value)


def test_truncated_header(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    sf.write(good, tone(16000), 16000)
    path = tmp_path / "cut.wav"
    path.write_bytes(good.read_bytes()[:20])  # RIFF header cut in the middle of the fmt chunk
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert_one_clean_line(info.value, path)


def test_zero_samples(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(EmptyAudioError, match="no samples"):
        load_audio(path)


def test_shorter_than_one_frame(tmp_path: Path) -> None:
    path = tmp_path / "blip.wav"
    sf.write(path, tone(16000, seconds=0.01), 16000)  # 10 ms < 25 ms
    with pytest.raises(EmptyAudioError, match="10.0 ms long") as info:
        load_audio(path)
    assert str(path) in str(info.value)
    sf.write(path, tone(16000, seconds=0.025), 16000)  # exactly one window is accepted
    assert load_audio(path).shape == (400,)


def test_nan_samples_float32_wav(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    sf.write(path, np.full(8000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError, match="8000 non-finite samples") as info:
        load_audio(path)
    assert_one_clean_line(info.value, path)


def test_single_inf_sample(tmp_path: Path) -> None:
    y = tone(16000).astype(np.float64)
    y[100] = np.inf
    path = tmp_path / "inf.wav"
    sf.write(path, y, 16000, subtype="DOUBLE")
    with pytest.raises(NonFiniteAudioError, match="1 non-finite"):
        load_audio(path)


def test_max_seconds(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, tone(16000, seconds=2.0), 16000)
    with pytest.raises(AudioTooLongError, match=r"2\.0 s long, more than max_seconds=1\.5") as info:
        load_audio(path, max_seconds=1.5)
    assert str(path) in str(info.value)
    assert load_audio(path, max_seconds=2.0).shape == (32000,)


def test_max_seconds_checked_after_decode_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # When the header cannot be read up front (e.g. a stream format), the decoded length is checked.
    path = tmp_path / "long.wav"
    sf.write(path, tone(16000, seconds=2.0), 16000)

    def no_info(*args, **kwargs):
        raise RuntimeError("no header")

    monkeypatch.setattr(sf, "info", no_info)
    with pytest.raises(AudioTooLongError):
        load_audio(path, max_seconds=1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"sample_rate": 0}, "sample_rate"), ({"max_seconds": 0}, "max_seconds")]
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    path = tmp_path / "x.wav"
    sf.write(path, tone(16000), 16000)
    with pytest.raises(ValueError, match=match):
        load_audio(path, **kwargs)


# ------------------------------------------------------------------------------------------------ warnings


def test_clipping_warning(tmp_path: Path) -> None:
    y = np.clip(tone(16000, amp=2.0), -1.0, 1.0)  # flat tops at full scale
    path = tmp_path / "clipped.wav"
    sf.write(path, y, 16000, subtype="PCM_16")
    with pytest.warns(AudioWarning, match="looks clipped"):
        out = load_audio(path)
    assert out.shape == (8000,)


def test_float_over_full_scale_warns(tmp_path: Path) -> None:
    path = tmp_path / "hot.wav"
    sf.write(path, tone(16000, amp=1.5), 16000, subtype="FLOAT")
    with pytest.warns(AudioWarning, match="peak 1.500"):
        load_audio(path)


def test_near_silence_warning(tmp_path: Path) -> None:
    path = tmp_path / "quiet.wav"
    sf.write(path, tone(16000, amp=1e-4), 16000, subtype="FLOAT")
    with pytest.warns(AudioWarning, match=r"nearly silent \(peak -80 dBFS\)"):
        load_audio(path)
    sf.write(path, np.zeros(8000, dtype=np.float32), 16000)
    with pytest.warns(AudioWarning, match=r"peak -inf dBFS"):
        load_audio(path)
