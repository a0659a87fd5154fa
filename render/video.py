"""Frames + audio -> H.264/AAC mp4 through ffmpeg, streamed.

The ffmpeg binary is the one shipped by ``imageio-ffmpeg`` (:mod:`render.ffmpeg_bin`); commands are built with
``ffmpeg-python``. :func:`probe_video` and :class:`VideoInfo` live in :mod:`render.probe` and are re-exported
here.

:class:`VideoWriter` works in two steps so that the streams agree exactly:

1. frames are piped as raw ``rgb24`` to ``libx264`` (``yuv420p``) as they arrive, into a hidden temporary
   file next to the target; nothing but the current batch is held in memory;
2. on :meth:`VideoWriter.close` the number of frames N is known, and the audio is muxed in with the video
   stream copied: ``apad=whole_dur=N/fps,atrim=duration=N/fps`` pads the audio with silence when it is shorter
   than the video and trims it when it is longer. Both streams then last N/fps (AAC priming and the last partial
   AAC frame are handled by the mp4 edit list). Without audio, step 2 is skipped.

When the caller knows N in advance (``frames=N``, as ``talk animate`` does), both steps are one ffmpeg run: the
audio goes through the same filters while the frames are encoded, which saves a second process and pass.

The finished file is flushed to disk and moved into place atomically (:mod:`talk.files`), so a crashed or
aborted run never leaves a truncated ``path``. ffmpeg's stderr goes to a temporary file (not a pipe), so a long
encode can never block on a full stderr pipe; on failure a one-line :class:`VideoEncodeError` (a ``RuntimeError``
and a user error that the CLI prints in one line) quotes its last line.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

import ffmpeg
import numpy as np

from render.ffmpeg_bin import ffmpeg_exe, last_line
from render.probe import VideoInfo, probe_video
from talk.errors import UserError
from talk.files import commit_temp, temp_beside

if TYPE_CHECKING:  # torch-free at run time: the render process of render.worker writes videos without torch
    from torch import Tensor

__all__ = ["VideoWriter", "VideoEncodeError", "VideoInfo", "probe_video", "ffmpeg_exe"]


class VideoEncodeError(UserError, RuntimeError):
    """ffmpeg could not write the video (a full disk, an unwritable folder, audio it cannot read); the message is
    one line ending with ffmpeg's own last line."""

_X264_PRESETS = tuple("ultrafast superfast veryfast faster fast medium slow slower veryslow placebo".split())


def _rate(fps: float) -> str:
    """fps as an exact ffmpeg rational, e.g. 29.97 -> '30000/1001'."""
    frac = _fraction(fps)
    return f"{frac.numerator}/{frac.denominator}"


def _fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def _to_uint8_frames(frames: np.ndarray | Tensor) -> np.ndarray:
    """``[H,W,C]`` or ``[B,H,W,C]`` (C = 3, or 4 whose alpha is dropped), uint8 or float in [0,1] -> uint8."""
    if hasattr(frames, "detach"):  # a torch tensor
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
        frames: the number of frames that will be written, when known: the audio is then encoded in the same
            ffmpeg run (see the module docstring), and closing after another number of frames is an error.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        audio: str | Path | None = None,
        crf: int = 18,
        preset: str = "veryfast",
        frames: int | None = None,
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
        if frames is not None and int(frames) < 1:
            raise ValueError(f"VideoWriter: `frames` must be at least 1, got {frames}.")
        self.crf = int(crf)
        self.preset = preset
        self.frames = None if frames is None else int(frames)
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
        self._tmp = temp_beside(self.path, suffix=".video.mp4")  # creates the parent folders too
        self._size = (height, width)
        stream = ffmpeg.input(
            "pipe:",
            format="rawvideo",
            pix_fmt="rgb24",
            s=f"{width + width % 2}x{height + height % 2}",
            framerate=_rate(self.fps),
        )
        streams, audio_args = [stream], {}
        if self.frames is not None and self.audio is not None:  # one pass: the duration is known now
            streams.append(self._audio_stream(self.frames))
            audio_args = {"acodec": "aac", "audio_bitrate": "160k"}
        stream = ffmpeg.output(
            *streams,
            str(self._tmp),
            vcodec="libx264",
            pix_fmt="yuv420p",
            crf=self.crf,
            preset=self.preset,
            movflags="+faststart",
            f="mp4",
            **audio_args,
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
            message = f"ffmpeg failed while encoding {self.path}: {last_line(self._log)}"
            self.abort()
            raise VideoEncodeError(message) from None
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
            message = f"ffmpeg failed while encoding {self.path}: {last_line(self._log)}"
            self.abort()
            raise VideoEncodeError(message)
        if self.frames is not None and self._n_frames != self.frames:
            self.abort()
            raise ValueError(
                f"VideoWriter.close: {self._n_frames} frames were written to {self.path}, not the {self.frames} "
                "announced with `frames`."
            )
        if self.audio is not None and self.frames is None:
            try:
                self._mux_audio()
            except RuntimeError:
                self.abort()
                raise
        try:
            commit_temp(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise VideoEncodeError(f"could not move the finished video into place at {self.path}: {exc}") from None
        self._tmp = None
        self._cleanup()
        return self.path

    def _audio_stream(self, frames: int):  # noqa: ANN202 (an ffmpeg-python stream)
        """The audio padded with silence or trimmed to exactly ``frames / fps`` seconds."""
        # The same rational rate as the encoder, so that the audio matches the video to the microsecond.
        duration = f"{float(frames / _fraction(self.fps)):.6f}"
        return (
            ffmpeg.input(str(self.audio))
            .audio.filter("apad", whole_dur=duration)
            .filter("atrim", duration=duration)
        )

    def _mux_audio(self) -> None:
        muxed = self._tmp.with_name(self._tmp.name.replace(".video.mp4", ".av.mp4"))
        stream = ffmpeg.output(
            ffmpeg.input(str(self._tmp)).video,
            self._audio_stream(self._n_frames),
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
                raise VideoEncodeError(
                    f"ffmpeg failed to mux audio {self.audio} into {self.path}: {last_line(log)}"
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
