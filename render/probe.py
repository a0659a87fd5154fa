"""An ffprobe-free :func:`probe_video`: codecs, size, frame rate, counted frames and decoded audio length."""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from render.ffmpeg_bin import ffmpeg_exe, last_line

__all__ = ["VideoInfo", "probe_video"]


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` found in a video file.

    Attributes:
        video_codec: e.g. ``"h264"``.
        audio_codec: e.g. ``"aac"``, None without an audio stream.
        width, height: frame size in pixels.
        fps: frame rate of the first video stream.
        n_frames: number of video packets (frames) in the first video stream, counted, not estimated.
        video_duration: ``n_frames / fps`` seconds (exact for constant frame rate video).
        audio_duration: decoded audio length in seconds (samples / sample rate), None without audio.
        audio_sample_rate: Hz, None without audio.
        duration: container duration in seconds (10 ms resolution), None when ffmpeg reports N/A.
    """

    video_codec: str
    audio_codec: str | None
    width: int
    height: int
    fps: float
    n_frames: int
    video_duration: float
    audio_duration: float | None
    audio_sample_rate: int | None
    duration: float | None


def _run(
    args: list[str], what: str, stdout: int | IO[bytes] = subprocess.DEVNULL
) -> subprocess.CompletedProcess:
    with tempfile.TemporaryFile() as log:
        proc = subprocess.run([ffmpeg_exe(), *args], stdin=subprocess.DEVNULL, stdout=stdout, stderr=log)
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg failed to {what}: {last_line(log)}")
    return proc


def _parse_fps(line: str) -> float | None:
    for pattern in (r"([\d.]+)(k?) fps", r"([\d.]+)(k?) tbr"):
        match = re.search(pattern, line)
        if match:
            return float(match.group(1)) * (1000.0 if match.group(2) else 1.0)
    return None


def probe_video(path: str | Path) -> VideoInfo:
    """Inspect a video file with ffmpeg alone (imageio-ffmpeg ships no ffprobe).

    Stream metadata come from ``ffmpeg -i``; frames are counted by stream-copying the video to the null muxer;
    the audio is decoded to PCM and its samples counted (so edit lists and padding are taken into account).

    Args:
        path: video file.

    Returns:
        A :class:`VideoInfo`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"probe_video: {path} does not exist.")
    with tempfile.TemporaryFile() as log:
        # Without an output ffmpeg exits with an error after printing the input description: that is expected.
        subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    streams = [ln for ln in text.splitlines() if re.match(r"\s*Stream #\d+:\d+", ln)]
    video = next((ln for ln in streams if ": Video: " in ln and "attached pic" not in ln), None)
    if video is None:
        raise RuntimeError(f"ffmpeg found no video stream in {path}: {last_line(text.encode())}")
    audio = next((ln for ln in streams if ": Audio: " in ln), None)

    video_codec = re.search(r": Video: (\w+)", video).group(1)
    size = re.search(r"[ ,](\d{1,5})x(\d{1,5})[ ,\[]", video)
    fps = _parse_fps(video)
    if size is None or fps is None:
        raise RuntimeError(f"probe_video: cannot parse size / fps of {path} from ffmpeg: {video.strip()}")
    duration_match = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    duration = None
    if duration_match:
        h, m, s = duration_match.groups()
        duration = int(h) * 3600 + int(m) * 60 + float(s)

    # Stream-copying to the null muxer counts packets without decoding; -progress prints "frame=N" lines.
    copy_to_null = [
        "-v",
        "error",
        "-nostdin",
        "-i",
        str(path),
        *"-map 0:v:0 -c copy -f null -progress pipe:1 -".split(),
    ]
    counted = _run(copy_to_null, f"count the frames of {path}", stdout=subprocess.PIPE)
    frames = re.findall(rb"^frame=\s*(\d+)", counted.stdout, flags=re.MULTILINE)
    if not frames:
        raise RuntimeError(f"probe_video: ffmpeg reported no frame count for {path}.")
    n_frames = int(frames[-1])

    audio_codec = audio_rate = audio_duration = None
    if audio is not None:
        audio_codec = re.search(r": Audio: (\w+)", audio).group(1)
        audio_rate = int(re.search(r"(\d+) Hz", audio).group(1))
        audio_duration = _decoded_samples(path, audio_rate) / audio_rate
    return VideoInfo(
        video_codec=video_codec,
        audio_codec=audio_codec,
        width=int(size.group(1)),
        height=int(size.group(2)),
        fps=fps,
        n_frames=n_frames,
        video_duration=n_frames / fps,
        audio_duration=audio_duration,
        audio_sample_rate=audio_rate,
        duration=duration,
    )


def _decoded_samples(path: Path, sample_rate: int) -> int:
    """Decode the first audio stream to mono 16-bit PCM and count the samples, reading in chunks."""
    args = [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0", "-ac", "1"]
    args += ["-ar", str(sample_rate), "-f", "s16le", "-"]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        n_bytes = 0
        while chunk := proc.stdout.read(1 << 20):
            n_bytes += len(chunk)
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed to decode the audio of {path}: {last_line(log)}")
    return n_bytes // 2
