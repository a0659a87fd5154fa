"""CLI start-up breakdown: what ``talk animate`` pays before it does any work, and which heavy modules it loads.

Run: ``python benchmarks/startup.py [CHECKPOINT] [--repeats 3]`` (1-3 minutes without a checkpoint, on 2 busy
cores). Every time is the best of ``--repeats`` fresh Python processes (``sys.executable``, the repository root
first on ``sys.path``), so module caches never carry over from one measurement to the next; disk caches do, as
they do for a user running the command twice. Rows:

* ``python -c pass``: the interpreter alone (subtract it from the other process times);
* ``import torch``, ``import talk.pipeline``, ``import lightning``, ``import transformers``: process wall time,
  and the import alone timed inside the process;
* ``talk animate --help`` (``python -m talk.cli.main animate --help``): process wall time;
* heavy modules (``HEAVY``) loaded by ``import talk.pipeline`` and ``talk animate --help`` (and, with a
  checkpoint, by the full run): an inference command should load none of them;
* with CHECKPOINT: a full ``talk animate`` of a synthesised 3 s, 16 kHz wav at 512x512 on the CPU, as it runs
  by default (frames drawn and encoded by a render process started before torch is imported: ``render.worker``)
  and, as the baseline, with ``--render-process false`` (everything in one process); then where one such run's
  time goes: torch and talk imported, checkpoint loaded, motion generated, first and last frames sent to the render
  process, video written, process ended.

A row whose command fails prints its last line of error output instead of a figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("lightning", "transformers", "wandb", "torchmetrics", "torch._dynamo")
SAMPLE_RATE = 16000
MARKER = "@@startup@@"

# Each snippet prints MARKER followed by its result on its last line, so stdout noise (help text) is ignored.
IMPORT_TIMED = (
    "import time; t = time.perf_counter(); import {module}; print('" + MARKER + "', time.perf_counter() - t)"
)
HEAVY_LOADED = (
    "import sys; heavy = {heavy!r}; "
    "print('"
    + MARKER
    + "', ' '.join(h for h in heavy if any(m == h or m.startswith(h + '.') for m in sys.modules)))"
)
# Runs `talk <argv>` as `python -m talk.cli.main` does (`main`, without the console script's quick exit, so that
# the snippet can go on), then reports the heavy modules it loaded.
CLI_MODULES = (
    "import sys; sys.argv = ['talk', *{argv!r}]; from talk.cli.main import main\n"
    "try:\n    main()\nexcept SystemExit as e:\n"
    "    if e.code not in (None, 0):\n        raise\n"
)


# `talk animate` through the console script's `run`, with time stamps at each stage, printed by an atexit handler
# (which `run` calls before its quick exit): where one full run's time goes.
PHASES = """
import atexit, sys, time
T0 = time.perf_counter()
marks = []
def mark(name):
    marks.append((name, time.perf_counter() - T0))
atexit.register(lambda: print('{marker}', ';'.join(f'{{n}}={{t:.3f}}' for n, t in marks), flush=True))
import talk.cli.main as cli
import talk.pipeline.load as load
from render.worker import WorkerVideo
def loaded(*a, _load=load.from_checkpoint, **k):
    mark('torch and talk imported'); model = _load(*a, **k); mark('checkpoint loaded')
    pieces = model.generate_pieces
    def timed(*a, **k):
        yield from pieces(*a, **k)
        mark('motion generated')
    model.generate_pieces = timed
    return model
load.from_checkpoint = loaded
def write(self, projected, _write=WorkerVideo.write):
    if not self.frames: mark('first frames sent')
    _write(self, projected)
def finish(self, *exc, _exit=WorkerVideo.__exit__):
    mark('last frames sent'); _exit(self, *exc); mark('video written')
WorkerVideo.write, WorkerVideo.__exit__ = write, finish
sys.argv = ['talk', *{argv!r}]
cli.run()
"""


class Failed(Exception):
    """A measured command exited with an error; the message is its last line of output."""


def run(args: list[str], timeout: float = 600.0) -> tuple[float, str]:
    """Run ``python *args`` in a fresh process from the repository root; (wall seconds, stdout)."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise Failed(lines[-1].strip() if lines else f"exit status {proc.returncode}")
    return seconds, proc.stdout


def marked(stdout: str) -> str:
    """The result a snippet printed after MARKER."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith(MARKER)]
    if not lines:
        raise Failed("the snippet printed no result")
    return lines[-1][len(MARKER) :].strip()


def best_of(repeats: int, args: list[str], timeout: float = 600.0) -> tuple[float, float | None]:
    """Best process wall time over ``repeats`` runs, and the best in-process time when the snippet reports one."""
    walls, inner = [], []
    for _ in range(repeats):
        wall, out = run(args, timeout)
        walls.append(wall)
        if MARKER in out:
            inner.append(float(marked(out)))
    return min(walls), (min(inner) if inner else None)


def row(label: str, repeats: int, args: list[str], timeout: float = 600.0) -> None:
    try:
        wall, inner = best_of(repeats, args, timeout)
    except (Failed, subprocess.TimeoutExpired, OSError) as err:
        print(f"{label:28s} failed: {err}")
        return
    extra = f"   (import alone {inner:6.2f} s)" if inner is not None else ""
    print(f"{label:28s} {wall:6.2f} s{extra}")


def heavy_row(label: str, args: list[str]) -> None:
    try:
        loaded = marked(run(args)[1])
    except (Failed, subprocess.TimeoutExpired, OSError) as err:
        print(f"{label:28s} failed: {err}")
        return
    print(f"{label:28s} {loaded or 'none'}")


def write_wav(path: Path, seconds: float = 3.0, seed: int = 0) -> Path:
    """A speech-like 3 s mono wav: noise shaped by a 4 Hz syllable envelope plus a 120 Hz voiced component."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
    signal = 0.05 * rng.standard_normal(t.size) + 0.1 * np.sin(2 * np.pi * 120.0 * t)
    sf.write(path, (envelope * signal).astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, help="checkpoint for a full `talk animate` run")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per figure (best is shown)")
    parser.add_argument("--size", type=int, default=512, help="frame size of the full animate run")
    args = parser.parse_args()
    print(
        f"python {platform.python_version()} ({sys.executable}), {os.cpu_count()} CPUs; best of {args.repeats}"
    )
    print("--- start-up (process wall time)")
    row("python -c pass", args.repeats, ["-c", "pass"])
    for module in ("torch", "talk.pipeline", "lightning", "transformers"):
        row(f"import {module}", args.repeats, ["-c", IMPORT_TIMED.format(module=module)])
    row("talk animate --help", args.repeats, ["-m", "talk.cli.main", "animate", "--help"])
    print(f"--- heavy modules loaded (of {', '.join(HEAVY)})")
    heavy = HEAVY_LOADED.format(heavy=HEAVY)
    heavy_row("import talk.pipeline", ["-c", "import talk.pipeline\n" + heavy])
    heavy_row("talk animate --help", ["-c", CLI_MODULES.format(argv=["animate", "--help"]) + heavy])
    if args.checkpoint is None:
        return
    with tempfile.TemporaryDirectory(prefix="talk-startup-bench-") as tmp:
        wav = write_wav(Path(tmp) / "speech.wav")
        argv = ["animate", "--audio", str(wav), "--checkpoint", str(args.checkpoint.resolve())]
        argv += ["--output", str(Path(tmp) / "out.mp4"), "--size", str(args.size), "--overwrite"]
        heavy_row("talk animate (full run)", ["-c", CLI_MODULES.format(argv=argv) + heavy])
        print("--- full run (process wall time)")
        row(f"talk animate 3 s @ {args.size}px", args.repeats, ["-m", "talk.cli.main", *argv])
        row(
            "  --render-process false",
            args.repeats,
            ["-m", "talk.cli.main", *argv, "--render-process", "false"],
        )
        print("--- where one full run's time goes (seconds since the process started Python code)")
        try:
            wall, out = run(["-c", PHASES.format(marker=MARKER, argv=argv)])
        except (Failed, subprocess.TimeoutExpired, OSError) as err:
            print(f"failed: {err}")
            return
        for item in marked(out).split(";"):
            name, seconds = item.split("=")
            print(f"{name:28s} {float(seconds):6.2f} s")
        print(f"{'process ended (wall time)':28s} {wall:6.2f} s")


if __name__ == "__main__":
    main()
