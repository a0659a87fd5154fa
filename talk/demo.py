"""``make demo``: the whole path on the embedded synthetic dataset, with the real commands printed as they run.

1. ``talk data synth`` writes the synthetic talking-face dataset (skipped when it is already there),
2. ``talk fit`` trains a model: by default the flagship (RVQ motion tokenizer, then the audio-conditioned MotionLM
   over its tokens; it beats the regression baseline on the synthetic test split), about 13 minutes on 2 CPU
   cores; ``--model baseline`` (``make demo-baseline``) trains the FaceFormer-style regression baseline instead,
   about 3 minutes,
3. ``talk test`` evaluates it against the static-template baseline and writes ``metrics.json``,
4. ``talk animate`` renders a held-out synthetic sentence and a real human recording (CMU ARCTIC) to mp4; the
   flagship also streams the human recording (``--stream``) and prints its latency.
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
TOKENIZER_CONFIG = "experiments/synthetic/tokenizer.yaml"
LM_CONFIG = "experiments/synthetic/lm.yaml"
DATA = Path("data/synthetic")
RUN = Path("outputs/synthetic/faceformer")
TOKENIZER_RUN = Path("outputs/synthetic/tokenizer")
LM_RUN = Path("outputs/synthetic/lm")
OUT = Path("outputs/demo")
SPEECH = ROOT / "assets" / "speech" / "arctic_a0009.wav"


def _run(args: list[str]) -> None:
    cmd = ["talk", *args]
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    subprocess.run([sys.executable, "-m", "talk.cli.main", *args], check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m talk.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs")
    parser.add_argument(
        "--model",
        choices=["flagship", "baseline"],
        default="flagship",
        help="flagship (RVQ tokenizer + MotionLM, the default) or baseline (regression, quicker to train)",
    )
    args = parser.parse_args(argv)
    model = args.model
    start = time.perf_counter()
    if not (DATA / "synth_meta.json").is_file():
        _run(["data", "synth", "--out", str(DATA)])
    else:
        print(f"\nusing the synthetic dataset already in {DATA}")
    epochs = [] if args.epochs is None else ["--trainer.max_epochs", str(args.epochs)]
    if model == "flagship":
        _run(["fit", "-c", TOKENIZER_CONFIG, *epochs])
        tokenizer = TOKENIZER_RUN / "checkpoints" / "best.ckpt"
        _run(["test", "-c", TOKENIZER_CONFIG, "--ckpt_path", str(tokenizer)])
        config, run = LM_CONFIG, LM_RUN
        _run(["fit", "-c", config, *epochs, f"--model.init_args.tokenizer_checkpoint={tokenizer}"])
    else:
        config, run = CONFIG, RUN
        _run(["fit", "-c", config, *epochs])
    best = run / "checkpoints" / "best.ckpt"
    if not best.is_file():  # a run too short to validate (e.g. --epochs 1 with validation every 2 epochs)
        best = run / "checkpoints" / "last.ckpt"
    _run(["test", "-c", config, "--ckpt_path", str(best)])

    import yaml

    config_args = yaml.safe_load((ROOT / config).read_text())
    data_args = config_args["data"]["init_args"]
    test_subject = data_args["test_subjects"][0]
    first = data_args["test_sentences"][0]
    held_out = DATA / "wav" / f"{test_subject}_sentence{first:02d}.wav"
    videos = [OUT / f"synthetic_{held_out.stem}.mp4", OUT / f"human_{SPEECH.stem}.mp4"]

    def animate(audio: Path, output: Path, *extra: str) -> None:
        _run(["animate", "--audio", str(audio), "--checkpoint", str(best), "--output", str(output), "--overwrite",
              *extra])  # fmt: skip

    animate(held_out, videos[0], "--subject", test_subject)
    animate(SPEECH, videos[1])
    if model == "flagship":
        videos.append(OUT / f"human_{SPEECH.stem}_streamed.mp4")
        animate(SPEECH, videos[2], "--stream")

    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    lve_model, lve_static = metrics["model"]["lve"], metrics["static_template"]["lve"]
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s")
    print(f"  dataset:      {DATA}/ (VOCASET processed layout)")
    print(f"  checkpoint:   {best}")
    print(
        f"  metrics:      {run / 'metrics.json'}  (LVE {lve_model:.3e} vs static template {lve_static:.3e} m^2)"
    )
    print(f"  logs:         {run / 'logs'} (CSV), {run / 'wandb'} (offline; `wandb sync` uploads)")
    for v in videos:
        print(f"  video:        {v}")


if __name__ == "__main__":
    main()
