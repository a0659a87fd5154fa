import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from render.video import VideoEncodeError, VideoWriter, probe_video
from talk.errors import UserError


def _sine(path: Path, seconds: float, sample_rate: int = 16000) -> Path:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    pcm = (0.3 * np.sin(2 * np.pi * 440.0 * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return path


def _frame(i: int, height: int = 48, width: int = 64) -> np.ndarray:
    frame = np.zeros((height, width, 3), np.uint8)
    frame[..., 0] = (i * 8) % 256
    frame[:, : (i % width) + 1, 1] = 255
    return frame


def test_round_trip_h264_aac_with_exact_durations(tmp_path):
    audio = _sine(tmp_path / "a.wav", 1.2)
    with VideoWriter(tmp_path / "out.mp4", fps=25, audio=audio) as writer:
        for i in range(30):
            writer.write(_frame(i))
    info = probe_video(tmp_path / "out.mp4")
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.n_frames, info.width, info.height, info.fps) == (30, 64, 48, 25.0)
    assert info.video_duration == pytest.approx(1.2)
    assert abs(info.audio_duration - info.video_duration) < 1 / 25
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp files cleaned up


@pytest.mark.parametrize("audio_seconds, frames", [(0.5, None), (3.0, None), (0.5, 36), (3.0, 36)])
def test_audio_is_padded_or_trimmed_to_the_video(tmp_path, audio_seconds, frames):
    # frames=36 announces the count: audio and video are encoded in one ffmpeg run, with the same result
    audio = _sine(tmp_path / "a.wav", audio_seconds, sample_rate=22050)
    writer = VideoWriter(tmp_path / "out.mp4", fps=30, audio=audio, frames=frames)
    writer.write(np.stack([_frame(i) for i in range(36)]))  # a [B,H,W,3] batch: 1.2 s
    path = writer.close()
    info = probe_video(path)
    assert info.n_frames == 36 and info.audio_sample_rate == 22050
    assert abs(info.audio_duration - 1.2) < 1 / 30
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_frame_count_other_than_announced_is_refused_and_leaves_nothing(tmp_path):
    writer = VideoWriter(tmp_path / "out.mp4", fps=30, audio=_sine(tmp_path / "a.wav", 1.0), frames=10)
    writer.write(np.stack([_frame(i) for i in range(9)]))
    with pytest.raises(ValueError, match="9 frames .* not the 10 announced"):
        writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


def test_frames_stream_from_a_generator_without_buffering(tmp_path):
    writer = VideoWriter(tmp_path / "stream.mp4", fps=25)
    seen = []

    def frames():
        for i in range(20):
            seen.append(writer.n_frames)  # every earlier frame was already handed to ffmpeg
            # float tensors in [0,1], odd width (padded to even)
            yield torch.from_numpy(_frame(i, 30, 41)).float() / 255.0

    with writer:
        writer.extend(frames())
    assert seen == list(range(20))
    info = probe_video(tmp_path / "stream.mp4")
    assert (info.n_frames, info.width, info.height, info.audio_codec) == (20, 42, 30, None)


def test_ffmpeg_failure_gives_one_line_error_and_no_output(tmp_path):
    bogus = tmp_path / "not_audio.wav"
    bogus.write_bytes(b"this is not a wav file" * 50)
    writer = VideoWriter(tmp_path / "bad.mp4", fps=25, audio=bogus)
    writer.write(np.stack([_frame(i) for i in range(5)]))
    with pytest.raises(VideoEncodeError) as err:  # a RuntimeError, and a user error the CLI prints in one line
        writer.close()
    assert isinstance(err.value, RuntimeError) and isinstance(err.value, UserError)
    message = str(err.value)
    assert "\n" not in message and "ffmpeg" in message and "not_audio.wav" in message
    assert "Invalid data" in message  # ffmpeg's own last stderr line
    assert list(tmp_path.iterdir()) == [bogus]


def test_writer_argument_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        VideoWriter(tmp_path / "x.mp4", fps=25, audio=tmp_path / "missing.wav")
    with pytest.raises(ValueError, match="fps"):
        VideoWriter(tmp_path / "x.mp4", fps=0)
    with pytest.raises(ValueError, match="no frames"):
        VideoWriter(tmp_path / "x.mp4", fps=25).close()
    writer = VideoWriter(tmp_path / "x.mp4", fps=25)
    writer.write(_frame(0))
    with pytest.raises(ValueError, match="differs"):
        writer.write(_frame(1, 32, 32))
    writer.abort()
    with pytest.raises(ValueError, match="shape"):
        VideoWriter(tmp_path / "y.mp4", fps=25).write(np.zeros((4, 4), np.uint8))
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(tmp_path / "z.mp4", fps=25) as w:
        w.write(_frame(0))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        probe_video(tmp_path / "nothing.mp4")
