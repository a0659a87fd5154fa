"""Running the `talk` CLI from tests, in a subprocess as users do."""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore"}


class _ForkServer:
    """Client of tests/talk/forkserver.py, started on first use and shared by the session."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def run(self, args: tuple[str, ...], cwd: Path) -> subprocess.CompletedProcess:
        with self.lock, tempfile.TemporaryDirectory() as tmp:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "tests.talk.forkserver"], cwd=ROOT, env=ENV, text=True,
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                )  # fmt: skip
                atexit.register(self.proc.kill)
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            request = {
                "args": list(args),
                "cwd": str(cwd),
                "env": ENV,
                "stdout": str(out),
                "stderr": str(err),
            }
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline()
            if not answer:
                raise RuntimeError("the test fork server died; run the test with TALK_TEST_FORK=0 to see why")
            code = json.loads(answer)["code"]
            return subprocess.CompletedProcess(
                ["talk", *args], code, out.read_text(errors="replace"), err.read_text(errors="replace")
            )


_SERVER = _ForkServer()


def talk(*args: str, cwd: Path, check: bool = True, fresh: bool = False) -> subprocess.CompletedProcess:
    """``talk ARGS`` as a user runs it: a fresh process, its exit code, stdout and stderr. Forked from a server that
    has the imports done (tests/talk/forkserver.py) unless ``fresh`` or ``TALK_TEST_FORK=0``: then a new
    ``python -m talk.cli.main``."""
    if fresh or os.environ.get("TALK_TEST_FORK", "1") == "0" or not hasattr(os, "fork"):
        proc = subprocess.run(
            [sys.executable, "-m", "talk.cli.main", *args], cwd=cwd, env=ENV, capture_output=True, text=True
        )
    else:
        proc = _SERVER.run(args, cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"talk {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def small_overrides(root: Path, run: Path) -> list[str]:
    return [
        f"--data.init_args.root={root}",
        "--data.init_args.train_sentences=[1,2]",
        "--data.init_args.val_sentences=[1,1]",
        "--data.init_args.test_sentences=[1,1]",
        f"--trainer.default_root_dir={run}",
    ]


def coefficient_overrides(kind: str, root: Path, run: Path, face_model: bool = False) -> list[str]:
    """Overrides of experiments/synthetic/{arkit,bfm}_*.yaml (``kind``) for a dataset at ``root``; ``face_model``
    also points the tokenizer's rig or BFM there."""
    data = "--data.init_args."
    out = [f"{data}manifest={root / f'{kind}_manifest.jsonl'}", f"--trainer.default_root_dir={run}"]
    if kind == "arkit":
        out += [f"{data}rig={root / 'arkit_rig.npz'}", f"{data}templates={root / 'templates.pkl'}",
                f"{data}face_model_path={root / 'face_model.pkl'}"]  # fmt: skip
        model_file = ("path", root / "arkit_rig.npz")
    else:
        out.append(f"{data}bfm_model={root / 'BFM_model_front.mat'}")
        model_file = ("model_path", root / "BFM_model_front.mat")
    if face_model:
        out.append(f"--model.init_args.face_model.init_args.{model_file[0]}={model_file[1]}")
    return out


def flame_overrides(root: Path, run: Path, face_model: bool = False) -> list[str]:
    """Overrides of the synthetic FLAME-parameter configs (experiments/synthetic/flame_*.yaml) for a dataset at
    ``root``; ``face_model`` also points the tokenizer's face model there."""
    out = [f"--data.init_args.manifest={root / 'flame_manifest.jsonl'}",
           f"--data.init_args.flame_model={root / 'face_model.pkl'}", f"--trainer.default_root_dir={run}"]  # fmt: skip
    if face_model:
        out.append(f"--model.init_args.face_model.init_args.model_path={root / 'face_model.pkl'}")
    return out


def portrait_overrides(root: Path, run: Path) -> list[str]:
    """Overrides of experiments/synthetic/portrait.yaml for a tiny portrait set at ``root`` (32x32 frames)."""
    return [f"--data.init_args.root={root}", "--data.init_args.size=32", "--data.init_args.batch_size=2",
            "--data.init_args.num_workers=0", f"--trainer.default_root_dir={run}"]  # fmt: skip


def phonetic_overrides(root: Path, run: Path) -> list[str]:
    """Overrides of experiments/speech/phonetic.yaml for the synthetic set at ``root``: its face model, and phone
    labels (``<run>/phones/<name>.lab``: a pause, then /aa/ /b/ /m/ in turn every 0.1 s, then a pause) standing in
    for the speech set's labels."""
    import soundfile as sf

    phones = run / "phones"
    phones.mkdir(parents=True, exist_ok=True)
    for wav in sorted((root / "wav").glob("*.wav")):
        duration = sf.info(str(wav)).duration
        cuts = [0.0, *np.arange(0.1, duration - 0.1, 0.1), duration]
        labels = ["sil", *(("AA", "B", "M")[i % 3] for i in range(len(cuts) - 3)), "sil"]
        (phones / f"{wav.stem}.lab").write_text(
            "".join(f"{a:.3f} {b:.3f} {p}\n" for a, b, p in zip(cuts, cuts[1:], labels, strict=False))
        )
    return [*small_overrides(root, run), f"--model.init_args.phones_dir={phones}",
            f"--model.init_args.face_model.init_args.model_path={root / 'face_model.pkl'}"]  # fmt: skip
