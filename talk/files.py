"""Atomic file writes: readers see the old file or the whole new one, never a part.

Every writer goes through a hidden temporary file in the destination's folder (so the final rename never
crosses a file system), flushes it to disk with ``fsync`` and moves it into place with ``os.replace``, which is
atomic on POSIX and Windows. A failure or an interrupt (Ctrl-C, pre-emption) at any point leaves the
destination untouched and no temporary file behind. Standard library only, so the pure packages (``audio``,
``render``) may use it without depending on the rest of ``talk``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_write",
    "commit_temp",
    "temp_beside",
    "write_atomic",
    "write_bytes_atomic",
    "write_text_atomic",
]


def _create_beside(path: Path, suffix: str) -> tuple[int, Path]:
    """Create a new hidden file ``.<name>.<random><suffix>`` in the folder of ``path`` (created if missing).

    Unlike ``tempfile.mkstemp`` (mode 0600) the file gets the permissions ``open(path, "w")`` would give (0666
    less the umask), so the file that replaces ``path`` is as readable as a directly written one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{suffix}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(
        f"could not create a temporary file next to {path}; remove stale '.{path.name}.*' files."
    )


def temp_beside(path: str | Path, suffix: str = ".tmp") -> Path:
    """Create an empty hidden file ``.<name>.<random><suffix>`` next to ``path`` (creating its folder) and return
    its path; hand it to :func:`commit_temp` once written, or unlink it on failure. For writers that need a path
    rather than an open file (an ffmpeg subprocess); everything else uses :func:`atomic_write`."""
    fd, tmp = _create_beside(Path(path), suffix)
    os.close(fd)
    return tmp


def commit_temp(tmp: str | Path, path: str | Path) -> Path:
    """Flush the finished temporary file ``tmp`` to disk and move it onto ``path`` atomically; returns ``path``."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return Path(path)


@contextmanager
def atomic_write(
    path: str | Path, mode: str = "wb", encoding: str | None = None, suffix: str = ".tmp"
) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` for writing; on a clean exit it replaces ``path`` atomically.

    The folder of ``path`` is created if missing. Leaving the block with an exception removes the temporary
    file and leaves ``path`` as it was.

    Args:
        path: Destination file.
        mode: ``"wb"`` (bytes) or ``"w"`` (text).
        encoding: Text encoding for ``mode="w"`` (None = the locale's, as ``open``); must be None for bytes.
        suffix: Ending of the temporary file's name (``.<name>.<random><suffix>``), for writers whose readers or
            clean-up globs must recognise in-progress files.

    Yields:
        The open temporary file.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}.")
    path = Path(path)
    fd, tmp = _create_beside(path, suffix)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], object], suffix: str = ".tmp") -> Path:
    """Call ``write(f)`` on a binary file that atomically becomes ``path`` (``lambda f: np.save(f, a)``,
    ``lambda f: torch.save(obj, f)``); returns ``path``. ``suffix`` as in :func:`atomic_write`."""
    with atomic_write(path, "wb", suffix=suffix) as f:
        write(f)
    return Path(path)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Atomic ``Path(path).write_bytes(data)``; returns ``path``."""
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, encoding: str | None = None) -> Path:
    """Atomic ``Path(path).write_text(text, encoding)``; returns ``path``."""
    with atomic_write(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)
