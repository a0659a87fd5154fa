"""``make demo``: the whole path on the embedded synthetic dataset, with the real commands printed as they run.

1. ``talk data synth`` writes the synthetic talking-face dataset (skipped when it is already there),
2. ``talk fit`` trains the FaceFormer-style baseline,
3. ``talk test`` evaluates it against the static-template baseline and writes ``metrics.json``,
4. ``talk animate`` renders a held-out synthetic sentence and a real human recording (CMU ARCTIC) to mp4.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = "experiments/synthetic/faceformer.yaml"
DATA = Path("data/synthetic")
RUN = Path("outputs/synthetic/faceformer")
OUT = Path("outputs/demo")
SPEECH = ROOT / "assets" / "speech" / "arctic_a0009.wav"


def _run(args: list[str]) -> None:
    cmd = ["talk", *args]
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    subprocess.run([sys.executable, "-m", "talk.cli.main", *args], check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m talk.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if not (DATA / "synth_meta.json").is_file():
        _run(["data", "synth", "--out", str(DATA)])
    else:
        print(f"\nusing the synthetic dataset already in {DATA}")
    fit = ["fit", "-c", CONFIG]
    if args.epochs is not None:
        fit += ["--trainer.max_epochs", str(args.epochs)]
    _run(fit)
    best = RUN / "checkpoints" / "best.ckpt"
    _run(["test", "-c", CONFIG, "--ckpt_path", str(best)])

    import yaml

    config = yaml.safe_load((ROOT / CONFIG).read_text())
    data_args = config["data"]["init_args"]
    test_subject = data_args["test_subjects"][0]
    first = data_args["test_sentences"][0]
    held_out = DATA / "wav" / f"{test_subject}_sentence{first:02d}.wav"
    videos = [OUT / f"synthetic_{held_out.stem}.mp4", OUT / f"human_{SPEECH.stem}.mp4"]
    _run(["animate", "--audio", str(held_out), "--checkpoint", str(best), "--output", str(videos[0]),
          "--subject", test_subject])  # fmt: skip
    _run(["animate", "--audio", str(SPEECH), "--checkpoint", str(best), "--output", str(videos[1])])

    metrics = json.loads((RUN / "metrics.json").read_text())["metrics"]
    lve_model, lve_static = metrics["model"]["lve"], metrics["static_template"]["lve"]
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s")
    print(f"  dataset:      {DATA}/ (VOCASET processed layout)")
    print(f"  checkpoint:   {best}")
    print(
        f"  metrics:      {RUN / 'metrics.json'}  (LVE {lve_model:.3e} vs static template {lve_static:.3e} m^2)"
    )
    print(f"  logs:         {RUN / 'logs'} (CSV), {RUN / 'wandb'} (offline; `wandb sync` uploads)")
    for v in videos:
        print(f"  video:        {v}")


if __name__ == "__main__":
    main()
