"""A render process: frames are rasterized, shaded and encoded in a second Python process that never imports torch.

Why: a command-line run of ``talk animate`` pays two start-ups one after the other, torch's import (2-3.5 s on a
small machine) and numba's (about 1.2 s to load the cached kernels: numba builds its type registries and imports
scipy.linalg). :meth:`RenderWorker.start` launches ``python -m render.worker`` before the caller imports torch;
the worker loads and warms its kernel (:func:`render.raster_core.warm_up`) on another core while the caller
imports torch, loads the model and generates. The caller then projects each frame in torch
(:meth:`render.rasterizer.TorchRasterizer.project`, a fraction of a millisecond) and sends the projected vertices
and normals; the worker draws them with :func:`render.raster_core.draw_uint8`, as
:meth:`~render.rasterizer.TorchRasterizer.render_uint8` does (so the frames are the same, bit for bit) and streams them into a :class:`render.video.VideoWriter`.

Protocol (stdin of the worker; every message is a 4-byte tag, an 8-byte little-endian length and the payload):

* ``OPEN``: JSON ``{output, fps, audio, shading, cull_backfaces, frames, image_size, center, orthographic,
  num_vertices, crf, preset}``, followed by ``FACE``: the ``[F,3]`` int64 faces;
* ``DRAW``: ``B`` frames: focal lengths ``[B]`` float64, ``uvz`` ``[B,V,3]`` float64, normals ``[B,V,3]``
  float32;
* ``DONE``: the video is finished (muxed and moved into place); the worker answers ``ok <frames>`` on stdout.

End of input without ``DONE`` aborts the video (nothing is left on disk) and ends the worker. A failure is
answered ``error <message>`` on stdout, and the worker exits.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, BinaryIO

from talk.errors import UserError  # imports nothing: the worker stays torch-free

if TYPE_CHECKING:
    import numpy as np

    from render.raster_core import Projected, Shading

# numpy and render.raster_core are imported where they are used, not here: importing this module and starting
# the worker cost the caller a few milliseconds, so the worker starts before anything slow is imported.

__all__ = ["RenderWorker", "WorkerVideo", "RenderProcessError"]

_HEADER = struct.Struct("<4sQ")


class RenderProcessError(UserError, RuntimeError):
    """The render process failed (ffmpeg could not write the video, the disk is full, ...); the message is its own
    one-line account, which the CLI prints as it is."""


def _send(stream: IO[bytes], tag: bytes, *payload: bytes) -> None:
    stream.write(_HEADER.pack(tag, sum(len(p) for p in payload)))
    for part in payload:
        stream.write(part)


class RenderWorker:
    """The caller's handle on a render process (see the module docstring). Start it as early as possible.

    Use :meth:`video` for each output, and :meth:`close` (or a ``with`` block) when done.
    """

    def __init__(self, process: subprocess.Popen, log: IO[bytes]) -> None:
        self._process = process
        self._log = log
        self._closed = False

    @classmethod
    def start(cls) -> RenderWorker:
        """Launches ``python -m render.worker``; it warms numba's kernels at once, in parallel with the caller."""
        import tempfile

        root = str(Path(__file__).resolve().parents[1])  # the folder that holds the `render` package
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        log = tempfile.TemporaryFile(prefix="talk-render-")  # stderr: a file never blocks the worker
        process = subprocess.Popen(
            [sys.executable, "-m", "render.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
        )
        return cls(process, log)

    def video(
        self,
        output: str | Path,
        fps: float,
        faces: np.ndarray,
        shading: Shading,
        audio: str | Path | None = None,
        cull_backfaces: bool = False,
        frames: int | None = None,
        crf: int = 18,
        preset: str = "veryfast",
    ) -> WorkerVideo:
        """A video the worker draws and encodes (arguments as :class:`render.video.VideoWriter` and
        :class:`render.rasterizer.TorchRasterizer` take them); send it frames with :meth:`WorkerVideo.write`."""
        import numpy as np

        settings = {
            "output": os.path.abspath(output),  # the worker shares the working directory, but to be sure
            "fps": float(fps),
            "audio": None if audio is None else os.path.abspath(audio),
            "shading": asdict(shading),
            "cull_backfaces": bool(cull_backfaces),
            "frames": None if frames is None else int(frames),
            "crf": int(crf),
            "preset": preset,
        }
        return WorkerVideo(self, settings, np.ascontiguousarray(faces, np.int64))

    def close(self) -> None:
        """Ends the worker (an unfinished video is aborted and leaves nothing on disk). A video whose ``with`` block
        raises ends its worker this way too; start another worker for the next video."""
        self._closed = True
        if self._process.stdin and not self._process.stdin.closed:
            try:
                self._process.stdin.close()
            except OSError:
                pass
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout:
            self._process.stdout.close()
        self._log.close()

    def __enter__(self) -> RenderWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, tag: bytes, *payload: bytes) -> None:
        if self._closed:
            raise RenderProcessError(
                "this render process was closed (a video of it failed, or close() was called); start another with "
                "RenderWorker.start()."
            )
        try:
            _send(self._process.stdin, tag, *payload)
        except (BrokenPipeError, ValueError):  # the worker ended: say why
            raise self._failure() from None

    def _answer(self) -> str:
        try:
            self._process.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise self._failure() from None
        line = self._process.stdout.readline().decode(errors="replace").strip()
        if not line.startswith("ok"):
            raise self._failure(line)
        return line

    def _failure(self, line: str = "") -> RenderProcessError:
        if not line:
            line = self._process.stdout.readline().decode(errors="replace").strip()
        if line.startswith("error "):
            return RenderProcessError(line[len("error ") :])
        self._process.wait()
        self._log.seek(0)
        lines = [ln for ln in self._log.read().decode(errors="replace").splitlines() if ln.strip()]
        detail = lines[-1].strip() if lines else f"exit status {self._process.returncode}"
        return RenderProcessError(f"the render process ended unexpectedly ({detail}).")


class WorkerVideo:
    """One video being drawn by a :class:`RenderWorker`; a context manager whose clean exit finishes the video
    (and raises :class:`RenderProcessError` if the worker could not), while an exception aborts it."""

    def __init__(self, worker: RenderWorker, settings: dict, faces: np.ndarray) -> None:
        self.worker = worker
        self.settings = settings
        self.faces = faces
        self.frames = 0
        self._opened: tuple | None = (
            None  # (image_size, center, orthographic, num_vertices) of the first frame
        )

    def write(self, projected: Projected) -> None:
        """Draw and encode a batch of projected frames (:meth:`render.rasterizer.TorchRasterizer.project`)."""
        import numpy as np

        key = (tuple(projected.image_size), tuple(projected.center), bool(projected.orthographic))
        key += (int(projected.uvz.shape[1]),)
        if self._opened is None:
            names = ("image_size", "center", "orthographic", "num_vertices")
            header = json.dumps({**self.settings, **dict(zip(names, key, strict=True))}).encode()
            self.worker._send(b"OPEN", header)
            self.worker._send(b"FACE", self.faces.tobytes())
            self._opened = key
        elif key != self._opened:
            raise ValueError("WorkerVideo.write: every frame of a video needs the same camera size and mesh.")
        focal = np.ascontiguousarray(np.broadcast_to(projected.focal, projected.uvz.shape[:1]), np.float64)
        uvz = np.ascontiguousarray(projected.uvz, np.float64)
        normals = np.ascontiguousarray(projected.normals, np.float32)
        self.worker._send(b"DRAW", focal.tobytes(), uvz.tobytes(), normals.tobytes())
        self.frames += int(uvz.shape[0])

    def __enter__(self) -> WorkerVideo:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is not None:  # abort: the worker sees the end of its input and removes the unfinished file
            self.worker.close()
            return
        if self._opened is None:
            raise ValueError("WorkerVideo: no frame was written.")
        self.worker._send(b"DONE")
        drawn = int(self.worker._answer().split()[1])
        if drawn != self.frames:  # the protocol lost frames: never expected, but never silent
            raise RenderProcessError(f"the render process encoded {drawn} frames of the {self.frames} sent.")


class _EndOfInput(Exception):
    """The caller closed the worker's input: an unfinished video is aborted."""


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise _EndOfInput
    return data


def _serve(stdin: BinaryIO, stdout: IO[bytes]) -> None:
    """The worker's loop (see the module docstring)."""
    from contextlib import ExitStack

    import numpy as np

    from render.raster_core import Projected, Shading, draw_uint8, warm_up
    from render.video import VideoWriter

    warm_up()
    with ExitStack() as stack:
        writer, settings, faces = None, {}, None
        while True:
            tag, size = _HEADER.unpack(_read_exactly(stdin, _HEADER.size))  # the end raises: the video aborts
            payload = _read_exactly(stdin, size)
            if tag == b"OPEN":
                settings = json.loads(payload)
                settings["shading"] = Shading.exactly(settings["shading"])
                writer = stack.enter_context(
                    VideoWriter(
                        settings["output"],
                        settings["fps"],
                        settings["audio"],
                        crf=settings["crf"],
                        preset=settings["preset"],
                        frames=settings["frames"],
                    )
                )
            elif tag == b"FACE":
                faces = np.frombuffer(payload, np.int64).reshape(-1, 3)
            elif tag == b"DRAW":
                v = settings["num_vertices"]
                n = size // (8 + v * 3 * 12)
                focal = np.frombuffer(payload, np.float64, n)
                uvz = np.frombuffer(payload, np.float64, n * v * 3, 8 * n).reshape(n, v, 3)
                normals = np.frombuffer(payload, np.float32, n * v * 3, 8 * n * (1 + v * 3)).reshape(n, v, 3)
                for i in range(n):  # one frame at a time: a one-frame z-buffer stays in cache
                    frame = Projected(
                        uvz[i : i + 1], normals[i : i + 1], focal[i : i + 1], tuple(settings["center"]),
                        tuple(settings["image_size"]), settings["orthographic"],
                    )  # fmt: skip
                    writer.write(draw_uint8(frame, faces, settings["shading"], None, settings["cull_backfaces"]))
            elif tag == b"DONE":
                frames = writer.n_frames
                stack.close()  # finishes the video: mux, flush, move into place
                writer = None
                stdout.write(f"ok {frames}\n".encode())
                stdout.flush()
            else:
                raise ValueError(f"unknown message {tag!r}")


def main() -> None:
    """``python -m render.worker``: serve one caller on stdin/stdout."""
    try:
        _serve(sys.stdin.buffer, sys.stdout.buffer)
    except _EndOfInput:
        # Nothing is left to flush (an unfinished video was aborted on the way out): skip the interpreter's
        # teardown of numba's threads and modules, which the caller would otherwise wait for (~0.3 s).
        sys.stdout.flush()
        os._exit(0)
    except Exception as err:  # noqa: BLE001 (every failure is told to the caller in one line)
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        sys.stdout.buffer.write(f"error {message}\n".encode())
        sys.stdout.buffer.flush()
        sys.exit(1)


if __name__ == "__main__":
    main()
