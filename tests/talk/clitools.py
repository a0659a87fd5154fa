"""Running the `talk` CLI from tests, in a subprocess as users do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore"}


def talk(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "talk.cli.main", *args], cwd=cwd, env=ENV, capture_output=True, text=True
    )
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


def flame_overrides(root: Path, run: Path, face_model: bool = False) -> list[str]:
    """Overrides of the synthetic FLAME-parameter configs (experiments/synthetic/flame_*.yaml) for a dataset at
    ``root``; ``face_model`` also points the tokenizer's face model there."""
    out = [f"--data.init_args.manifest={root / 'flame_manifest.jsonl'}",
           f"--data.init_args.flame_model={root / 'face_model.pkl'}", f"--trainer.default_root_dir={run}"]  # fmt: skip
    if face_model:
        out.append(f"--model.init_args.face_model.init_args.model_path={root / 'face_model.pkl'}")
    return out
