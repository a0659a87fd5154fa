"""Peak memory of ``talk animate`` on long audio, for every kind of model: does it stay bounded as speech grows?

Run: ``python benchmarks/memory.py [--seconds 10 60 600] [--models faceformer lm flame_lm] [--size 512]``
(not in CI: 10 minutes of audio is 18000 frames to render at 512x512, several minutes per model on 2 cores;
``--seconds 10 60`` takes a few minutes in all). ``--long-models`` limits the longest length to some models.

Setting (stated in the output): each model is built from its config in ``experiments/synthetic/`` with random
initialisation (memory and speed do not depend on the weights; the code vectors, the regression basis and the
decoders' output layers get random values of a few millimetres so that the face moves as a trained one does),
over the procedural FLAME-format head of ``talk data synth`` (4948 vertices), and written as a ``talk export``
file. Models: ``faceformer`` (regression baseline, faceformer.yaml), ``lm`` (the flagship, lm.yaml over
tokenizer.yaml, expected-latent decoding of sampled codes), ``flame_lm`` (the flagship over FLAME parameters,
flame_lm.yaml over flame_tokenizer.yaml and the face model). Speech is the bundled ARCTIC utterance tiled to
length, a 16 kHz wav.

Every row is one fresh process (``sys.executable``, the repository first on ``sys.path``) started by a small
launcher that reads its ``os.wait4`` usage: peak RSS is the largest resident set of the process or of any child it
waited for (ffmpeg), the figure ``/usr/bin/time -v`` prints. Rows, per model:

* ``load N s`` (the baseline, measured in the same run): imports what ``talk animate`` imports, loads the model
  (``from_checkpoint``) and reads the N seconds of audio, without generating: the floor of the next row;
* ``animate N s``: ``python -m talk.cli.main animate --audio A --checkpoint M --output O --size S`` on N seconds
  of speech: peak RSS, its excess over its baseline (``+ over load``), wall time, and wall time per second of
  audio.

Bounded memory means the excess does not grow with the length (target: peak <= 3 GB at 10 minutes, 512x512).
A row whose command fails prints the last line of its error output instead of figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audio.io import load_audio  # noqa: E402
from motion.face.procedural import build_procedural_face, write_procedural_face  # noqa: E402
from talk.pipeline import Assets, export  # noqa: E402
from talk.pipeline.config import instantiate  # noqa: E402

SAMPLE_RATE = 16000
FPS = 30.0
CONFIGS = ROOT / "experiments" / "synthetic"
MODELS = ("faceformer", "lm", "flame_lm")
# Runs argv[1:] and prints its exit code and peak RSS (kB, of it or any child it waited for), from wait4.
LAUNCHER = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)\n"
)
BASELINE = (
    "import sys, talk.cli.main, talk.pipeline.animate, render\n"
    "from audio.io import load_audio\nfrom talk.pipeline.load import from_checkpoint\n"
    "model = from_checkpoint(sys.argv[1])\nwav = load_audio(sys.argv[2], sample_rate=16000)\n"
)


def model_args(name: str) -> dict:
    """``model.init_args`` of ``experiments/synthetic/<name>.yaml``."""
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["model"]["init_args"]


def train_subjects() -> list[str]:
    return yaml.safe_load((CONFIGS / "faceformer.yaml").read_text())["data"]["init_args"]["train_subjects"]


def with_args(config: dict, **extra: object) -> dict:
    return {"class_path": config["class_path"], "init_args": {**(config.get("init_args") or {}), **extra}}


def regression_config(motion_dim: int, num_styles: int) -> dict:
    """The pipeline config ``talk fit -c faceformer.yaml`` writes (``RegressionModule``: 128 basis components)."""
    args = model_args("faceformer")
    encoder = args["audio_encoder"]
    basis = min(args.get("basis_components", 128), motion_dim)
    regressor = with_args(args["generator"], motion_dim=basis, num_styles=num_styles,
                          audio_dim=encoder["init_args"]["output_dim"])  # fmt: skip
    generator = {"class_path": "talk.pipeline.generators.RegressionGenerator",
                 "init_args": {"regressor": regressor, "motion_dim": motion_dim, "basis_components": basis,
                               "offset_scale": args.get("offset_scale", 0.01)}}  # fmt: skip
    return {"class_path": "talk.pipeline.model.AudioToMotion",
            "init_args": {"audio_encoder": encoder, "generator": generator, "num_styles": num_styles, "fps": FPS}}  # fmt: skip


def token_config(lm_name: str, tokenizer_name: str, motion_dim: int, num_styles: int, face: Path) -> dict:
    """The pipeline config ``talk fit -c <lm_name>.yaml`` writes over a tokenizer of ``<tokenizer_name>.yaml``."""
    args, tok_args = model_args(lm_name), model_args(tokenizer_name)
    encoder = args["audio_encoder"]
    face_model = tok_args.get("face_model")
    if face_model is not None:  # the FLAME-format file of the procedural head, written for this run
        face_model = with_args(face_model, model_path=str(face))
        motion_dim = instantiate(face_model).num_motion_params
    tokenizer = with_args(tok_args["tokenizer"], motion_dim=motion_dim)
    quantizer = tokenizer["init_args"]["quantizer"]["init_args"]
    stride = tokenizer["init_args"].get("stride", 1)
    lm = with_args(args["lm"], num_codebooks=quantizer["num_quantizers"], codebook_size=quantizer["codebook_size"],
                   audio_dim=stride * encoder["init_args"]["output_dim"], num_styles=num_styles)  # fmt: skip
    generator = {"class_path": "talk.pipeline.generators.TokenGenerator",
                 "init_args": {"lm": lm, "tokenizer": tokenizer, "decode_codebooks": args.get("decode_codebooks"),
                               "decode_latent": args.get("decode_latent", "codes")}}  # fmt: skip
    return {"class_path": "talk.pipeline.model.AudioToMotion",
            "init_args": {"audio_encoder": encoder, "generator": generator, "face_model": face_model,
                          "num_styles": num_styles, "fps": FPS, "sampling": args.get("sampling") or {},
                          "encoder_window_seconds": args.get("encoder_window_seconds", 10.0),
                          "encoder_context_seconds": args.get("encoder_context_seconds", 0.5)}}  # fmt: skip


def scale_output(layer: torch.nn.Module, inputs: torch.Tensor, target: float) -> None:
    """Scales ``layer``'s weight and bias so that its output on ``inputs`` has standard deviation ``target``."""
    with torch.no_grad():
        std = float(layer(inputs).std())
        layer.weight.mul_(target / std)
        if layer.bias is not None:
            layer.bias.mul_(target / std)


def randomize(model: torch.nn.Module, kind: str) -> None:
    """Random values where a fresh model holds zeros, at the scale a trained one moves the face (millimetres)."""
    g = torch.Generator().manual_seed(0)
    generator = model.generator
    with torch.no_grad():
        if kind == "faceformer":
            regressor = generator.regressor
            torch.nn.init.normal_(regressor.head.weight, std=0.1, generator=g)
            generator.basis.normal_(std=0.1 / generator.basis.shape[0] ** 0.5, generator=g)  # ~1 mm offsets
            generator.basis_ready.fill_(True)
            return
        tokenizer = generator.tokenizer
        for layer in tokenizer.quantizer.layers:
            layer.embed.normal_(generator=g)
        last = [m for m in tokenizer.decoder.modules() if isinstance(m, torch.nn.Conv1d)][-1]
        hidden = torch.randn(1, last.in_channels, 64, generator=g)
        # vertex offsets of about 1 mm; FLAME parameters of about 0.3 (expression coefficients, jaw radians)
        scale_output(last, hidden, 0.001 if model.face_model is None else 0.3)


def build(kind: str, folder: Path) -> Path:
    """Writes the ``talk export`` file of a randomly initialised ``kind`` model; its path."""
    face = build_procedural_face(0)
    paths = write_procedural_face(folder / "face")
    template = torch.as_tensor(face.model["v_template"], dtype=torch.float32)
    subjects = train_subjects()
    motion_dim = template.numel()
    if kind == "faceformer":
        config = regression_config(motion_dim, len(subjects))
    else:
        tokenizer = {"lm": "tokenizer", "flame_lm": "flame_tokenizer"}[kind]
        config = token_config(kind, tokenizer, motion_dim, len(subjects), paths.model)
    torch.manual_seed(0)
    init = dict(config["init_args"])
    if "sampling" in init:
        from motion.lm import Sampling

        init["sampling"] = Sampling(**init["sampling"])
    model = instantiate({"class_path": config["class_path"], "init_args": init}).eval()
    randomize(model, kind)
    regions = {k: torch.as_tensor(v, dtype=torch.int64) for k, v in face.masks.items()}
    model.assets = Assets(tuple(subjects), {s: template for s in subjects},
                          faces=torch.as_tensor(face.model["f"].astype(np.int64)), regions=regions,
                          fps=FPS, sample_rate=SAMPLE_RATE)  # fmt: skip
    model.config = config
    return export(model, folder / f"{kind}.pt")


def speech(seconds: float, path: Path) -> Path:
    import soundfile as sf

    wav = load_audio(ROOT / "assets" / "speech" / "arctic_a0009.wav", sample_rate=SAMPLE_RATE)
    sf.write(path, np.resize(wav, int(seconds * SAMPLE_RATE)).astype(np.float32), SAMPLE_RATE)
    return path


def measure(args: list[str], cwd: Path) -> tuple[float, float]:
    """Runs ``python *args`` in a fresh process; (wall seconds, peak RSS in MiB of it or a waited-for child).

    The process is started by a small launcher process: on Linux a child's peak RSS starts from its parent's
    (the high-water mark survives fork and exec), and this script's own RSS holds the models it built.
    """
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(":")
    )
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, sys.executable, *args], cwd=cwd, env=env,
                          capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - start
    code, peak = (proc.stdout.split() + ["1", "0"])[:2] if proc.returncode == 0 else ("1", "0")
    if int(code) != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise RuntimeError(lines[-1].strip() if lines else f"exit status {code}")
    return seconds, int(peak) / 1024.0  # Linux: kilobytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0, 600.0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--long-models", nargs="+", choices=MODELS, default=None,
                        help="models run at the longest length (default: all)")  # fmt: skip
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    longest = max(args.seconds)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"talk animate at {args.size}x{args.size}, {FPS:g} fps, random-init models of experiments/synthetic/")  # fmt: skip
    print(f"{'model':>10} {'run':>16} {'frames':>7} {'peak RSS (MiB)':>15} {'+ over load':>12} {'wall (s)':>9} "
          f"{'s per audio s':>14}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="talk-memory-") as tmp:
        folder = Path(tmp)
        wavs = {s: speech(s, folder / f"speech_{s:g}s.wav") for s in sorted(args.seconds)}
        for kind in args.models:
            try:
                checkpoint = build(kind, folder)
            except Exception as exc:  # noqa: BLE001 - a row reports its failure and the run goes on
                print(f"{kind:>10} {'build':>16} failed: {exc}", flush=True)
                continue
            for seconds, wav in wavs.items():
                if seconds == longest and args.long_models is not None and kind not in args.long_models:
                    continue
                out = folder / f"{kind}_{seconds:g}s.mp4"
                command = ["-m", "talk.cli.main", "animate", "--audio", str(wav), "--checkpoint", str(checkpoint),
                           "--output", str(out), "--size", str(args.size)]  # fmt: skip
                try:
                    _, base = measure(["-c", BASELINE, str(checkpoint), str(wav)], folder)
                    print(f"{kind:>10} {f'load {seconds:g} s':>16} {'':>7} {base:15.0f}", flush=True)
                    wall, peak = measure(command, folder)
                except Exception as exc:  # noqa: BLE001
                    print(f"{kind:>10} {f'{seconds:g} s':>16} failed: {exc}", flush=True)
                    continue
                frames = round(seconds * FPS)
                print(f"{kind:>10} {f'animate {seconds:g} s':>16} {frames:7d} {peak:15.0f} {peak - base:+12.0f} "
                      f"{wall:9.1f} {wall / seconds:14.2f}", flush=True)  # fmt: skip
                out.unlink(missing_ok=True)
    print(
        "target: peak RSS <= 3072 MiB for 10 minutes at 512x512, and no growth of '+ over load' with length"
    )


if __name__ == "__main__":
    main()
