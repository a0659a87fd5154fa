"""Peak memory of ``talk animate`` on long audio, for every kind of model: does it stay bounded as speech grows?

Run: ``python benchmarks/memory.py [--seconds 10 60 600] [--models faceformer lm ...] [--size 512]``
(not in CI: 10 minutes of audio is 18000 frames to render at 512x512, several minutes per model on 2 cores;
``--seconds 10 60`` takes a few minutes per model). ``--long-models`` limits the longest length to some models.

Setting (stated in the output): each model is built from its config in ``experiments/`` with random
initialisation (memory and speed do not depend on the weights; the code vectors, the regression basis and the
decoders' output layers get random values of a few millimetres so that the face moves as a trained one does),
and written as a ``talk export`` file. Models:

* ``faceformer``, ``lm``, ``flame_lm`` (``experiments/synthetic/``, 30 fps, mel encoder): the regression baseline
  (faceformer.yaml), the flagship (lm.yaml over tokenizer.yaml, expected-latent decoding of sampled codes) and the
  flagship over FLAME parameters (flame_lm.yaml over flame_tokenizer.yaml and the face model), over the procedural
  FLAME-format head of ``talk data synth`` (4948 vertices);
* ``vocaset_faceformer``, ``vocaset_lm`` (``experiments/vocaset/``, 30 fps, 5023 vertices, 8 training speakers)
  and ``biwi_faceformer``, ``biwi_lm`` (``experiments/biwi/``, 25 fps, 23370 vertices, 6 training speakers): the
  same two models at the datasets' sizes, with the hub speech encoder their configs name (wav2vec2-base-960h)
  replaced by a randomly initialised encoder of the same architecture and size (``transformers.AutoConfig`` of
  its model type: 95 M parameters; nothing is downloaded). Their meshes are the procedural head padded to the
  dataset's vertex count (VOCASET: 75 copies of head vertices; BIWI: the head subdivided once at edge midpoints,
  4x the triangles, then padded), so every per-vertex tensor has the dataset's size.

Speech is the bundled ARCTIC utterance tiled to length, a 16 kHz wav.

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
from dataclasses import dataclass
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
CONFIGS = ROOT / "experiments"
SYNTHETIC_TRAIN = ["SYN_01_F", "SYN_02_M", "SYN_03_F", "SYN_04_M", "SYN_05_F", "SYN_06_M"]
# VOCASET and BIWI training speakers (DESIGN.md section 5): their number is the number of styles.
VOCASET_TRAIN = ["FaceTalk_170728_03272_TA", "FaceTalk_170904_00128_TA", "FaceTalk_170725_00137_TA",
                 "FaceTalk_170915_00223_TA", "FaceTalk_170811_03274_TA", "FaceTalk_170913_03279_TA",
                 "FaceTalk_170904_03276_TA", "FaceTalk_170912_03278_TA"]  # fmt: skip
BIWI_TRAIN = ["F2", "F3", "F4", "M3", "M4", "M5"]
# Feature-extractor settings of the hub checkpoints the configs name (their preprocessor_config.json).
HUB_FEATURE_EXTRACTOR = {"do_normalize": True, "return_attention_mask": False, "sampling_rate": SAMPLE_RATE}


@dataclass(frozen=True)
class Setting:
    """One benchmarked model: its config (``experiments/<config>.yaml``), the tokenizer config of a token model,
    the dataset's frame rate, vertex count (None: the procedural head as it is) and training speakers."""

    config: str
    tokenizer: str | None
    fps: float
    vertices: int | None
    subjects: tuple[str, ...]


MODELS = {
    "faceformer": Setting("synthetic/faceformer", None, 30.0, None, tuple(SYNTHETIC_TRAIN)),
    "lm": Setting("synthetic/lm", "synthetic/tokenizer", 30.0, None, tuple(SYNTHETIC_TRAIN)),
    "flame_lm": Setting(
        "synthetic/flame_lm", "synthetic/flame_tokenizer", 30.0, None, tuple(SYNTHETIC_TRAIN)
    ),
    "vocaset_faceformer": Setting("vocaset/faceformer", None, 30.0, 5023, tuple(VOCASET_TRAIN)),
    "vocaset_lm": Setting("vocaset/lm", "vocaset/tokenizer", 30.0, 5023, tuple(VOCASET_TRAIN)),
    "biwi_faceformer": Setting("biwi/faceformer", None, 25.0, 23370, tuple(BIWI_TRAIN)),
    "biwi_lm": Setting("biwi/lm", "biwi/tokenizer", 25.0, 23370, tuple(BIWI_TRAIN)),
}
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
    """``model.init_args`` of ``experiments/<name>.yaml``."""
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["model"]["init_args"]


def with_args(config: dict, **extra: object) -> dict:
    return {"class_path": config["class_path"], "init_args": {**(config.get("init_args") or {}), **extra}}


def hub_free(encoder: dict) -> dict:
    """An encoder config that names a hub speech model, as a randomly initialised one of the same architecture
    and size: the transformers config of its model type (the form checkpoints store, ``hf_config``)."""
    args = dict(encoder.get("init_args") or {})
    if not encoder["class_path"].endswith("HFSpeechEncoder") or args.get("name_or_path") is None:
        return encoder
    from transformers import AutoConfig

    name = str(args.pop("name_or_path")).lower()
    model_type = next(t for t in ("wavlm", "hubert", "wav2vec2") if t in name.replace("-", ""))
    if "base" not in name:
        raise ValueError(f"no architecture known for speech encoder {name}; add it to benchmarks/memory.py.")
    args.update(name_or_path=None, hf_config=AutoConfig.for_model(model_type).to_dict(),
                feature_extractor=dict(HUB_FEATURE_EXTRACTOR))  # fmt: skip
    return {"class_path": encoder["class_path"], "init_args": args}


def output_dim(encoder: dict) -> int:
    """Feature size of an encoder config: its ``output_dim``, else the transformer's hidden size."""
    args = encoder["init_args"]
    return int(args.get("output_dim") or args["hf_config"]["hidden_size"])


def regression_config(name: str, motion_dim: int, num_styles: int, fps: float) -> dict:
    """The pipeline config ``talk fit -c <name>.yaml`` writes (``RegressionModule``: 128 basis components)."""
    args = model_args(name)
    encoder = hub_free(args["audio_encoder"])
    basis = min(args.get("basis_components", 128), motion_dim)
    regressor = with_args(
        args["generator"], motion_dim=basis, num_styles=num_styles, audio_dim=output_dim(encoder)
    )
    generator = {"class_path": "talk.pipeline.generators.RegressionGenerator",
                 "init_args": {"regressor": regressor, "motion_dim": motion_dim, "basis_components": basis,
                               "offset_scale": args.get("offset_scale", 0.01)}}  # fmt: skip
    return {"class_path": "talk.pipeline.model.AudioToMotion",
            "init_args": {"audio_encoder": encoder, "generator": generator, "num_styles": num_styles, "fps": fps,
                          "encoder_window_seconds": args.get("encoder_window_seconds", 10.0),
                          "encoder_context_seconds": args.get("encoder_context_seconds", 0.5)}}  # fmt: skip


def token_config(
    lm_name: str, tokenizer_name: str, motion_dim: int, num_styles: int, fps: float, face: Path
) -> dict:
    """The pipeline config ``talk fit -c <lm_name>.yaml`` writes over a tokenizer of ``<tokenizer_name>.yaml``."""
    args, tok_args = model_args(lm_name), model_args(tokenizer_name)
    encoder = hub_free(args["audio_encoder"])
    face_model = tok_args.get("face_model")
    if face_model is not None:  # the FLAME-format file of the procedural head, written for this run
        face_model = with_args(face_model, model_path=str(face))
        motion_dim = instantiate(face_model).num_motion_params
    tokenizer = with_args(tok_args["tokenizer"], motion_dim=motion_dim)
    quantizer = tokenizer["init_args"]["quantizer"]["init_args"]
    stride = tokenizer["init_args"].get("stride", 1)
    lm = with_args(args["lm"], num_codebooks=quantizer["num_quantizers"], codebook_size=quantizer["codebook_size"],
                   audio_dim=stride * output_dim(encoder), num_styles=num_styles)  # fmt: skip
    generator = {"class_path": "talk.pipeline.generators.TokenGenerator",
                 "init_args": {"lm": lm, "tokenizer": tokenizer, "decode_codebooks": args.get("decode_codebooks"),
                               "decode_latent": args.get("decode_latent", "codes")}}  # fmt: skip
    return {"class_path": "talk.pipeline.model.AudioToMotion",
            "init_args": {"audio_encoder": encoder, "generator": generator, "face_model": face_model,
                          "num_styles": num_styles, "fps": fps, "sampling": args.get("sampling") or {},
                          "encoder_window_seconds": args.get("encoder_window_seconds", 10.0),
                          "encoder_context_seconds": args.get("encoder_context_seconds", 0.5)}}  # fmt: skip


def mesh(vertices: int | None) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(template ``[V, 3]``, faces ``[F, 3]``, regions) of the procedural head with ``vertices`` vertices: as it
    is (None), subdivided at edge midpoints while it has fewer than half of them, then padded with copies of its
    own vertices (points the faces do not use, at positions the camera frames anyway)."""
    face = build_procedural_face(0)
    points = torch.as_tensor(face.model["v_template"], dtype=torch.float32)
    faces = torch.as_tensor(face.model["f"].astype(np.int64))
    regions = {k: torch.as_tensor(v, dtype=torch.int64) for k, v in face.masks.items()}
    if vertices is None:
        return points, faces, regions
    while 2 * points.shape[0] < vertices:
        edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(dim=1).values
        unique, index = torch.unique(edges, dim=0, return_inverse=True)
        mid = (index + points.shape[0]).view(3, -1)  # the midpoints of edges 01, 12, 20 of every face
        points = torch.cat([points, points[unique].mean(dim=1)])
        a, b, c = faces.unbind(1)
        ab, bc, ca = mid
        faces = torch.cat([torch.stack(t, 1) for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))])
    if points.shape[0] > vertices:
        raise ValueError(f"the procedural head has more than {vertices} vertices.")
    extra = torch.arange(vertices - points.shape[0]) % points.shape[0]
    return torch.cat([points, points[extra]]), faces, regions


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
    setting = MODELS[kind]
    paths = write_procedural_face(folder / "face")
    template, faces, regions = mesh(setting.vertices)
    subjects = list(setting.subjects)
    motion_dim = template.numel()
    if setting.tokenizer is None:
        config = regression_config(setting.config, motion_dim, len(subjects), setting.fps)
    else:
        config = token_config(
            setting.config, setting.tokenizer, motion_dim, len(subjects), setting.fps, paths.model
        )
    torch.manual_seed(0)
    init = dict(config["init_args"])
    if "sampling" in init:
        from motion.lm import Sampling

        init["sampling"] = Sampling(**init["sampling"])
    model = instantiate({"class_path": config["class_path"], "init_args": init}).eval()
    randomize(model, "faceformer" if setting.tokenizer is None else "lm")
    model.assets = Assets(tuple(subjects), {s: template for s in subjects}, faces=faces, regions=regions,
                          fps=setting.fps, sample_rate=SAMPLE_RATE)  # fmt: skip
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
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--long-models", nargs="+", choices=list(MODELS), default=None,
                        help="models run at the longest length (default: all)")  # fmt: skip
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    longest = max(args.seconds)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"talk animate at {args.size}x{args.size}, random-init models of experiments/ (hub encoders: same "
          "architecture, random weights)")  # fmt: skip
    print(f"{'model':>18} {'run':>16} {'frames':>7} {'peak RSS (MiB)':>15} {'+ over load':>12} {'wall (s)':>9} "
          f"{'s per audio s':>14}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="talk-memory-") as tmp:
        folder = Path(tmp)
        wavs = {s: speech(s, folder / f"speech_{s:g}s.wav") for s in sorted(args.seconds)}
        for kind in args.models:
            try:
                checkpoint = build(kind, folder)
            except Exception as exc:  # noqa: BLE001 - a row reports its failure and the run goes on
                print(f"{kind:>18} {'build':>16} failed: {exc}", flush=True)
                continue
            for seconds, wav in wavs.items():
                if seconds == longest and args.long_models is not None and kind not in args.long_models:
                    continue
                out = folder / f"{kind}_{seconds:g}s.mp4"
                command = ["-m", "talk.cli.main", "animate", "--audio", str(wav), "--checkpoint", str(checkpoint),
                           "--output", str(out), "--size", str(args.size)]  # fmt: skip
                try:
                    _, base = measure(["-c", BASELINE, str(checkpoint), str(wav)], folder)
                    print(f"{kind:>18} {f'load {seconds:g} s':>16} {'':>7} {base:15.0f}", flush=True)
                    wall, peak = measure(command, folder)
                except Exception as exc:  # noqa: BLE001
                    print(f"{kind:>18} {f'{seconds:g} s':>16} failed: {exc}", flush=True)
                    continue
                frames = round(seconds * MODELS[kind].fps)
                print(f"{kind:>18} {f'animate {seconds:g} s':>16} {frames:7d} {peak:15.0f} {peak - base:+12.0f} "
                      f"{wall:9.1f} {wall / seconds:14.2f}", flush=True)  # fmt: skip
                out.unlink(missing_ok=True)
    print(
        "target: peak RSS <= 3072 MiB for 10 minutes at 512x512, and no growth of '+ over load' with length"
    )


if __name__ == "__main__":
    main()
