"""Portrait warp throughput: ms per frame of ``mesh_flow`` + ``warp`` against ``grid_sample`` alone, on 2 CPU cores.

Run: ``python benchmarks/warp.py [--sizes 256 512] [--repeats 50] [--torch-threads 1]``. Uses 2 torch and 2 numba
threads by default; on a machine whose load exceeds its cores, torch's OpenMP workers wait on each other at every
full-image operation (many times the single-thread cost), and ``--torch-threads 1`` shows the cost without that.

The mesh is the procedural FLAME-format head (~5000 vertices, ~10000 faces) framed like a portrait by the camera
``talk.track.fit.fit_image`` returns (pinhole at the origin, focal 1.2 x the image side), animated by the jaw and
a small head turn, 25 different frames cycled. Measured in one run, per size, one frame per call (the streaming
case):

* baseline: ``grid_sample`` alone with the identity grid on the same image (the floor of any warp);
* ``rasterize`` alone (numba visibility of the animated mesh: the floor of any mesh-driven flow);
* ``mesh_flow`` without gradients (projection, visibility, then numba: per-pixel flow, extension outside the
  face, grid), and its extension step (``extend_to_grid``) alone;
* ``warp`` (``grid_sample`` along the mesh flow) and flow + warp together, the figure the 25 fps target is about;
* flow + warp forward and backward (the torch path: gradients to the portrait and both meshes, a training
  step's share);
* 25 frames in one batched call, per frame.

Each line gives the median wall time, the median process CPU time (all threads) and the CPU time as a multiple of
grid_sample's: on a machine shared with other jobs the CPU time shows the cost of a frame whatever share of the
cores the scheduler gave us, and the ratio carries over to other machines better than either.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numba
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.timing import timed  # noqa: E402
from motion.face.flame import FLAME, FLAMEParams  # noqa: E402
from motion.face.procedural.face import EXPRESSION_NAMES, write_procedural_face  # noqa: E402
from render.camera import Camera  # noqa: E402
from render.flow import displacement_to_grid, extend_to_grid  # noqa: E402
from render.rasterizer import rasterize  # noqa: E402
from render.warp import mesh_flow, warp  # noqa: E402

THREADS = 2
FRAMES = 25


def head_sequence() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Neutral ``[V,3]``, ``FRAMES`` animated ``[T,V,3]`` (jaw + head turn) and faces of the procedural head."""
    with tempfile.TemporaryDirectory() as tmp:
        model = FLAME(str(write_procedural_face(tmp).model), n_shape=16, n_expression=len(EXPRESSION_NAMES))
    t = torch.arange(FRAMES + 1, dtype=torch.float32) / 25.0
    jaw = torch.zeros(FRAMES + 1, 3)
    jaw[1:, 0] = 0.12 * (1 - torch.cos(2 * torch.pi * 3 * t[1:]))  # opens up to 0.24 rad, 3 times a second
    pose = torch.zeros(FRAMES + 1, 3)
    pose[1:, 1] = 0.08 * torch.sin(2 * torch.pi * 0.5 * t[1:])  # a gentle head turn
    translation = torch.tensor([0.0, 0.04, -0.45]).expand(FRAMES + 1, 3)
    params = FLAMEParams(jaw_pose=jaw[None], global_pose=pose[None], translation=translation[None])
    with torch.no_grad():
        verts = model(params).vertices[0]
    return verts[0], verts[1:], model.faces.long()


def portrait(size: int) -> torch.Tensor:
    """A smooth random RGB image ``[1,3,S,S]`` (content does not change the cost)."""
    noise = torch.rand(1, 3, size // 8, size // 8, generator=torch.Generator().manual_seed(0))
    return torch.nn.functional.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False)


def report(name: str, timing: tuple[float, float], frames: int = 1, base: float | None = None) -> None:
    wall, cpu = timing[0] / frames, timing[1] / frames
    ratio = f"  {cpu / base:5.1f}x grid_sample's CPU" if base else ""
    print(f"  {name:34s} {wall * 1e3:7.2f} ms wall {cpu * 1e3:7.2f} ms CPU  {1 / wall:7.1f} fps{ratio}")


def bench_size(
    size: int, neutral: torch.Tensor, frames: torch.Tensor, faces: torch.Tensor, repeats: int
) -> None:
    """Print the figures of one image size."""
    camera = Camera(torch.eye(3)[None], torch.zeros(1, 3), 1.2 * size, (size, size))  # fit_image's camera
    image = portrait(size)
    counter = iter(range(10**9))

    def frame() -> torch.Tensor:
        return frames[next(counter) % FRAMES]

    identity = displacement_to_grid(torch.zeros(1, 2, size, size))
    flows = [mesh_flow(neutral, frames[k], faces, camera) for k in range(FRAMES)]
    known = []  # what mesh_flow hands to the extension: the covered pixels' displacements
    for k in range(FRAMES):
        raw = mesh_flow(neutral, frames[k], faces, camera, falloff=0.0)
        known.append((raw.displacement.double().numpy(), raw.mask.numpy(), 0.125 * size))
    coverage = float(torch.stack([f.mask for f in flows]).float().mean())
    largest = float(torch.stack([f.displacement.norm(dim=1).amax() for f in flows]).max())

    def backward() -> None:
        img = image.clone().requires_grad_()
        neu = neutral.clone().requires_grad_()
        ani = frame().clone().requires_grad_()
        warp(img, mesh_flow(neu, ani, faces, camera)).square().mean().backward()

    base = timed(lambda: warp(image, identity), repeats)
    figures = {
        "rasterize (numba visibility)": timed(
            lambda: rasterize(camera.project(frame()), faces, (size, size)), repeats
        ),
        "mesh_flow": timed(lambda: mesh_flow(neutral, frame(), faces, camera), repeats),
        "  of which extend_to_grid": timed(lambda: extend_to_grid(*known[next(counter) % FRAMES]), repeats),
        "warp (grid_sample on the flow)": timed(lambda: warp(image, flows[next(counter) % FRAMES]), repeats),
        "flow + warp": timed(lambda: warp(image, mesh_flow(neutral, frame(), faces, camera)), repeats),
        "flow + warp, forward + backward": timed(backward, max(5, repeats // 3)),
    }
    batched = timed(lambda: warp(image, mesh_flow(neutral, frames, faces, camera)), max(3, repeats // 10))
    print(
        f"{size}x{size}: the head covers {coverage:.0%} of the pixels, largest displacement {largest:.1f} px"
    )
    report("baseline: grid_sample alone", base)
    for name, timing in figures.items():
        report(name, timing, base=base[1])
    report(f"flow + warp, {FRAMES} frames per call", batched, frames=FRAMES, base=base[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per measurement")
    parser.add_argument("--threads", type=int, default=THREADS, help="numba threads (and torch's by default)")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch threads if not --threads")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads or args.threads)
    numba.set_num_threads(args.threads)

    neutral, frames, faces = head_sequence()
    load0 = os.getloadavg()[0]
    print(
        f"mesh: {neutral.shape[0]} vertices, {faces.shape[0]} faces, {FRAMES} frames; threads: torch "
        f"{torch.get_num_threads()}, numba {numba.get_num_threads()}; load average {load0:.2f} on "
        f"{os.cpu_count()} cores"
    )
    for size in args.sizes:
        bench_size(size, neutral, frames, faces, args.repeats)
    load1 = os.getloadavg()[0]
    print(f"load average {load0:.2f} -> {load1:.2f} (other jobs share the cores when it exceeds the threads)")


if __name__ == "__main__":
    main()
