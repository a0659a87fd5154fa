"""``make demo``: the whole path from data to video, with the real commands printed as they run.

By default (``--model phonetic``) the model that ships with talk, for real voices, about 3 minutes on 2 CPU cores:

1. ``talk data speech`` writes the TTS speech set with exact phone labels (espeak-ng, plus the Festival and Flite
   voices when they are installed: ``make speech-engines``); skipped when it is already there,
2. ``talk fit -c experiments/speech/phonetic.yaml`` trains the phone classifier of the phonetic generator,
3. ``talk test --lipsync.set default`` scores it on the held-out TTS speakers and on the bundled real recordings
   (``metrics.json``: vertex metrics and ``real_speech`` lip sync),
4. ``talk export`` writes the inference file (``talk/pretrained/default.pt`` is this file),
5. ``talk animate`` renders a held-out TTS sentence and a real human recording (CMU ARCTIC) to mp4.

``--model flagship`` (``make demo-flagship``) trains the RVQ tokenizer + MotionLM on the synthetic dataset
(``talk data synth``), about 13 minutes, and also streams the human recording (``--stream``);
``--model baseline`` (``make demo-baseline``) the FaceFormer-style regression baseline there, about 3 minutes.
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
SPEECH_DATA = Path("data/speech")
PHONETIC_CONFIG = "experiments/speech/phonetic.yaml"
PHONETIC_RUN = Path("outputs/speech/phonetic")
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
        choices=["phonetic", "flagship", "baseline"],
        default="phonetic",
        help="phonetic (the shipped default for real voices), flagship (RVQ tokenizer + MotionLM on the synthetic "
        "set) or baseline (regression on the synthetic set)",
    )
    args = parser.parse_args(argv)
    model = args.model
    start = time.perf_counter()
    epochs = [] if args.epochs is None else ["--trainer.max_epochs", str(args.epochs)]
    if model == "phonetic":
        _phonetic(epochs, start)
        return
    if not (DATA / "synth_meta.json").is_file():
        _run(["data", "synth", "--out", str(DATA)])
    else:
        print(f"\nusing the synthetic dataset already in {DATA}")
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


def _phonetic(epochs: list[str], start: float) -> None:
    """``make demo``'s default path (module docstring)."""
    import yaml

    from talk.synth.speech_engines import installed_voices

    if not (SPEECH_DATA / "speech_meta.json").is_file():
        engines = ["espeak", *(e for e in ("festival", "flite") if installed_voices(e))]
        _run(["data", "speech", "--out", str(SPEECH_DATA), "--engines", ",".join(engines)])
    else:
        print(f"\nusing the speech set already in {SPEECH_DATA}")
    _run(["fit", "-c", PHONETIC_CONFIG, *epochs])
    best = PHONETIC_RUN / "checkpoints" / "best.ckpt"
    if not best.is_file():
        best = PHONETIC_RUN / "checkpoints" / "last.ckpt"
    _run(["test", "-c", PHONETIC_CONFIG, "--ckpt_path", str(best), "--lipsync.set", "default"])
    exported = OUT / "phonetic.pt"
    _run(["export", "--checkpoint", str(best), "--output", str(exported), "--overwrite", "true"])
    data_args = yaml.safe_load((ROOT / PHONETIC_CONFIG).read_text())["data"]["init_args"]
    subject = data_args["test_subjects"][0]
    held_out = SPEECH_DATA / "wav" / f"{subject}_sentence{data_args['test_sentences'][0]:02d}.wav"
    videos = [OUT / f"tts_{held_out.stem}.mp4", OUT / f"human_{SPEECH.stem}.mp4"]
    _run(["animate", "--audio", str(held_out), "--checkpoint", str(exported), "--output", str(videos[0]),
          "--subject", subject, "--overwrite", "true"])  # fmt: skip
    _run(["animate", "--audio", str(SPEECH), "--checkpoint", str(exported), "--output", str(videos[1]),
          "--overwrite", "true"])  # fmt: skip
    report = json.loads((PHONETIC_RUN / "metrics.json").read_text())
    real = report.get("real_speech", {}).get("pooled", {})
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s")
    print(f"  dataset:      {SPEECH_DATA}/ (TTS speech, phones/*.lab)")
    print(f"  checkpoint:   {best}; inference file {exported}")
    print(f"  metrics:      {PHONETIC_RUN / 'metrics.json'}  (LVE {report['metrics']['model']['lve_mm']:.3f} mm "
          f"on held-out TTS speakers; bilabial closure on real speech "
          f"{real.get('bilabials_closed', '?')}/{real.get('bilabials_judged', '?')})")  # fmt: skip
    for v in videos:
        print(f"  video:        {v}")


if __name__ == "__main__":
    main()
