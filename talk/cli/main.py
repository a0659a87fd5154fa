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
from collections.abc import Callable

from talk.cli.signature import OneLineArgumentParser, run_function
from talk.errors import UserError

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
COMMANDS = (
    *LIGHTNING_SUBCOMMANDS, "data", "animate", "export", "export-glb", "track", "rig", "report", "lipsync",
)  # fmt: skip
TALK_PACKAGES = ("audio", "motion", "render", "talk")  # whose warnings are printed in one line
# Commands that end with every file closed by their own `with` blocks (outputs are written atomically): the console
# script ends them without the interpreter's teardown (see `run`).
QUICK_EXIT = ("animate", "export", "export-glb", "rig")

USAGE = """usage: talk <command> [options]

commands:
  fit        train a model:                talk fit -c experiments/synthetic/faceformer.yaml
  validate   run the validation loop:      talk validate -c CONFIG --ckpt_path CKPT
  test       evaluate and write metrics:   talk test -c CONFIG --ckpt_path CKPT
  predict    run prediction:               talk predict -c CONFIG --ckpt_path CKPT
  data       datasets:                     talk data synth --out data/synthetic
                                           talk data speech --out data/speech
                                           talk data vocaset --raw VOCASET_DOWNLOAD --out data/vocaset
  report     compare test runs:            talk report RUN_DIR [RUN_DIR ...] --out report
  lipsync    lip sync on real speech:      talk lipsync --checkpoint CKPT --out lipsync
  animate    wav -> mp4 of a talking face: talk animate --audio in.wav [--checkpoint CKPT] [--output out.mp4]
  export     checkpoint -> inference file: talk export --checkpoint CKPT --output model.pt
  track      talking videos -> training data: talk track VIDEO_OR_FOLDER [...] --out data/tracked
  rig        a rig's targets as a PNG:     talk rig preview --out sheet.png [--rig avatar.glb]
  export-glb speech -> animated avatar:    talk export-glb --rig avatar.glb --audio in.wav [--checkpoint CKPT] --output out.glb

Run `talk <command> --help` for the options of each command.
"""


def _speaker_set_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `talk data synth` and `talk data speech` share: speakers x sentences written by workers."""
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--speakers", type=int, default=10, help="number of speakers (default 10)")
    parser.add_argument("--sentences", type=int, default=20, help="sentences per speaker (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    parser.add_argument(
        "--sample-rate", type=int, default=16000, help="audio sample rate in Hz (default 16000)"
    )


def _data_command(argv: list[str]) -> None:
    parser = OneLineArgumentParser(prog="talk data", description="Create or convert datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    synth = sub.add_parser(
        "synth",
        help="write the synthetic talking-face dataset (VOCASET processed layout)",
        description="Write the synthetic talking-face dataset in the VOCASET processed layout: wav/, "
        "vertices_npy/ (60 fps), templates.pkl, plus face_model.pkl (FLAME format) and FLAME_masks.pkl.",
    )
    _speaker_set_arguments(synth)
    speech = sub.add_parser(
        "speech",
        help="write English TTS speech with exact phone timings and the face motion (talk data synth layout)",
        description="Write English sentences spoken by espeak-ng voices (one per synthetic speaker), the face "
        "motion of their phone timings, phones/*.lab and randomly degraded audio, in the layout of `talk data "
        "synth` (same subjects: the synthetic configs train on it with data.init_args.root). Resumable and "
        "deterministic by --seed. Needs espeakng-loader (pip install 'talk[speech]'); --engines adds Festival "
        "and Flite voices built from human recordings (Debian packages: make speech-engines).",
    )
    _speaker_set_arguments(speech)
    speech.add_argument(
        "--no-augment", action="store_true", help="keep the audio clean (no noise, reverb, band limit, level)"
    )
    speech.add_argument(
        "--engines",
        default="espeak",
        help="comma-separated TTS engines that share the sentences: espeak, festival, flite (default espeak)",
    )
    speech.add_argument(
        "--recordings",
        default=None,
        help="also add real recordings: a folder of <name>.wav with <name>.lab phone labels or <name>.txt "
        "transcripts (force-aligned), each animated as the next sentence of a training speaker",
    )
    portraits = sub.add_parser(
        "portraits",
        help="write the synthetic portrait-video set (training data of the portrait generator)",
        description="Write synthetic portrait clips: the textured procedural head with teeth and tongue, varied "
        "skin, hair, light, camera, head pose and background, speaking; frames and meshes as .npy per clip, "
        "manifest.jsonl, train/val/test by clip. Resumable and deterministic by --seed.",
    )
    portraits.add_argument("--out", required=True, help="output directory")
    portraits.add_argument("--clips", type=int, default=200, help="number of clips (default 200)")
    portraits.add_argument("--frames", type=int, default=50, help="frames per clip (default 50)")
    portraits.add_argument("--size", type=int, default=256, help="frame size in pixels (default 256)")
    portraits.add_argument("--supersample", type=int, default=2, help="anti-aliasing factor (default 2)")
    portraits.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
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
    elif args.command == "portraits":
        from talk.synth.portrait import write_portrait_set

        if args.clips < 1 or args.frames < 1 or args.size < 16 or args.supersample < 1:
            raise UserError(
                "--clips and --frames must be at least 1, --size at least 16, --supersample at least 1."
            )
        done = write_portrait_set(
            args.out, args.clips, args.frames, args.seed, size=args.size, supersample=args.supersample
        )
        print(
            f"{done.clips} clips in {done.out_dir} ({done.rendered} rendered now, "
            f"{done.seconds_per_clip:.1f} s each; splits {done.splits}) in {done.elapsed_seconds:.1f} s"
        )
    elif args.command == "speech":
        from talk.synth.speech_set import write_speech_set

        done = write_speech_set(
            args.out,
            speakers=args.speakers,
            sentences=args.sentences,
            seed=args.seed,
            workers=args.workers,
            sample_rate=args.sample_rate,
            augment=not args.no_augment,
            engines=args.engines,
        )
        print(
            f"{done.n_sequences} sequences ({done.total_seconds:.0f} s of speech) from {len(done.subjects)} "
            f"speakers in {done.out_dir} ({done.written} written now) in {done.elapsed_seconds:.1f} s"
        )
        if args.recordings is not None:
            from talk.synth.recordings import add_recordings

            added = add_recordings(args.out, args.recordings)
            print(f"recordings from {args.recordings} added to {args.out} ({added} written now)")
    elif args.command == "synth":
        from talk.synth import synthesize_dataset

        if args.speakers < 1 or args.sentences < 1:
            raise UserError("--speakers and --sentences must be at least 1.")
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


def _leading_as_list(argv: list[str], name: str) -> list[str]:
    """``A B --x 1`` -> ``--name ["A", "B"] --x 1``: the arguments before the first option form list ``name``."""
    import json

    n = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    return ([f"--{name}", json.dumps(argv[:n])] if n else []) + argv[n:]


def run() -> None:
    """The ``talk`` console script (and ``python -m talk.cli.main``): :func:`main` on ``sys.argv``.

    After a command of :data:`QUICK_EXIT` succeeds, and no thread other than daemons is left, the process ends with
    ``os._exit`` once the ``atexit`` handlers have run and the standard streams are flushed: the interpreter's teardown (finalising torch's thousands of
    modules and objects) would add about 0.5-0.7 s to a `talk animate` that takes 3-4 s, and has nothing left to
    do. Errors, and the commands that train or write logs (Lightning, wandb), exit the usual way.
    """
    main()
    if len(sys.argv) > 1 and sys.argv[1] in QUICK_EXIT:
        import atexit
        import threading

        if any(not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
            return  # a thread would have to be waited for (thread pools too): the interpreter's own exit does that
        atexit._run_exitfuncs()  # logging's flush and every handler registered with atexit
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def main(argv: list[str] | None = None) -> None:
    """Runs one ``talk`` command: ``argv`` (default ``sys.argv[1:]``) is the command and its options."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    with warnings.catch_warnings():  # restored on return: main() may run inside another program (tests)
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.showwarning = _one_line_warnings(command, warnings.showwarning)
        _run(command, rest)


def _one_line_warnings(command: str, show: Callable[..., None]) -> Callable[..., None]:
    """``warnings.showwarning`` that prints talk's own warnings (suspicious input: clipped or silent audio, ...) as
    ``talk <command>: warning: <message>``, without the file, line and source that Python adds; it leaves the
    warnings of other libraries to ``show``."""

    def show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        if category.__module__.partition(".")[0] not in TALK_PACKAGES:
            return show(message, category, filename, lineno, file, line)
        print(f"talk {command}: warning: {message}", file=file or sys.stderr)

    return show_warning


def _run(command: str, rest: list[str]) -> None:
    try:
        if command in LIGHTNING_SUBCOMMANDS:
            from talk.cli.lightning_cli import run_lightning_cli

            run_lightning_cli([command, *rest])
        elif command == "data":
            _data_command(rest)
        elif command == "animate":
            from talk.cli.animate import animate

            run_function(
                animate, rest, "talk animate", "Animate a face from speech and write an mp4 with the audio."
            )
        elif command == "export":
            from talk.cli.export import export

            run_function(
                export, rest, "talk export", "Write a small self-contained inference file of a checkpoint."
            )
        elif command == "track":
            from talk.cli.track import track

            run_function(
                track, _leading_as_list(rest, "videos"), "talk track",
                "Track talking videos into a folder that talk fit trains on (speech, face-model parameters, "
                "previews, manifest.jsonl).",
            )  # fmt: skip
        elif command == "rig":
            from talk.cli.rig import rig_preview

            if not rest or rest[0] != "preview":
                raise UserError(
                    "talk rig: the command is `talk rig preview --out sheet.png [--rig avatar.glb]`."
                )
            run_function(
                rig_preview, rest[1:], "talk rig preview", "Render a rig's ARKit targets as a labelled PNG."
            )
        elif command == "export-glb":
            from talk.cli.rig import export_glb

            run_function(
                export_glb, rest, "talk export-glb", "Animate an ARKit-rigged avatar (.glb) from speech."
            )
        elif command == "report":
            from talk.cli.report import report_command

            report_command(rest)
        elif command == "lipsync":
            from talk.cli.lipsync import lipsync

            run_function(
                lipsync, rest, "talk lipsync",
                "Measure a model's lip sync on real speech with phone labels (bilabial closure, gap ratio, "
                "gap-phone correlation, silence stillness).",
            )  # fmt: skip
        else:
            import difflib

            close = difflib.get_close_matches(command, COMMANDS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            print(
                f"talk: error: unknown command '{command}'{hint} (talk --help for the commands)",
                file=sys.stderr,
            )
            sys.exit(2)
    except UserError as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"talk {command}: error: {message}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"talk {command}: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run()
