"""The audio-to-video path: wav -> trained model -> vertices -> rendered frames -> mp4 with the audio."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from talk.checkpoints import load_model
from talk.errors import CheckpointError, TalkError


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


def animate(
    audio: str | Path,
    checkpoint: str | Path,
    output: str | Path,
    subject: str | None = None,
    size: int = 512,
    view: str = "front",
    device: str = "cpu",
    stream: bool = False,
    chunk_seconds: float = 0.2,
    export_meshes: str | Path | None = None,
    mesh_format: str = "obj",
    ground_truth: str | Path | None = None,
    ground_truth_fps: float | None = None,
    overwrite: bool = False,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    seed: int | None = None,
) -> AnimationResult:
    """Animates speech with a trained model and writes an H.264/AAC mp4.

    Frames are rendered one at a time and streamed to ffmpeg, so memory does not grow with the audio length
    (and one-frame batches are the renderer's fastest path on a CPU).

    Args:
        audio: Speech file (any format, rate and channel count that ``audio.load_audio`` reads).
        checkpoint: ``talk fit`` checkpoint.
        output: Output ``.mp4``.
        subject: Subject whose template and style drive the face (default: the first training subject).
        size: Frame height (and panel width) in pixels.
        view: ``front`` or ``three_quarter``.
        device: Torch device for the model.
        stream: Generate while the audio is fed in ``chunk_seconds`` pieces, rendering each frame as soon as it
            is decided (token models only); the result equals the offline animation (sampled decoding too: both
            draw from a generator seeded with the model's ``seed``).
        chunk_seconds: Audio per streamed chunk.
        export_meshes: Folder to also write the mesh sequence to (see ``render.export_meshes``).
        mesh_format: ``obj``, ``ply`` or ``npz``.
        ground_truth: Optional ``.npy`` of ground-truth vertices (``[T, V*3]`` or ``[T, V, 3]``, VOCASET
            layout): the video then shows prediction | ground truth | error heat map, with the LVE in a caption.
        ground_truth_fps: Frame rate of ``ground_truth`` (default: the model's); 60 fps VOCASET files are
            subsampled to the model's rate.
        overwrite: Replace existing exported meshes.
        background: RGB in [0, 1] behind the face.
        seed: Seed of sampled decoding for a token model that samples (None: the one stored in the checkpoint).
    """
    from audio.io import load_audio
    from render import TorchRasterizer, VideoWriter, fit_camera, to_uint8

    start = time.perf_counter()
    if size < 16 or size % 2:
        raise TalkError(f"--size {size} must be an even number of pixels, at least 16.")
    if len(background) != 3 or not all(0.0 <= float(c) <= 1.0 for c in background):
        raise TalkError(f"--background {background} must be three numbers in [0, 1], e.g. 1,1,1 for white.")
    audio_path = Path(audio)
    if not audio_path.is_file():
        raise TalkError(f"audio file {audio_path} not found.")
    model = load_model(checkpoint, device)
    if seed is not None and hasattr(model, "seed"):
        model.seed = seed
    wav = load_audio(audio_path, sample_rate=int(model.assets["sample_rate"]))
    faces = model.assets.get("faces")
    if faces is None:
        raise CheckpointError(
            f"{checkpoint} has no mesh faces; retrain with data.face_model_path pointing at the FLAME model file."
        )
    fps = float(model.fps)
    faces_t = torch.as_tensor(faces, dtype=torch.long)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    streamer = None
    if stream:
        from talk.pipeline.streaming import StreamingAnimator

        streamer = StreamingAnimator(model, subject=subject, chunk_seconds=chunk_seconds)
        pieces = streamer.stream_file(wav)
        # the whole sequence is not known in advance: frame the neutral face, with room for the open jaw
        camera = fit_camera(streamer.template, image_size=(size, size), view=view, margin=1.3)
    else:
        vertices = model.animate(torch.from_numpy(wav), subject=subject)  # [T, V, 3]
        pieces = iter([vertices])
        camera = fit_camera(vertices, image_size=(size, size), view=view)
    gt = None if ground_truth is None else _load_ground_truth(ground_truth, ground_truth_fps, fps, faces_t)
    renderer = TorchRasterizer()
    comparer = None
    if gt is not None:
        from render.compare import ComparisonRenderer

        comparer = ComparisonRenderer(panel_size=(size, size), view=view, background=background)
        camera = comparer.fit_camera(gt)
    done: list[torch.Tensor] = []
    t = 0  # index of the frame being written
    with VideoWriter(output, fps=fps, audio=audio_path) as writer:
        for piece in pieces:
            piece = piece.cpu()
            for i in range(piece.shape[0]):
                frame = piece[i : i + 1]
                if comparer is not None:
                    truth = gt[min(t, gt.shape[0] - 1)][None]
                    writer.write(comparer.compare(frame, truth, faces_t, camera, caption=subject or ""))
                else:
                    writer.write(to_uint8(renderer.render(frame, faces_t, camera), background))
                t += 1
            done.append(piece)
    vertices = torch.cat(done)
    frames_total = int(vertices.shape[0])
    meshes = None
    if export_meshes is not None:
        from render.export import export_meshes as write_meshes

        write_meshes(vertices, faces_t, export_meshes, fmt=mesh_format, fps=fps, overwrite=overwrite)
        meshes = Path(export_meshes)
    lve_mm = None
    if gt is not None:
        n = min(frames_total, gt.shape[0])
        lips = model.assets.get("regions", {}).get("lips")
        err = ((vertices[:n] - gt[:n]) ** 2).sum(-1)
        err = err[:, torch.as_tensor(lips)] if lips is not None else err
        lve_mm = float(err.max(dim=1).values.mean().sqrt()) * 1000.0
    return AnimationResult(
        output,
        frames_total,
        fps,
        frames_total / fps,
        time.perf_counter() - start,
        first_frame_latency=streamer.stats.first_frame_latency if streamer else None,
        algorithmic_latency=streamer.latency_seconds() if streamer else None,
        meshes=meshes,
        lve_mm=lve_mm,
    )


def _load_ground_truth(
    path: str | Path, source_fps: float | None, fps: float, faces: torch.Tensor
) -> torch.Tensor:
    """Ground-truth vertices ``[T, V, 3]`` at the model's frame rate from a VOCASET-layout ``.npy``."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise TalkError(f"ground-truth file {path} not found.")
    try:
        array = np.load(path, mmap_mode="r")
    except ValueError as err:
        raise TalkError(f"ground-truth file {path} is not a .npy array ({err}).") from None
    num_vertices = int(faces.max()) + 1
    if array.ndim == 2 and array.shape[1] % 3 == 0:
        array = array.reshape(array.shape[0], -1, 3)
    if array.ndim != 3 or array.shape[1] != num_vertices or array.shape[2] != 3:
        raise TalkError(
            f"ground-truth file {path} has shape {tuple(array.shape)}; expected [T, {num_vertices} * 3] or "
            f"[T, {num_vertices}, 3] vertices of this checkpoint's mesh."
        )
    step = (source_fps or fps) / fps
    if abs(step - round(step)) > 1e-6 or round(step) < 1:
        raise TalkError(f"--ground-truth-fps {source_fps} must be a whole multiple of the model's {fps} fps.")
    return torch.from_numpy(np.asarray(array[:: int(round(step))], dtype=np.float32))
