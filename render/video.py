"""Frames + audio -> H.264/AAC mp4 through ffmpeg, streamed; and an ffprobe-free :func:`probe_video`.

The ffmpeg binary is the one shipped by ``imageio-ffmpeg``; commands are built with ``ffmpeg-python``.

:class:`VideoWriter` works in two steps so that the streams agree exactly:

1. frames are piped as raw ``rgb24`` to ``libx264`` (``yuv420p``) as they arrive, into a hidden temporary
   file next to the target; nothing but the current batch is held in memory;
2. on :meth:`VideoWriter.close` the number of frames N is known, and the audio is muxed in with the video
   stream copied: ``apad=whole_dur=N/fps,atrim=duration=N/fps`` pads the audio with silence when it is shorter
   than the video and trims it when it is longer. Both streams then last N/fps (AAC priming and the last partial
   AAC frame are handled by the mp4 edit list). Without audio, step 2 is skipped.

The finished file is moved into place atomically, so a crashed or aborted run never leaves a truncated
``path``. ffmpeg's stderr goes to a temporary file (not a pipe), so a long encode can never block on a full
stderr pipe; on failure a one-line ``RuntimeError`` quotes its last line.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import IO

import ffmpeg
import imageio_ffmpeg
import numpy as np
from torch import Tensor

__all__ = ["VideoWriter", "VideoInfo", "probe_video", "ffmpeg_exe"]


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def _last_line(log: IO[bytes] | bytes) -> str:
    """ffmpeg's last stderr line, preceded by its first one when they differ (often the root cause)."""
    if not isinstance(log, bytes):
        log.flush()
        log.seek(0)
        log = log.read()
    lines = [ln.strip() for ln in log.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return "(ffmpeg printed nothing)"
    return lines[-1] if len(lines) == 1 else f"{lines[0]} [...] {lines[-1]}"


_X264_PRESETS = tuple("ultrafast superfast veryfast faster fast medium slow slower veryslow placebo".split())


def _rate(fps: float) -> str:
    """fps as an exact ffmpeg rational, e.g. 29.97 -> '30000/1001'."""
    frac = _fraction(fps)
    return f"{frac.numerator}/{frac.denominator}"


def _fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def _to_uint8_frames(frames: np.ndarray | Tensor) -> np.ndarray:
    """``[H,W,C]`` or ``[B,H,W,C]`` (C = 3, or 4 whose alpha is dropped), uint8 or float in [0,1] -> uint8."""
    if isinstance(frames, Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4):
        raise ValueError(f"VideoWriter.write: frames must be [H,W,3] or [B,H,W,3], got shape {frames.shape}.")
    frames = frames[..., :3]
    if frames.dtype == np.uint8:
        return frames
    if np.issubdtype(frames.dtype, np.floating):
        return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise ValueError(f"VideoWriter.write: frames must be uint8 or float in [0,1], got dtype {frames.dtype}.")


class VideoWriter:
    """Stream frames into an H.264 mp4, optionally muxed with an audio file (see the module docstring).

    Use as a context manager; leaving the block with an exception aborts and leaves no output file.
    Odd frame sizes are padded to even ones (yuv420p needs them) by repeating the last row / column.

    Args:
        path: output ``.mp4`` path; parent directories are created.
        fps: video frame rate (e.g. 25 or 30); the video lasts exactly ``n_frames / fps``.
        audio: optional audio file (any format ffmpeg reads) muxed as AAC, padded or trimmed to the video.
        crf: libx264 constant rate factor, 0 (lossless) to 51; 18 is visually lossless.
        preset: libx264 speed preset (``ultrafast`` ... ``veryslow``).
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        audio: str | Path | None = None,
        crf: int = 18,
        preset: str = "veryfast",
    ) -> None:
        if not fps > 0:
            raise ValueError(f"VideoWriter: `fps` must be positive, got {fps}.")
        if not 0 <= int(crf) <= 51:
            raise ValueError(f"VideoWriter: `crf` must be in [0, 51], got {crf}.")
        self.path = Path(path)
        self.fps = float(fps)
        self.audio = Path(audio) if audio is not None else None
        if self.audio is not None and not self.audio.is_file():
            raise FileNotFoundError(
                f"VideoWriter: audio file {self.audio} does not exist; pass an existing file."
            )
        if preset not in _X264_PRESETS:
            raise ValueError(
                f"VideoWriter: `preset` must be one of {', '.join(_X264_PRESETS)}, got {preset!r}."
            )
        self.crf = int(crf)
        self.preset = preset
        self._proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None
        self._tmp: Path | None = None
        self._size: tuple[int, int] | None = None  # (H, W) of the input frames
        self._n_frames = 0
        self._closed = False

    @property
    def n_frames(self) -> int:
        """Number of frames written so far."""
        return self._n_frames

    def _start(self, height: int, width: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".video.mp4", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._size = (height, width)
        stream = ffmpeg.input(
            "pipe:",
            format="rawvideo",
            pix_fmt="rgb24",
            s=f"{width + width % 2}x{height + height % 2}",
            framerate=_rate(self.fps),
        )
        stream = ffmpeg.output(
            stream,
            str(self._tmp),
            vcodec="libx264",
            pix_fmt="yuv420p",
            crf=self.crf,
            preset=self.preset,
            movflags="+faststart",
            f="mp4",
        ).global_args("-hide_banner", "-nostats", "-loglevel", "error")
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            ffmpeg.compile(stream, cmd=ffmpeg_exe(), overwrite_output=True),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )

    def write(self, frames: np.ndarray | Tensor) -> None:
        """Append ``[H,W,3]`` or ``[B,H,W,3]`` frames (uint8, or float in [0,1]; RGBA alpha is dropped)."""
        if self._closed:
            raise ValueError(f"VideoWriter.write: {self.path} is already closed.")
        batch = _to_uint8_frames(frames)
        height, width = batch.shape[1:3]
        if self._proc is None:
            self._start(height, width)
        elif (height, width) != self._size:
            raise ValueError(
                f"VideoWriter.write: frame size {height}x{width} differs from the first frame's "
                f"{self._size[0]}x{self._size[1]} in {self.path}."
            )
        if height % 2 or width % 2:
            batch = np.pad(batch, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        try:
            self._proc.stdin.write(np.ascontiguousarray(batch).data)
        except (BrokenPipeError, OSError):
            self._proc.wait()
            message = f"ffmpeg failed while encoding {self.path}: {_last_line(self._log)}"
            self.abort()
            raise RuntimeError(message) from None
        self._n_frames += batch.shape[0]

    def extend(self, frames: Iterable[np.ndarray | Tensor]) -> None:
        """Write frames from an iterable (e.g. a generator), one item at a time as it is produced."""
        for frame in frames:
            self.write(frame)

    def close(self) -> Path:
        """Finish encoding, mux the audio, move the file into place and return its path."""
        if self._closed:
            return self.path
        if self._proc is None:
            self.abort()
            raise ValueError(f"VideoWriter.close: no frames were written to {self.path}.")
        try:
            self._proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        if self._proc.wait() != 0:
            message = f"ffmpeg failed while encoding {self.path}: {_last_line(self._log)}"
            self.abort()
            raise RuntimeError(message)
        if self.audio is not None:
            try:
                self._mux_audio()
            except RuntimeError:
                self.abort()
                raise
        os.replace(self._tmp, self.path)
        self._tmp = None
        self._cleanup()
        return self.path

    def _mux_audio(self) -> None:
        # The same rational rate as the encoder, so that the audio matches the video to the microsecond.
        duration = f"{float(self._n_frames / _fraction(self.fps)):.6f}"
        muxed = self._tmp.with_name(self._tmp.name.replace(".video.mp4", ".av.mp4"))
        audio = (
            ffmpeg.input(str(self.audio))
            .audio.filter("apad", whole_dur=duration)
            .filter("atrim", duration=duration)
        )
        stream = ffmpeg.output(
            ffmpeg.input(str(self._tmp)).video,
            audio,
            str(muxed),
            vcodec="copy",
            acodec="aac",
            audio_bitrate="160k",
            movflags="+faststart",
            f="mp4",
        ).global_args("-hide_banner", "-nostdin", "-nostats", "-loglevel", "error")
        with tempfile.TemporaryFile() as log:
            code = subprocess.run(
                ffmpeg.compile(stream, cmd=ffmpeg_exe(), overwrite_output=True),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            ).returncode
            if code != 0:
                muxed.unlink(missing_ok=True)
                raise RuntimeError(
                    f"ffmpeg failed to mux audio {self.audio} into {self.path}: {_last_line(log)}"
                )
        os.replace(muxed, self._tmp)

    def abort(self) -> None:
        """Stop ffmpeg and delete partial output; the writer is closed afterwards."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self._proc is not None and self._proc.stdin is not None and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        if self._log is not None:
            self._log.close()
            self._log = None
        self._closed = True

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # A writer dropped without close() must not leave an ffmpeg process or a hidden temp file behind.
        if not getattr(self, "_closed", True):
            self.abort()


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
            raise RuntimeError(f"ffmpeg failed to {what}: {_last_line(log)}")
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
        raise RuntimeError(f"ffmpeg found no video stream in {path}: {_last_line(text.encode())}")
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
            raise RuntimeError(f"ffmpeg failed to decode the audio of {path}: {_last_line(log)}")
    return n_bytes // 2
