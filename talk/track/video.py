"""Reading talking videos for tracking: frames streamed from ffmpeg, the speech track as 16 kHz mono.

    from talk.track.video import open_video
    video = open_video("talk.mp4")             # checks the file: a video stream, frames, an audio track
    for frames in video.chunks(64):            # uint8 [N, H, W, 3], N <= 64, in display order
        ...
    wav = video.audio(16000)                   # float32 [S] mono

Frames come from the ffmpeg binary of imageio-ffmpeg as raw RGB through a pipe, a chunk at a time, so memory does
not grow with the video's length. Every problem with the file (missing, not a video, no audio track, no frames)
is a :class:`VideoReadError` naming the file and what to do.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from render.ffmpeg_bin import ffmpeg_exe, last_line
from render.probe import VideoInfo, probe_video
from talk.errors import UserError

__all__ = ["TalkingVideo", "VideoReadError", "open_video"]


class VideoReadError(UserError, ValueError):
    """A video cannot be tracked: missing, unreadable, without frames or without an audio track."""


@dataclass(frozen=True)
class TalkingVideo:
    """A checked video file: its path and what :func:`render.probe_video` found.

    Attributes:
        path: The video file.
        info: Codecs, size, frame rate, frame count and audio length.
    """

    path: Path
    info: VideoInfo

    @property
    def fps(self) -> float:
        return self.info.fps

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the frames."""
        return self.info.height, self.info.width

    def chunks(self, size: int = 64) -> Iterator[np.ndarray]:
        """The frames in display order, ``size`` at a time (the last chunk may be shorter): uint8 [N, H, W, 3]."""
        h, w = self.size
        frame_bytes = h * w * 3
        cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(self.path), "-map", "0:v:0"]
        cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-fps_mode", "passthrough", "-"]
        with tempfile.TemporaryFile() as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
            assert proc.stdout is not None
            completed = False
            try:
                while True:
                    data = proc.stdout.read(frame_bytes * size)
                    n = len(data) // frame_bytes
                    if n:
                        yield np.frombuffer(data[: n * frame_bytes], np.uint8).reshape(n, h, w, 3).copy()
                    if len(data) < frame_bytes * size:
                        break
                completed = True
            finally:
                proc.stdout.close()
                if not completed:  # the caller stopped early (or failed): stop decoding
                    proc.kill()
                code = proc.wait()
            if code != 0:
                raise VideoReadError(f"{self.path}: ffmpeg could not decode the frames ({last_line(log)}).")

    def audio(self, sample_rate: int = 16000) -> np.ndarray:
        """The first audio track as mono float32 at ``sample_rate`` (ffmpeg's downmix and resampling)."""
        from audio.io import load_audio

        try:
            return load_audio(self.path, sample_rate)
        except UserError as exc:
            raise VideoReadError(
                f"{self.path}: cannot read the audio track ({str(exc).splitlines()[0]})."
            ) from None


def open_video(path: str | Path) -> TalkingVideo:
    """Check that ``path`` is a readable video with frames and an audio track.

    Raises:
        VideoReadError: the file is missing, a directory, not a video ffmpeg can read, has no frames, or has no
            audio track (tracking writes the speech beside the motion, so a silent video cannot become training
            data).
    """
    path = Path(path)
    if path.is_dir():
        raise VideoReadError(
            f"{path} is a directory; pass video files (or the folder alone, as `talk track DIR`)."
        )
    if not path.is_file():
        raise VideoReadError(f"{path} does not exist; pass an existing video file.")
    try:
        info = probe_video(path)
    except RuntimeError as exc:
        message = str(exc).splitlines()[0]
        raise VideoReadError(f"{path} is not a readable video ({message}).") from None
    if info.n_frames < 1:
        raise VideoReadError(f"{path} has no video frames.")
    if info.audio_codec is None or not info.audio_duration:
        raise VideoReadError(
            f"{path} has no audio track; talk track needs the speech of the video (mux it in with ffmpeg)."
        )
    return TalkingVideo(path, info)
