"""Animate: a model, speech and a renderer -> an mp4 of the talking face with the speech.

``animate(model, audio, output, renderer)`` is the Python API (objects in); ``talk animate`` (``talk.cli.animate``)
builds the objects from a checkpoint and flags and calls it.

Memory stays bounded however long the speech is: vertices are generated in pieces
(:meth:`AudioToMotion.generate_pieces`, or the :class:`~talk.pipeline.streaming.Streamer`), rendered a frame at a
time into the video, written to the exported meshes as they come, and compared with the ground truth frame by
frame. The offline camera frames the whole sequence, so offline animation first generates every piece into an
unnamed temporary file beside the output (``T * V * 12`` bytes, on disk) while :class:`Framing` keeps the few
points the camera depends on, then renders from that file.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from talk.errors import CheckpointError, UserError
from talk.metrics import lip_max_sq_error, rooted_mm
from talk.pipeline.model import AudioToMotion

if TYPE_CHECKING:  # the renderer is imported where frames are drawn (numba start-up)
    from motion.idle import IdleHead
    from render.camera import Camera
    from render.rasterizer import MeshRenderer
    from render.worker import RenderWorker
    from talk.pipeline.assets import Assets
    from talk.pipeline.blendshapes import ArkitWeights, GeneratedWeights


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


def check_size(size: int) -> None:
    """The frame size must be even (H.264's 4:2:0) and at least 16 pixels (one-line error)."""
    if size < 16 or size % 2:
        raise UserError(f"--size {size} must be an even number of pixels, at least 16.")


class Framing:
    """The camera ``render.fit_camera`` gives a whole sequence, computed from its pieces in bounded memory.

    ``fit_camera`` depends on a sequence through few of its points: the bounds in camera axes, and for the
    distance the points that maximise ``z + a * |x - cx|`` or ``z + b * |y - cy|`` (a, b from the margin and field
    of view), i.e. one of four linear forms: with the six signed axes (the bounds), ten forms in all. Each piece
    keeps only the points within 10 micrometres (relative to the form's size) of a maximum of one of those ten forms, merged with those kept so far, so that the candidates
    stay a handful whatever the length; ``fit_camera`` on them equals ``fit_camera`` on every frame.

    Args:
        size: ``(H, W)`` of the image.
        view: ``front`` or ``three_quarter``.
        margin: As in ``fit_camera`` (its default).
        fov_deg: As in ``fit_camera`` (its default).
    """

    def __init__(self, size: tuple[int, int], view: str, margin: float = 1.15, fov_deg: float = 20.0) -> None:
        self.size, self.view, self.margin, self.fov_deg = size, view, margin, fov_deg
        self.points: np.ndarray | None = None  # candidate points [n, 3] (float32)
        self._rotation: np.ndarray | None = None
        tan_y = np.tan(np.radians(fov_deg) / 2.0)
        self._slopes = (margin / (tan_y * size[1] / size[0]), margin / tan_y)

    def add(self, vertices: Tensor, frames_per_step: int = 16) -> None:
        """Take frames ``[m, V, 3]`` into account."""
        from render.camera import fit_camera

        vertices = vertices.detach().cpu()
        if (
            self._rotation is None
        ):  # the view's rotation (the float32 of fit_camera's; it only selects points)
            camera = fit_camera(vertices[0], image_size=self.size, view=self.view, fov_deg=self.fov_deg)
            self._rotation = camera.R[0].double().numpy()
        # numpy, not torch: ops of this size would start torch's thread pool, which in a fresh process (talk
        # animate) costs more than the work itself
        frames = vertices.float().numpy()
        r = self._rotation
        a, b = self._slopes
        for i in range(0, frames.shape[0], frames_per_step):
            points = frames[i : i + frames_per_step].reshape(-1, 3)
            if self.points is not None:
                points = np.concatenate([self.points, points])
            p = points.astype(np.float64)
            x, y, z = (p[:, 0] * r[k, 0] + p[:, 1] * r[k, 1] + p[:, 2] * r[k, 2] for k in range(3))
            keep = np.zeros(len(p), bool)
            for form in (x, -x, y, -y, z, -z, z + a * x, z - a * x, z + b * y, z - b * y):
                top = form.max()
                keep |= form >= top - 1e-5 * (1.0 + abs(top))
            self.points = np.unique(points[keep], axis=0)

    def camera(self) -> Camera:
        """The camera of every frame added (``fit_camera(all_frames, size, view=view)``)."""
        from render.camera import fit_camera

        if self.points is None:
            raise ValueError("Framing.camera called before any frame was added.")
        return fit_camera(
            torch.from_numpy(self.points),
            image_size=self.size,
            view=self.view,
            margin=self.margin,
            fov_deg=self.fov_deg,
        )


class FrameFile:
    """Frames ``[m, V, 3]`` (float32) written to an unnamed temporary file in ``folder`` and read back in order:
    a whole animation kept on disk instead of in memory. A context manager; the file vanishes when closed."""

    def __init__(self, folder: str | Path) -> None:
        self.file = tempfile.TemporaryFile(dir=folder, prefix=".frames.", suffix=".tmp")
        self.frames = 0
        self.num_vertices: int | None = None

    def write(self, vertices: Tensor) -> None:
        self.num_vertices = int(vertices.shape[1])
        self.file.write(vertices.detach().cpu().float().contiguous().numpy().tobytes())
        self.frames += int(vertices.shape[0])

    def read(self, frames_per_read: int = 32) -> Iterator[Tensor]:
        """The frames written, ``frames_per_read`` at a time."""
        self.file.flush()
        self.file.seek(0)
        for start in range(0, self.frames, frames_per_read):
            block = np.empty((min(frames_per_read, self.frames - start), self.num_vertices, 3), np.float32)
            self.file.readinto(memoryview(block).cast("B"))
            yield torch.from_numpy(block)

    def __enter__(self) -> FrameFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def posed_pieces(
    pieces: Iterator[Tensor],
    arkit: ArkitWeights | GeneratedWeights | None,
    settings: IdleHead | None,
    seed: int,
    wav: Tensor,
    assets: Assets,
    template: Tensor,
) -> Iterator[Tensor]:
    """``pieces`` handed face-centred to the ARKit weights, then moved by the idle head pose (when asked for) about
    the neck of ``template`` ``[V, 3]``."""
    pose = pivot = None
    if settings is not None:
        from motion.idle import head_pose, neck_pivot, speech_activity

        n = assets.num_frames(int(wav.shape[-1]))
        pose = head_pose(
            n, assets.fps, seed, speech_activity(wav, assets.sample_rate, n, assets.fps), settings
        )
        pivot = neck_pivot(template.float())
    t = 0
    for piece in pieces:
        if arkit is not None:
            arkit.add(piece)
        if pose is not None:
            from motion.idle import apply_head_pose

            piece = apply_head_pose(piece, pose[t : t + piece.shape[0]], pivot)
        t += piece.shape[0]
        yield piece


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
    piece_seconds: float = 10.0,
    worker: RenderWorker | None = None,
    export_blendshapes: str | Path | None = None,
    head_motion: IdleHead | None = None,
    head_seed: int = 0,
) -> AnimationResult:
    """Animates speech with ``model`` and writes an H.264/AAC mp4 with the speech.

    Vertices are generated in pieces and frames rendered one at a time and streamed to ffmpeg, so memory does
    not grow with the audio length (and one-frame batches are the renderer's fastest path on a CPU). The vertices
    are those of ``model.generate`` on the whole audio (exactly when it fits in one piece; see
    :meth:`AudioToMotion.generate_pieces`), and the video is the same as if they had been generated at once.

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
        piece_seconds: Audio generated at a time offline (memory against per-piece overhead).
        worker: A render process (:meth:`render.worker.RenderWorker.start`, started before torch was imported)
            that draws and encodes the frames of a :class:`~render.rasterizer.TorchRasterizer` while this process
            projects them: the same video, without numba's start-up here. Not used with ``ground_truth``.
        export_blendshapes: Also write the animation's ARKit-52 weights (:mod:`talk.pipeline.blendshapes`: a model
            of ARKit weights writes its own, others are solved on the procedural ARKit rig): ``.csv`` (Live Link
            Face) or ``.json``. Face-centred: the idle head motion is not in them.
        head_motion: Move the head with the idle head-motion model (:mod:`motion.idle`: seeded drift that grows
            while speaking, nods at speech onsets; causal, so streaming draws the same); None keeps it still.
        head_seed: Seed of the head motion.
    """
    from audio.io import load_audio
    from render import TorchRasterizer, VideoWriter, fit_camera

    start = time.perf_counter()
    check_size(size)
    output = check_output(output)
    arkit = None
    if export_blendshapes is not None:
        from talk.pipeline.blendshapes import check_weights_path

        export_blendshapes = check_weights_path(check_output(export_blendshapes, ".csv"))
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
    camera = None
    if export_blendshapes is not None:
        from talk.pipeline.blendshapes import weight_collector

        arkit = weight_collector(model, assets.template(subject))
    on_params = None if arkit is None else arkit.add_params
    if head_motion is not None and ground_truth is not None:
        raise UserError("--head-motion moves the head, which the ground truth does not; drop one of the two.")
    if stream:
        from talk.pipeline.streaming import Streamer

        streamer = Streamer(model, subject=subject, chunk_seconds=chunk_seconds)
        streamer.on_params = on_params
        pieces: Iterator[Tensor] = streamer.stream_file(wav)
        # the whole sequence is not known in advance: frame the neutral face, with room for the open jaw
        camera = fit_camera(streamer.template, image_size=(size, size), view=view, margin=1.3)
    else:
        pieces = model.generate_pieces(wav, subject=subject, piece_seconds=piece_seconds, on_params=on_params)
    if arkit is not None or head_motion is not None:
        pieces = posed_pieces(pieces, arkit, head_motion, head_seed, wav, assets, assets.template(subject))
    comparer = None
    if ground_truth is not None:
        from render.compare import ComparisonRenderer

        comparer = ComparisonRenderer(renderer, panel_size=(size, size), view=view, background=background)
        camera = comparer.fit_camera(ground_truth)
    output.parent.mkdir(parents=True, exist_ok=True)
    lips = None if assets.regions is None else assets.regions.get("lips")
    lip_errors: list[Tensor] = []  # per frame: small
    t = 0  # index of the frame being written
    with ExitStack() as stack:
        meshes = frames_file = None
        if export_meshes is not None:  # checked (and a previous export removed) before anything is generated
            from render.export import MeshSequenceWriter

            meshes = stack.enter_context(
                MeshSequenceWriter(faces, export_meshes, mesh_format, fps=assets.fps, overwrite=overwrite)
            )
        if camera is None:  # the offline camera frames every frame: generate them all (to disk) first
            frames_file = stack.enter_context(FrameFile(output.parent))
            framing = Framing((size, size), view)
            for piece in pieces:
                framing.add(piece)
                frames_file.write(piece)
            camera = framing.camera()
            pieces = frames_file.read()
        # offline, the number of frames is known before the first is drawn: audio and video in one ffmpeg pass
        frames = None if frames_file is None else frames_file.frames or None
        remote = worker is not None and comparer is None and isinstance(renderer, TorchRasterizer)
        if remote:
            writer = worker.video(
                output,
                assets.fps,
                faces.numpy(),
                renderer.settings,
                audio_path,
                renderer.cull_backfaces,
                frames=frames,
            )
        else:
            writer = VideoWriter(output, fps=assets.fps, audio=audio_path, frames=frames)
        with writer:
            for piece in pieces:
                piece = piece.cpu()
                if remote:  # projected in one batch, drawn one frame at a time by the worker
                    writer.write(renderer.project(piece, faces, camera))
                else:
                    for i in range(piece.shape[0]):
                        frame = piece[i : i + 1]
                        if comparer is not None:
                            truth = ground_truth[min(t + i, ground_truth.shape[0] - 1)][None]
                            writer.write(comparer.compare(frame, truth, faces, camera, caption=subject or ""))
                        else:
                            writer.write(renderer.render_uint8(frame, faces, camera))
                if meshes is not None:
                    meshes.write(piece)
                if ground_truth is not None and t < ground_truth.shape[0]:
                    n = min(piece.shape[0], ground_truth.shape[0] - t)
                    ids = torch.arange(piece.shape[1]) if lips is None else torch.as_tensor(lips)
                    truth = ground_truth[t : t + n].double()
                    lip_errors.append(lip_max_sq_error(piece[:n].double(), truth, ids))
                t += piece.shape[0]
    if arkit is not None:
        from talk.pipeline.blendshapes import write_weights

        write_weights(export_blendshapes, arkit.weights(), assets.fps)
    error = None
    if ground_truth is not None:  # as talk.metrics.lve_mm on the whole sequence
        error = rooted_mm(float(torch.cat(lip_errors).mean())) if lip_errors else float("nan")
    return AnimationResult(
        output,
        t,
        assets.fps,
        t / assets.fps,
        time.perf_counter() - start,
        first_frame_latency=streamer.stats.first_frame_latency if streamer else None,
        algorithmic_latency=streamer.latency_seconds() if streamer else None,
        meshes=None if export_meshes is None else Path(export_meshes),
        lve_mm=error,
    )
