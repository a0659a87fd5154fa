"""Portrait generator throughput: frames per second of ``render.generator.PortraitGenerator`` against the warp-only
baseline, measured in the same run on a CPU (2 threads by default).

Run: ``python benchmarks/portrait.py [--sizes 256] [--repeats 30] [--threads 2] [--checkpoint CKPT]``.

The inputs are a real synthetic portrait clip (``talk.synth.portrait.render_portrait_clip``: the procedural head
with its mouth interior, ~6200 vertices, 25 frames cycled) at each size, and each frame is produced as at inference
from a still portrait, one frame per call (the streaming case):

* baseline, warp only: ``render.warp.warp_portrait`` (mesh flow + ``grid_sample``) of the reference to the frame's
  mesh, the output of the warp-only method ``talk test`` reports beside the generator;
* conditioning: the warp plus the normals / depth render of the frame's mesh
  (``render.rasterizer.TorchRasterizer``), everything the generator reads;
* generator alone (``torch.inference_mode``), on prepared conditioning;
* the whole frame: conditioning + generator;
* with ``--checkpoint``: ``talk animate --portrait`` end to end on ``--seconds`` of speech (10 by default) against
  ``talk animate`` rendering the mesh (:func:`end_to_end`).

The generator has the default architecture of ``experiments/synthetic/portrait.yaml`` (its weights do not change
the cost); ``--checkpoint`` loads a trained one, architecture included (e.g. one trained with ``fold: 4``). Each line gives the median wall time, the median process CPU
time (all threads) and frames per second; on a machine shared with other jobs the CPU time shows the cost of a
frame whatever share of the cores the scheduler gave, and torch's OpenMP threads wait on each other when the load
exceeds the cores (``--threads 1`` shows the cost without that).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numba
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.timing import timed  # noqa: E402
from render.generator import PortraitGenerator  # noqa: E402
from render.rasterizer import TorchRasterizer  # noqa: E402
from render.warp import warp_portrait  # noqa: E402
from talk.synth.portrait import render_portrait_clip  # noqa: E402
from talk.synth.portrait_dataset import DEPTH_SCALE  # noqa: E402

FRAMES = 25


def report(name: str, timing: tuple[float, float]) -> None:
    wall, cpu = timing
    print(f"  {name:44s} {wall * 1e3:7.2f} ms wall {cpu * 1e3:7.2f} ms CPU  {1 / wall:7.1f} fps")


def load_generator(checkpoint: str | None) -> PortraitGenerator:
    """The default generator, or a trained ``PortraitModule``'s (its architecture from the checkpoint's config)."""
    if not checkpoint:
        return PortraitGenerator().eval()
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    config = (ckpt.get("hyper_parameters") or {}).get("generator") or {}
    gen = PortraitGenerator(**(config.get("init_args") or {}) if isinstance(config, dict) else {})
    state = ckpt["state_dict"]
    gen.load_state_dict({k[len("generator.") :]: v for k, v in state.items() if k.startswith("generator.")})
    return gen.eval()


def bench_size(size: int, gen: PortraitGenerator, repeats: int) -> None:
    clip = render_portrait_clip(seed=7, n_frames=FRAMES + 1, size=size, supersample=1)
    camera = clip.camera()
    faces = torch.from_numpy(clip.faces.astype(np.int64))
    mouth = torch.from_numpy(clip.mouth_faces.astype(np.int64))
    reference = torch.from_numpy(clip.frames[0]).permute(2, 0, 1)[None].float() / 255.0
    neutral = torch.from_numpy(clip.vertices[0].astype(np.float32))
    meshes = [torch.from_numpy(v.astype(np.float32)) for v in clip.vertices[1:]]
    renderer = TorchRasterizer(shading="normals")
    counter = iter(range(10**9))

    def warp_only() -> torch.Tensor:
        return warp_portrait(
            reference, neutral, meshes[next(counter) % FRAMES], faces, camera, None, 0.125, mouth
        )

    def conditioning(k: int | None = None) -> dict[str, torch.Tensor]:
        """What ``PortraitClips`` computes for a sample (talk/synth/portrait_dataset.py), batch of 1."""
        animated = meshes[next(counter) % FRAMES if k is None else k]
        warped = warp_portrait(reference, neutral, animated, faces, camera, None, 0.125, mouth)
        render = renderer.render(animated[None], faces, camera)
        flow, mask = warped.flow, warped.flow.mask[0]
        depth = torch.zeros(size, size)
        if bool(mask.any()):
            on = flow.depth[0][mask].float()
            depth[mask] = (on - on.median()) / DEPTH_SCALE
        return {
            "warped": warped.image.float(),
            "reference": reference,
            "normals": ((render.image[..., :3] * 2 - 1) * render.mask[..., None]).permute(0, 3, 1, 2).float(),
            "depth": depth[None, None],
            "mask": mask[None, None].float(),
            "mouth_mask": flow.mouth_mask[None].float(),
            "flow": flow.displacement.float() * (2.0 / size),
        }

    prepared = [conditioning(k) for k in range(FRAMES)]

    def generator_only() -> torch.Tensor:
        return gen(**prepared[next(counter) % FRAMES]).image

    def whole_frame() -> torch.Tensor:
        return gen(**conditioning()).image

    with torch.inference_mode():
        figures = {
            "baseline: warp only (flow + grid_sample)": timed(warp_only, repeats),
            "conditioning (warp + normals/depth render)": timed(conditioning, repeats),
            "generator alone": timed(generator_only, repeats),
            "whole frame (conditioning + generator)": timed(whole_frame, repeats),
        }
    params = sum(p.numel() for p in gen.parameters())
    print(
        f"{size}x{size}: generator {params / 1e6:.2f} M parameters, channels {list(gen.channels)}, fold {gen.fold}"
    )
    for name, timing in figures.items():
        report(name, timing)


def end_to_end(checkpoint: str, seconds: float) -> None:
    """Process wall time of ``talk animate --portrait`` (matplotlib's grace_hopper.jpg, the shipped default motion
    model, the bundled ARCTIC recording tiled to ``seconds``), against ``talk animate`` of the same speech rendering
    the mesh at 512x512 instead (the baseline: the same motion, the rasterizer instead of warp + generator)."""
    import subprocess
    import tempfile
    import time

    import matplotlib.cbook
    import soundfile as sf

    photo = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    wav, sr = sf.read(ROOT / "assets" / "speech" / "arctic_a0009.wav", dtype="float32")
    with tempfile.TemporaryDirectory() as tmp:
        speech = Path(tmp) / "speech.wav"
        sf.write(speech, np.tile(wav, int(seconds * sr) // len(wav) + 1)[: int(seconds * sr)], sr)
        rows = {
            "talk animate --portrait (512x600 photo)": ["--portrait", str(photo), "--portrait-generator", checkpoint],
            "baseline: talk animate, mesh at 512x512": [],
        }
        for name, extra in rows.items():
            cmd = [sys.executable, "-m", "talk.cli.main", "animate", "--audio", str(speech), "--output",
                   str(Path(tmp) / "out.mp4"), "--overwrite", "true", *extra]  # fmt: skip
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
            print(f"  {name:<44} {time.perf_counter() - start:6.1f} s for {seconds:g} s of speech (process wall)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per measurement")
    parser.add_argument("--threads", type=int, default=2, help="torch and numba threads")
    parser.add_argument(
        "--checkpoint", default=None, help="a PortraitModule checkpoint (default: random weights)"
    )
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="with --checkpoint: also time `talk animate --portrait` of this much speech (0: skip)")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    gen = load_generator(args.checkpoint)
    load0 = os.getloadavg()[0]
    print(f"threads: torch {torch.get_num_threads()}, numba {numba.get_num_threads()}; load average {load0:.2f} on "
          f"{os.cpu_count()} cores")  # fmt: skip
    for size in args.sizes:
        bench_size(size, gen, args.repeats)
    if args.checkpoint is not None and args.seconds > 0:
        end_to_end(args.checkpoint, args.seconds)
    print(
        f"load average {load0:.2f} -> {os.getloadavg()[0]:.2f} (other jobs share the cores when it exceeds the threads)"
    )


if __name__ == "__main__":
    main()
