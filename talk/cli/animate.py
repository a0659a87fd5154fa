"""``talk animate``: speech file + checkpoint -> mp4 of the talking face. Its options are this function's signature.

Importing this module imports no torch, so ``talk animate --help`` answers at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from render.worker import RenderWorker


def animate(
    audio: Path,
    checkpoint: Path | None = None,
    output: Path | None = None,
    subject: str | None = None,
    size: int = 512,
    view: Literal["front", "three_quarter"] = "front",
    device: str = "cpu",
    stream: bool = False,
    chunk_seconds: float = 0.2,
    seed: int | None = None,
    export_meshes: Path | None = None,
    mesh_format: Literal["obj", "ply", "npz"] = "obj",
    ground_truth: Path | None = None,
    ground_truth_fps: float | None = None,
    overwrite: bool = False,
    background: str = "1,1,1",
    render_process: bool = True,
    export_blendshapes: Path | None = None,
    head_motion: bool | None = None,
    head_seed: int = 0,
    portrait: Path | None = None,
    portrait_generator: Path | None = None,
    side_by_side: bool = False,
) -> None:
    """Animate a face from speech and write an mp4 with the audio.

    Args:
        audio: Input speech (wav, flac, ogg, mp3; any rate, any channels).
        checkpoint: Checkpoint written by `talk fit`, or a file written by `talk export` (default: the model that
            ships with talk, talk/pretrained/default.pt: experiments/speech/phonetic.yaml, for any English voice).
        output: Output .mp4 (default: the audio file's name with .mp4, in the current folder).
        subject: Subject whose template and style drive the face (default: the subject named in the
            --ground-truth file's name, else the first training subject).
        size: Frame height in pixels, and the width of each panel (one, or three with --ground-truth).
        view: Camera view.
        device: Torch device of the model.
        stream: Generate while the audio is fed in chunks and render each frame as soon as it is decided (token
            models: experiments/*/lm.yaml); prints the latency.
        chunk_seconds: Audio per streamed chunk.
        seed: Seed of sampled decoding (token models configured to sample; default: the checkpoint's); another
            seed draws another animation of the same audio.
        export_meshes: Also write the mesh sequence to this folder.
        mesh_format: Format of --export-meshes.
        ground_truth: Ground-truth vertices (.npy, VOCASET layout [T, V*3] or [T, V, 3]): the video shows
            prediction | ground truth | error map, and the LVE-mm is printed.
        ground_truth_fps: Frame rate of --ground-truth (default: the model's); 60 fps VOCASET files are
            subsampled to the model's rate.
        overwrite: Replace an existing output video and exported meshes (without it, both are refused before
            anything runs).
        background: Background colour R,G,B in [0, 1] (1,1,1: white).
        render_process: Draw and encode the frames in a second process, started before the model loads, so that
            the renderer's start-up overlaps torch's (about a second sooner; the video is the same). Not used
            with --stream or --ground-truth.
        export_blendshapes: Also write the animation as ARKit-52 blendshape weights, to drive an avatar: a .csv
            as the Live Link Face app writes it (Unreal / MetaHuman, Blender add-ons) or a .json weight matrix.
            A model of ARKit weights (experiments/synthetic/arkit_*.yaml) writes its own; others are solved on the
            procedural head's ARKit rig (models trained on the procedural head).
        head_motion: Move the head as people do while they talk (seeded drift that grows while speaking, nods at
            speech onsets; motion.idle): the models are trained on face-centred motion and keep the head still.
            Default: on with --portrait, off otherwise.
        head_seed: Seed of --head-motion; another seed draws another head motion.
        portrait: Animate this photo instead of rendering the mesh: the procedural head is fitted to it (the track
            extra), animated by the model, and the photo is warped and completed by --portrait-generator; the
            video has the photo's size.
        portrait_generator: Checkpoint of experiments/synthetic/portrait.yaml (with --portrait).
        side_by_side: With --portrait, the shaded 3D render of the animated mesh beside the photo (as the fitted
            camera sees it), to check the motion the generator was given.
    """
    from talk.errors import UserError

    checkpoint, output = _defaults(Path(audio), checkpoint, output)
    try:
        colour = tuple(float(c) for c in str(background).strip("()[] ").split(","))
    except ValueError:
        colour = ()
    if len(colour) != 3 or not all(0.0 <= c <= 1.0 for c in colour):
        raise UserError(
            f"--background {background!r} must be three numbers R,G,B in [0, 1], e.g. 1,1,1 for white."
        )
    if ground_truth is None and ground_truth_fps is not None:
        raise UserError("--ground-truth-fps needs --ground-truth.")
    if head_motion and ground_truth is not None:
        raise UserError("--head-motion moves the head, which the ground truth does not; drop one of the two.")
    if portrait is not None:
        _animate_portrait(audio, checkpoint, output, subject, device, stream, chunk_seconds, seed, overwrite,
                          head_motion is not False, head_seed, portrait, portrait_generator, side_by_side)  # fmt: skip
        return
    if portrait_generator is not None:
        raise UserError("--portrait-generator needs --portrait (the photo to animate).")
    if side_by_side:
        raise UserError("--side-by-side needs --portrait (it puts the 3D render beside the photo).")

    with _render_process(render_process and not stream and ground_truth is None) as worker:
        import dataclasses

        from render import TorchRasterizer
        from talk.pipeline.animate import animate as animate_model
        from talk.pipeline.animate import check_size
        from talk.pipeline.load import from_checkpoint

        # every path is checked before the model is loaded, so a mistake costs no model loading and never
        # half-writes outputs
        check_size(size)
        _check_paths(Path(audio), Path(output), export_meshes, ground_truth, overwrite, export_blendshapes)
        model = from_checkpoint(checkpoint, device)
        if seed is not None:
            model.sampling = dataclasses.replace(model.sampling, seed=seed)
        truth = None
        if ground_truth is not None:
            if subject is None:
                subject = _subject_of(Path(ground_truth), sorted(model.require_assets().templates))
                print(f"subject: {subject} (from the --ground-truth file name)")
            num_vertices = model.require_assets().template(subject).shape[0]
            truth = _load_ground_truth(ground_truth, num_vertices, model.fps, ground_truth_fps)
        result = animate_model(
            model,
            audio,
            output,
            renderer=TorchRasterizer(background=colour),
            subject=subject,
            size=size,
            view=view,
            stream=stream,
            chunk_seconds=chunk_seconds,
            ground_truth=truth,
            export_meshes=export_meshes,
            mesh_format=mesh_format,
            overwrite=overwrite,
            worker=worker,
            export_blendshapes=export_blendshapes,
            head_motion=_idle_head() if head_motion else None,  # off unless asked for
            head_seed=head_seed,
        )
        print(
            f"wrote {result.path} ({result.frames} frames at {result.fps:g} fps, {result.seconds:.2f} s, "
            f"{result.elapsed:.1f} s to make)"
        )
        if result.first_frame_latency is not None:
            print(
                f"streaming: first frame {1000 * result.first_frame_latency:.0f} ms after its audio chunk (compute); "
                f"algorithmic latency {1000 * result.algorithmic_latency:.0f} ms"
            )
        if result.meshes is not None:
            print(f"meshes: {result.meshes}")
        if export_blendshapes is not None:
            from motion.face.blendshapes import UNSUPPORTED_TARGETS

            print(
                f"blendshapes: {export_blendshapes} (zero: {', '.join(UNSUPPORTED_TARGETS)}, which the head lacks)"
            )
        if result.lve_mm is not None:
            print(f"LVE-mm against the ground truth: {result.lve_mm:.3f} mm")


def _animate_portrait(
    audio: Path,
    checkpoint: Path,
    output: Path,
    subject: str | None,
    device: str,
    stream: bool,
    chunk_seconds: float,
    seed: int | None,
    overwrite: bool,
    head_motion: bool,
    head_seed: int,
    portrait: Path,
    generator: Path | None,
    side_by_side: bool = False,
) -> None:
    """``talk animate --portrait``: see :func:`talk.pipeline.portrait.animate_portrait`."""
    import dataclasses
    import time

    from talk.errors import UserError

    if generator is None:
        raise UserError(
            "--portrait needs --portrait-generator <checkpoint of experiments/synthetic/portrait.yaml> (train it "
            "with `talk fit -c experiments/synthetic/portrait.yaml`)."
        )
    _check_paths(Path(audio), Path(output), None, None, overwrite)
    if not Path(portrait).is_file():
        raise UserError(f"--portrait {portrait} not found; name a photo (.jpg, .png) with one face.")
    from talk.pipeline.load import from_checkpoint
    from talk.pipeline.portrait import animate_portrait

    start = time.perf_counter()
    model = from_checkpoint(checkpoint, device)
    if seed is not None:
        model.sampling = dataclasses.replace(model.sampling, seed=seed)
    path, frames, fps = animate_portrait(
        model, audio, output, portrait, generator, subject, stream, chunk_seconds,
        _idle_head() if head_motion else None, head_seed, side_by_side,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    print(f"wrote {path} ({frames} frames at {fps:g} fps, {frames / fps:.2f} s, {elapsed:.1f} s to make)")


def _idle_head():  # noqa: ANN202 - motion.idle.IdleHead, imported here (torch)
    from motion.idle import IdleHead

    return IdleHead()


@contextmanager
def _render_process(wanted: bool) -> Iterator[RenderWorker | None]:
    """A render process (:mod:`render.worker`) started now, before this process imports torch, or None."""
    if not wanted:
        yield None
        return
    from render.worker import RenderWorker  # torch-free: starting it costs this process a few milliseconds

    with RenderWorker.start() as worker:
        yield worker


def _defaults(audio: Path, checkpoint: Path | None, output: Path | None) -> tuple[Path, Path]:
    """``--checkpoint`` defaults to the shipped model, ``--output`` to ``<audio name>.mp4`` in the current folder."""
    from talk.errors import UserError

    if checkpoint is None:
        from talk.pretrained import default_model

        checkpoint = default_model()
    if output is None:
        output = Path(audio.stem + ".mp4")
        if output.resolve() == audio.resolve():
            raise UserError(f"--audio {audio} is itself an .mp4 here; name the video to write with --output.")
        print(f"output: {output}")
    return checkpoint, output


def _check_paths(
    audio: Path,
    output: Path,
    meshes: Path | None,
    truth: Path | None,
    overwrite: bool,
    weights: Path | None = None,
) -> None:
    """One-line errors for inputs that do not exist and outputs that cannot or may not be written."""
    from talk.errors import UserError
    from talk.pipeline.animate import check_output

    check_output(output)  # a directory, a path under a file, an unwritable folder
    if output.suffix.lower() != ".mp4":
        raise UserError(
            f"output {output}: talk animate writes an MP4 (H.264/AAC); name the file with .mp4, such as "
            f"{output.with_suffix('.mp4')}."
        )
    if output.exists() and not overwrite:
        raise UserError(f"output {output} exists; pass --overwrite to replace it.")
    if weights is not None:
        from talk.pipeline.blendshapes import check_weights_path

        check_weights_path(check_output(weights, ".csv"))
        if Path(weights).exists() and not overwrite:
            raise UserError(f"--export-blendshapes {weights} exists; pass --overwrite to replace it.")
    if meshes is not None:
        meshes = Path(meshes)
        if meshes.exists() and not meshes.is_dir():
            raise UserError(f"--export-meshes {meshes} is a file; name a folder for the meshes.")
        written = [*meshes.glob("frame_*.obj"), *meshes.glob("frame_*.ply"), *meshes.glob("meshes.npz")]
        if written and not overwrite:  # what render.export_meshes would refuse after the whole animation
            raise UserError(
                f"--export-meshes {meshes} already holds meshes; pass --overwrite to replace them or name an "
                "empty folder."
            )
    if audio.is_dir():
        raise UserError(f"--audio {audio} is a directory; name an audio file (.wav, .flac, .mp3, ...).")
    if not audio.is_file():
        raise UserError(f"audio file {audio} not found.")
    if truth is not None and not Path(truth).is_file():
        raise UserError(f"ground-truth file {truth} not found.")


def _subject_of(truth: Path, subjects: list[str]) -> str:
    """The subject a ground-truth file belongs to: the only one of ``subjects`` its name contains as a whole word
    (``SYN_09_F_sentence01.npy`` -> ``SYN_09_F``; ``F1`` is not found in ``F10_e01``)."""
    import re

    from talk.errors import UserError

    found = [s for s in subjects if re.search(rf"(?<![A-Za-z0-9]){re.escape(s)}(?![A-Za-z0-9])", truth.stem)]
    # of nested names (SYN_01 in SYN_01_F) the longest wins
    found = [s for s in found if not any(s != other and s in other for other in found)]
    if len(subjects) == 1:
        return subjects[0]
    if len(found) == 1:
        return found[0]
    raise UserError(
        f"--ground-truth {truth}: name its subject with --subject (one of {', '.join(subjects)})."
    )


def _load_ground_truth(path: Path, num_vertices: int, fps: float, source_fps: float | None):  # noqa: ANN202
    """Ground-truth vertices ``[T, V, 3]`` at the model's frame rate from a VOCASET-layout ``.npy``."""
    import numpy as np
    import torch

    from motion.frames import resample_frames
    from talk.errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"ground-truth file {path} not found.")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError):
        raise UserError(
            f"ground-truth file {path} is not a .npy array of vertices; pass the [T, V*3] .npy of a sequence "
            "(<root>/vertices_npy/<name>.npy)."
        ) from None
    if array.ndim == 2 and array.shape[1] % 3 == 0:
        array = array.reshape(array.shape[0], -1, 3)
    if array.ndim != 3 or array.shape[1] != num_vertices or array.shape[2] != 3:
        raise UserError(
            f"ground-truth file {path} has shape {tuple(array.shape)}; expected [T, {num_vertices} * 3] or "
            f"[T, {num_vertices}, 3] vertices of this checkpoint's mesh."
        )
    if source_fps is not None and not source_fps > 0:
        raise UserError(f"--ground-truth-fps {source_fps} must be a positive frame rate.")
    # a copy: the memory-mapped file is read-only, which torch warns about
    return torch.from_numpy(np.array(resample_frames(array, source_fps or fps, fps), dtype=np.float32))
