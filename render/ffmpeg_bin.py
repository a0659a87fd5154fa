"""The ffmpeg binary shipped by ``imageio-ffmpeg``, and a one-line summary of its stderr for error messages."""

from __future__ import annotations

from typing import IO

import imageio_ffmpeg

__all__ = ["ffmpeg_exe", "last_line"]


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def last_line(log: IO[bytes] | bytes) -> str:
    """ffmpeg's last stderr line, preceded by its first one when they differ (often the root cause)."""
    if not isinstance(log, bytes):
        log.flush()
        log.seek(0)
        log = log.read()
    lines = [ln.strip() for ln in log.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return "(ffmpeg printed nothing)"
    return lines[-1] if len(lines) == 1 else f"{lines[0]} [...] {lines[-1]}"
