"""Animate: a model, speech and a renderer -> an mp4 of the talking face with the speech.

``animate(model, audio, output, renderer)`` is the Python API (objects in); ``talk animate`` (``talk.cli.animate``)
builds the objects from a checkpoint and flags and calls it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from talk.errors import CheckpointError, UserError
from talk.metrics import lve_mm
from talk.pipeline.model import AudioToMotion

if TYPE_CHECKING:  # the renderer is imported where frames are drawn (numba start-up)
    from render.rasterizer import MeshRenderer


@dataclass(frozen=True)
class AnimationResult:
    """What :func:`animate` wrote."""

    path: Path
    frames: int
    fps: float
    seconds: float
    elapsed: float
    first_frame_latency: float | None = None  # streaming only: compute time from an audio chunk to its frames
    algorithmic_latency: float | None = None  # streaming only: audio a frame waits for after its own time
    meshes: Path | None = None
    lve_mm: float | None = None  # with ground truth: rooted max-lip-error over frames (ARTalk LVE-mm)


def check_output(output: str | Path, suffix: str = ".mp4") -> Path:
    """``output`` as a path that can be written, checked before any work is done (one-line errors)."""
    output = Path(output)
    if output.is_dir():
        raise UserError(
            f"output {output} is a directory; name a file such as {output / ('animation' + suffix)}."
        )
    parent = output.parent
    for ancestor in [parent, *parent.parents]:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise UserError(f"output {output}: {ancestor} is a file, not a directory.")
            if not os.access(ancestor, os.W_OK):
                raise UserError(f"output {output}: cannot write in {ancestor}; choose a writable directory.")
            break
    return output


def animate(
    model: AudioToMotion,
    audio: str | Path,
    output: str | Path,
    renderer: MeshRenderer | None = None,
    subject: str | None = None,
    size: int = 512,
    view: str = "front",
    stream: bool = False,
    chunk_seconds: float = 0.2,
    ground_truth: Tensor | None = None,
    export_meshes: str | Path | None = None,
    mesh_format: str = "obj",
    overwrite: bool = False,
) -> AnimationResult:
    """Animates speech with ``model`` and writes an H.264/AAC mp4 with the speech.

    Frames are rendered one at a time and streamed to ffmpeg, so memory does not grow with the audio length
    (and one-frame batches are the renderer's fastest path on a CPU).

    Args:
        model: The audio-to-motion model (``Pipeline.from_checkpoint``).
        audio: Speech file (any format, rate and channel count that ``audio.load_audio`` reads); muxed into the
            video.
        output: Output ``.mp4``.
        renderer: Mesh renderer (default: ``render.TorchRasterizer()``); its background colour fills the frame.
        subject: Subject whose template and style drive the face (default: the first training subject).
        size: Frame height (and panel width) in pixels.
        view: ``front`` or ``three_quarter``.
        stream: Generate while the audio is fed in ``chunk_seconds`` pieces, rendering each frame as soon as it
            is decided (token models only); the result equals the offline animation.
        chunk_seconds: Audio per streamed chunk.
        ground_truth: Ground-truth vertices ``[T, V, 3]`` at the model's frame rate: the video then shows
            prediction | ground truth | error heat map, and the result carries the LVE-mm.
        export_meshes: Folder to also write the mesh sequence to (see ``render.export_meshes``).
        mesh_format: ``obj``, ``ply`` or ``npz``.
        overwrite: Replace existing exported meshes.
    """
    from audio.io import load_audio
    from render import TorchRasterizer, VideoWriter, fit_camera, to_uint8

    start = time.perf_counter()
    if size < 16 or size % 2:
        raise UserError(f"size {size} must be an even number of pixels, at least 16.")
    output = check_output(output)
    assets = model.require_assets()
    if assets.faces is None:
        raise CheckpointError(
            "this model has no mesh faces; retrain with data.face_model_path naming the FLAME file."
        )
    audio_path = Path(audio)
    if not audio_path.is_file():
        raise UserError(f"audio file {audio_path} not found.")
    wav = torch.from_numpy(load_audio(audio_path, sample_rate=assets.sample_rate))
    renderer = renderer or TorchRasterizer()
    background = getattr(renderer, "background", (1.0, 1.0, 1.0))
    faces = assets.faces
    streamer = None
    if stream:
        from talk.pipeline.streaming import Streamer

        streamer = Streamer(model, subject=subject, chunk_seconds=chunk_seconds)
        pieces: Iterator[Tensor] = streamer.stream_file(wav)
        # the whole sequence is not known in advance: frame the neutral face, with room for the open jaw
        camera = fit_camera(streamer.template, image_size=(size, size), view=view, margin=1.3)
    else:
        with torch.inference_mode():
            vertices = model.generate(wav, subject=subject).vertices[0].cpu()  # [T, V, 3]
        pieces = iter([vertices])
        camera = fit_camera(vertices, image_size=(size, size), view=view)
    comparer = None
    if ground_truth is not None:
        from render.compare import ComparisonRenderer

        comparer = ComparisonRenderer(renderer, panel_size=(size, size), view=view, background=background)
        camera = comparer.fit_camera(ground_truth)
    output.parent.mkdir(parents=True, exist_ok=True)
    done: list[Tensor] = []
    t = 0  # index of the frame being written
    with VideoWriter(output, fps=assets.fps, audio=audio_path) as writer:
        for piece in pieces:
            piece = piece.cpu()
            for i in range(piece.shape[0]):
                frame = piece[i : i + 1]
                if comparer is not None:
                    truth = ground_truth[min(t, ground_truth.shape[0] - 1)][None]
                    writer.write(comparer.compare(frame, truth, faces, camera, caption=subject or ""))
                else:
                    writer.write(to_uint8(renderer.render(frame, faces, camera), background))
                t += 1
            done.append(piece)
    vertices = torch.cat(done)
    frames = int(vertices.shape[0])
    meshes = None
    if export_meshes is not None:
        from render.export import export_meshes as write_meshes

        write_meshes(vertices, faces, export_meshes, fmt=mesh_format, fps=assets.fps, overwrite=overwrite)
        meshes = Path(export_meshes)
    error = None
    if ground_truth is not None:
        n = min(frames, ground_truth.shape[0])
        lips = None if assets.regions is None else assets.regions.get("lips")
        error = lve_mm(vertices[:n], ground_truth[:n], lips)
    return AnimationResult(
        output,
        frames,
        assets.fps,
        frames / assets.fps,
        time.perf_counter() - start,
        first_frame_latency=streamer.stats.first_frame_latency if streamer else None,
        algorithmic_latency=streamer.latency_seconds() if streamer else None,
        meshes=meshes,
        lve_mm=error,
    )
