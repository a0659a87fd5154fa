"""The ``talk`` command.

``talk fit|validate|test|predict`` are LightningCLI subcommands (every constructor argument of the configured
model and data is an option; see ``talk fit --help``). ``talk data ...``, ``talk animate`` and ``talk report``
are plain commands in the same entry point.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from talk.errors import TalkError

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")

USAGE = """usage: talk <command> [options]

commands:
  fit        train a model:                talk fit -c experiments/synthetic/faceformer.yaml
  validate   run the validation loop:      talk validate -c CONFIG --ckpt_path CKPT
  test       evaluate and write metrics:   talk test -c CONFIG --ckpt_path CKPT
  predict    run prediction:               talk predict -c CONFIG --ckpt_path CKPT
  data       datasets:                     talk data synth --out data/synthetic
                                           talk data vocaset --raw VOCASET_DOWNLOAD --out data/vocaset
  report     compare test runs:            talk report RUN_DIR [RUN_DIR ...] --out report
  animate    wav -> mp4 of a talking face: talk animate --audio in.wav --checkpoint CKPT --output out.mp4

Run `talk <command> --help` for the options of each command.
"""


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is meant for the user (printed as one line, no traceback)."""
    errors: list[type[BaseException]] = [TalkError, FileNotFoundError]
    try:
        from audio.io import AudioError

        errors.append(AudioError)
    except ImportError:  # pragma: no cover - audio is part of the distribution
        pass
    from audio.streaming import StreamingError
    from render.export import MeshExportError

    errors += [MeshExportError, StreamingError]
    return tuple(errors)


def _data_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="talk data", description="Create or convert datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    synth = sub.add_parser(
        "synth",
        help="write the synthetic talking-face dataset (VOCASET processed layout)",
        description="Write the synthetic talking-face dataset in the VOCASET processed layout: wav/, "
        "vertices_npy/ (60 fps), templates.pkl, plus face_model.pkl (FLAME format) and FLAME_masks.pkl.",
    )
    synth.add_argument("--out", required=True, help="output directory")
    synth.add_argument("--speakers", type=int, default=10, help="number of speakers (default 10)")
    synth.add_argument("--sentences", type=int, default=20, help="sentences per speaker (default 20)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    synth.add_argument(
        "--sample-rate", type=int, default=16000, help="audio sample rate in Hz (default 16000)"
    )
    vocaset = sub.add_parser(
        "vocaset",
        help="convert the VOCASET release files to the processed layout",
        description="Convert the VOCASET release (data_verts.npy, raw_audio_fixed.pkl, subj_seq_to_idx.pkl, "
        "templates.pkl) to the processed layout: wav/, vertices_npy/ (60 fps), templates.pkl. Streams "
        "data_verts.npy one sequence at a time; re-running skips finished files and never overwrites a "
        "different file unless --overwrite is given.",
    )
    vocaset.add_argument("--raw", required=True, help="folder holding the four VOCASET release files")
    vocaset.add_argument("--out", required=True, help="output directory (processed layout)")
    vocaset.add_argument("--subjects", nargs="+", default=None, help="subjects to convert (default: all)")
    vocaset.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs whose content differs"
    )
    vocaset.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    args = parser.parse_args(argv)
    if args.command == "vocaset":
        _convert_vocaset(args)
    elif args.command == "synth":
        from talk.synth import synthesize_dataset

        if args.speakers < 1 or args.sentences < 1:
            raise TalkError("--speakers and --sentences must be at least 1.")
        summary = synthesize_dataset(
            args.out,
            speakers=args.speakers,
            sentences=args.sentences,
            seed=args.seed,
            workers=args.workers,
            sample_rate=args.sample_rate,
        )
        print(
            f"wrote {summary.n_sequences} sequences ({summary.total_seconds:.0f} s of speech) from "
            f"{len(summary.subjects)} speakers to {summary.out_dir} in {summary.elapsed_seconds:.1f} s"
        )


def _convert_vocaset(args: argparse.Namespace) -> None:
    from talk.data.formats.vocaset_raw import VocasetConversionWarning, convert_vocaset

    with warnings.catch_warnings():
        # the summary lists every warning once, after the progress bar
        warnings.simplefilter("ignore", VocasetConversionWarning)
        summary = convert_vocaset(
            args.raw,
            args.out,
            subjects=args.subjects,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    for message in summary.warnings:
        print(f"warning: {message}", file=sys.stderr)
    print(
        f"{summary.written} sequences written, {summary.skipped} skipped (already converted) for "
        f"{len(summary.subjects)} subjects: {summary.frames} frames at 60 fps, {summary.audio_seconds:.0f} s of "
        f"audio, {len(summary.warnings)} warnings; {summary.out_dir} in {summary.elapsed_seconds:.1f} s"
    )


def _animate_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="talk animate", description="Animate a face from speech and write an mp4 with the audio."
    )
    parser.add_argument(
        "--audio", required=True, help="input speech (wav, flac, ogg, mp3; any rate, any channels)"
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by `talk fit`")
    parser.add_argument("--output", required=True, help="output .mp4")
    parser.add_argument(
        "--subject", default=None, help="subject (template and style); default: first training subject"
    )
    parser.add_argument(
        "--size", type=int, default=512, help="frame width and height in pixels (default 512)"
    )
    parser.add_argument("--view", default="front", choices=["front", "three_quarter"], help="camera view")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument(
        "--stream",
        action="store_true",
        help="generate while the audio is fed in chunks and render each frame as soon as it is decided "
        "(token models: experiments/*/lm.yaml); prints the latency",
    )
    parser.add_argument(
        "--chunk-seconds", type=float, default=0.2, help="audio per streamed chunk (default 0.2)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of sampled decoding (token models configured to sample; default: the checkpoint's); another "
        "seed draws another animation of the same audio",
    )
    parser.add_argument(
        "--export-meshes", default=None, metavar="DIR", help="also write the mesh sequence to DIR"
    )
    parser.add_argument(
        "--mesh-format", default="obj", choices=["obj", "ply", "npz"], help="format of --export-meshes"
    )
    parser.add_argument(
        "--ground-truth",
        default=None,
        metavar="NPY",
        help="ground-truth vertices (.npy, VOCASET layout): the video shows prediction | ground truth | error map",
    )
    parser.add_argument(
        "--ground-truth-fps",
        type=float,
        default=None,
        help="frame rate of --ground-truth (default: the model's)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing exported meshes")
    parser.add_argument(
        "--background", default="1,1,1", help="background colour R,G,B in [0, 1] (default 1,1,1: white)"
    )
    args = parser.parse_args(argv)
    from talk.pipeline.animate import animate

    try:
        background = tuple(float(c) for c in args.background.split(","))
    except ValueError:
        raise TalkError(f"--background {args.background!r} must be three numbers R,G,B in [0, 1].") from None

    result = animate(
        audio=args.audio,
        checkpoint=args.checkpoint,
        output=args.output,
        subject=args.subject,
        size=args.size,
        view=args.view,
        device=args.device,
        stream=args.stream,
        chunk_seconds=args.chunk_seconds,
        seed=args.seed,
        export_meshes=args.export_meshes,
        mesh_format=args.mesh_format,
        ground_truth=args.ground_truth,
        ground_truth_fps=args.ground_truth_fps,
        overwrite=args.overwrite,
        background=background,
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
    if result.lve_mm is not None:
        print(f"LVE-mm against the ground truth: {result.lve_mm:.3f} mm")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``talk`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    try:
        if command in LIGHTNING_SUBCOMMANDS:
            from talk.cli.lightning_cli import run_lightning_cli

            run_lightning_cli([command, *rest])
        elif command == "data":
            _data_command(rest)
        elif command == "animate":
            _animate_command(rest)
        elif command == "report":
            from talk.cli.report import report_command

            report_command(rest)
        else:
            print(f"talk: unknown command '{command}'\n\n{USAGE}", file=sys.stderr)
            sys.exit(2)
    except _user_errors() as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"talk {command}: error: {message}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"talk {command}: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
