"""Renderer throughput: frames/s of TorchRasterizer on a FLAME-size mesh, against a pure-torch baseline.

Run: ``python benchmarks/render.py [--frames 60] [--sizes 256 512]``. Uses 2 torch and 2 numba threads.

Measured in one run:
* numba first-call time: cold (empty cache: JIT compile) and warm (``cache=True`` hit), each in a fresh process;
* ``rasterize`` alone (projection + numba scan conversion), and ``TorchRasterizer.render`` (rasterize + normals +
  Blinn-Phong shading) at each size;
* the baseline: a naive vectorised pure-torch rasterizer (per-face bounding-box candidate pixels, scatter-min
  z-buffer) followed by the torch reference shading of ``render.shading``, on the same mesh and camera;
* end to end: render + shade + ``to_uint8`` + H.264 encoding through ``VideoWriter`` into a temporary mp4;
* when pytorch3d is importable (run it with ``.venv-p3d/bin/python``, built by ``make test-pytorch3d``):
  ``Pytorch3DRenderer.render`` on the CPU at each size, same mesh, camera and shading (a few calls only: it takes
  seconds per frame). Otherwise the script says that pytorch3d is not installed.

The mesh is procedural (a displaced cube-sphere, ~5000 vertices / ~10000 faces, head-sized in metres), so the
benchmark does not depend on ``motion/``.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import torch
import torch.nn.functional as F_

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from render.camera import Camera, fit_camera  # noqa: E402
from render.pytorch3d_backend import Pytorch3DRenderer  # noqa: E402  (imports pytorch3d lazily)
from render.rasterizer import TorchRasterizer, rasterize, to_uint8  # noqa: E402
from render.shading import DEFAULT_ALBEDO, blinn_phong, interpolate, vertex_normals  # noqa: E402
from render.video import VideoWriter  # noqa: E402

THREADS = 2


def head_mesh(n: int = 29) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed cube-sphere with ``6 n^2 + 2`` vertices and ``12 n^2`` faces, displaced into a head-like blob."""
    coords: dict[tuple[int, int, int], int] = {}
    faces = []
    ticks = range(-n, n + 1, 2)  # integer grid, exact for de-duplicating shared cube edges
    for axis in range(3):
        for side in (-n, n):
            grid = {}
            for i, a in enumerate(ticks):
                for j, b in enumerate(ticks):
                    p = [0, 0, 0]
                    p[axis], p[(axis + 1) % 3], p[(axis + 2) % 3] = side, a, b
                    grid[i, j] = coords.setdefault(tuple(p), len(coords))
            for i in range(n):
                for j in range(n):
                    a, b, c, d = grid[i, j], grid[i + 1, j], grid[i + 1, j + 1], grid[i, j + 1]
                    faces += [(a, b, c), (a, c, d)]
    verts = torch.tensor(list(coords), dtype=torch.float64)
    verts = verts / verts.norm(dim=-1, keepdim=True)
    faces_t = torch.tensor(faces)
    # orient every face outwards (the base shape is convex)
    fn = torch.linalg.cross(
        verts[faces_t[:, 1]] - verts[faces_t[:, 0]], verts[faces_t[:, 2]] - verts[faces_t[:, 0]]
    )
    inward = (fn * verts[faces_t].mean(1)).sum(-1) < 0
    faces_t[inward] = faces_t[inward][:, [0, 2, 1]]
    x, y, z = verts.unbind(-1)

    def bump(cx, cy, cz, width, height):
        return height * torch.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / width**2)

    r = (
        1.0
        + bump(0, -0.05, 1, 0.18, 0.25)
        - bump(0.35, 0.25, 0.9, 0.15, 0.12)
        - bump(-0.35, 0.25, 0.9, 0.15, 0.12)
    )
    r = r + bump(0, -0.55, 0.85, 0.2, 0.06) + 0.02 * torch.sin(9 * x) * torch.sin(7 * y)
    verts = verts * r[:, None] * torch.tensor([0.075, 0.105, 0.095], dtype=torch.float64)
    return verts.float(), faces_t


def animate(verts: torch.Tensor, t: float) -> torch.Tensor:
    """A small head turn and a jaw-like squash, so every frame differs."""
    yaw = 0.25 * math.sin(2 * math.pi * 0.5 * t)
    c, s = math.cos(yaw), math.sin(yaw)
    x, y, z = verts.unbind(-1)
    # jaw: lower part squashed down; elementwise ops (no BLAS call) keep the benchmark's own overhead small
    y = y - 0.01 * (1 + math.sin(2 * math.pi * 3 * t)) * (-y - 0.03).clamp_min(0.0) / 0.07
    return torch.stack([c * x + s * z, y, -s * x + c * z], dim=-1)


def baseline_render(verts: torch.Tensor, faces: torch.Tensor, camera: Camera) -> torch.Tensor:
    """Naive vectorised pure-torch rasterizer + torch reference shading; returns ``[H,W,3]``."""
    height, width = camera.image_size
    pts = camera.world_to_camera(verts)[0]
    uvz = camera.camera_to_image(pts[None])[0]
    tri = uvz[faces]  # [F,3,3]
    c_lo = torch.ceil(tri[..., 0].min(1).values - 0.5).long().clamp(0, width - 1)
    c_hi = torch.floor(tri[..., 0].max(1).values - 0.5).long().clamp(0, width - 1)
    r_lo = torch.ceil(tri[..., 1].min(1).values - 0.5).long().clamp(0, height - 1)
    r_hi = torch.floor(tri[..., 1].max(1).values - 0.5).long().clamp(0, height - 1)
    k = int(max((c_hi - c_lo).max(), (r_hi - r_lo).max())) + 1
    off = torch.arange(k)
    cols = c_lo[:, None, None] + off[None, None, :]  # [F,1,K]
    rows = r_lo[:, None, None] + off[None, :, None]  # [F,K,1]
    px, py = cols.float() + 0.5, rows.float() + 0.5
    x, y, z = tri[..., 0], tri[..., 1], tri[..., 2]

    def edge(a, b):
        return (x[:, b] - x[:, a])[:, None, None] * (py - y[:, a, None, None]) - (y[:, b] - y[:, a])[
            :, None, None
        ] * (px - x[:, a, None, None])

    e = torch.stack([edge(1, 2), edge(2, 0), edge(0, 1)], -1)  # [F,K,K,3]
    area = e.sum(-1, keepdim=True)
    inside = ((e * area.sign()) >= 0).all(-1) & (cols <= c_hi[:, None, None]) & (rows <= r_hi[:, None, None])
    inside &= (area[..., 0].abs() > 0) & (z > 1e-4).all(-1)[:, None, None]
    fid, ri, ci = torch.nonzero(inside, as_tuple=True)
    lam = e[fid, ri, ci] / area[fid, ri, ci]
    depth = 1.0 / (lam / z[fid]).sum(-1)
    pix = rows[fid, ri, 0] * width + cols[fid, 0, ci]
    zbuf = torch.full((height * width,), float("inf")).scatter_reduce(0, pix, depth, "amin")
    win = depth <= zbuf[pix]
    face_ids = torch.full((height * width,), -1, dtype=torch.long)
    face_ids[pix[win]] = fid[win]
    bary = torch.zeros(height * width, 3)
    bary[pix[win]] = lam[win] / z[fid[win]] * depth[win, None]
    face_ids, bary = face_ids.view(1, height, width), bary.view(1, height, width, 3)
    mask = face_ids[0] >= 0
    n = F_.normalize(interpolate(vertex_normals(pts[None], faces), faces, face_ids, bary)[0][mask], dim=-1)
    view = -F_.normalize(interpolate(pts, faces, face_ids, bary)[0][mask], dim=-1)
    rgb = torch.ones(height, width, 3)
    rgb[mask] = blinn_phong(n, view, torch.tensor(DEFAULT_ALBEDO), (0.3, 0.4, 1.0), 0.35, 0.15, 20.0).clamp(
        0, 1
    )
    return rgb


def timed(fn, repeats: int) -> tuple[float, float, float]:
    """(median wall, best wall, median process CPU) seconds per call, after one warm-up call.

    Process CPU time sums all threads of this process: on a machine shared with other jobs it shows the cost
    of a frame independently of how much of the two cores the scheduler actually gave us.
    """
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(min(wall)), float(np.median(cpu))


def report(name: str, timing: tuple[float, float, float]) -> None:
    med, best, cpu = timing
    print(
        f"  {name:26s} {1 / med:7.1f} fps (best {1 / best:6.1f})  {med * 1e3:7.2f} ms wall, {cpu * 1e3:7.2f} ms CPU"
    )


def first_call_seconds(cache_dir: str) -> float:
    """Time of the first render in a fresh interpreter using ``cache_dir`` as numba's cache."""
    code = (
        "import time, torch, numba; torch.set_num_threads(2); numba.set_num_threads(2)\n"
        "from render.camera import fit_camera; from render.rasterizer import TorchRasterizer\n"
        "v = torch.rand(50, 3); f = torch.randint(0, 50, (80, 3)); cam = fit_camera(v, (64, 64))\n"
        "t = time.perf_counter(); TorchRasterizer().render(v, f, cam); print(time.perf_counter() - t)\n"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def pytorch3d_figures(
    verts: torch.Tensor,
    faces: torch.Tensor,
    sizes: list[int],
    repeats: int,
    render_times: dict[int, tuple[float, float, float]],
) -> None:
    """Print ``Pytorch3DRenderer`` (pytorch3d's CPU rasterizer + our shading) frames/s at each size."""
    try:
        p3d = Pytorch3DRenderer()
    except ImportError:
        print(
            "pytorch3d: not installed in this environment (run with .venv-p3d/bin/python, built by "
            "`make test-pytorch3d`)"
        )
        return
    import pytorch3d

    print(f"pytorch3d {pytorch3d.__version__} (torch {torch.__version__}) on the CPU, same mesh and shading:")
    # the first call pays one-off allocation and dispatch costs: pay them on a small image, not a timed size
    p3d.render(verts, faces, fit_camera(verts, image_size=(32, 32)))
    for size in sizes:
        camera = fit_camera(verts, image_size=(size, size))
        frames = [animate(verts, i / 25) for i in range(max(repeats, 1))]
        wall, cpu = [], []
        for frame in frames:
            c0, t0 = time.process_time(), time.perf_counter()
            p3d.render(frame, faces, camera)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        timing = (float(np.median(wall)), float(min(wall)), float(np.median(cpu)))
        med, best, cpu_med = timing
        # its own line format: report()'s one decimal would print 0.0 fps
        print(
            f"{size}x{size}: pytorch3d raster + shade {1 / med:.3f} fps (best {1 / best:.3f}, {len(frames)} "
            f"calls)  {med:.2f} s wall, {cpu_med:.2f} s CPU per frame"
        )
        if size in render_times:
            ours = render_times[size]
            print(
                f"  TorchRasterizer is {timing[0] / ours[0]:.0f}x faster wall, {timing[2] / ours[2]:.0f}x CPU"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per measurement")
    parser.add_argument("--frames", type=int, default=100, help="frames in the end-to-end video benchmark")
    parser.add_argument("--threads", type=int, default=THREADS, help="numba threads (and torch's by default)")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch threads if not --threads")
    parser.add_argument("--skip-jit", action="store_true", help="skip the fresh-process JIT measurements")
    parser.add_argument(
        "--pytorch3d-repeats", type=int, default=2, help="timed pytorch3d calls per size (0 skips pytorch3d)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads or args.threads)
    numba.set_num_threads(args.threads)

    load0 = os.getloadavg()[0]
    verts, faces = head_mesh()
    print(
        f"mesh: {verts.shape[0]} vertices, {faces.shape[0]} faces; threads: torch {torch.get_num_threads()}, "
        f"numba {numba.get_num_threads()} ({numba.threading_layer()} layer)"
    )
    if not args.skip_jit:
        with tempfile.TemporaryDirectory() as cache:
            cold = first_call_seconds(cache)
            warm = first_call_seconds(cache)
        print(f"numba first call: {cold:.2f} s cold (JIT compile), {warm:.2f} s with cache=True hit")

    renderer = TorchRasterizer()
    render_times: dict[int, tuple[float, float, float]] = {}
    for size in args.sizes:
        camera = fit_camera(verts, image_size=(size, size))
        uvz = camera.project(verts)
        frames = [animate(verts, i / 25) for i in range(8)]
        counter = iter(range(10**9))

        def raster_only(camera=camera, frames=frames, counter=counter):
            rasterize(camera.project(frames[next(counter) % 8]), faces, camera.image_size)

        def render_shade(camera=camera, frames=frames, counter=counter):
            renderer.render(frames[next(counter) % 8], faces, camera)

        def baseline(camera=camera, frames=frames, counter=counter):
            baseline_render(frames[next(counter) % 8], faces, camera)

        raster_t = timed(raster_only, args.repeats)
        render_t = timed(render_shade, args.repeats)
        render_times[size] = render_t
        base_t = timed(baseline, max(3, args.repeats // 6))
        coverage = float(rasterize(uvz, faces, camera.image_size).mask.float().mean())
        print(f"{size}x{size} (mesh covers {coverage:.0%} of the pixels); fps from the median call:")
        report("rasterize only", raster_t)
        report("render: raster + shade", render_t)
        report("baseline: pure torch", base_t)
        print(
            f"  speedup of render over the baseline: {base_t[0] / render_t[0]:.1f}x wall, "
            f"{base_t[2] / render_t[2]:.1f}x CPU"
        )

        with tempfile.TemporaryDirectory() as tmp:
            c0, t0 = time.process_time(), time.perf_counter()
            children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            with VideoWriter(Path(tmp) / "bench.mp4", fps=25) as writer:
                for i in range(args.frames):
                    writer.write(to_uint8(renderer.render(animate(verts, i / 25), faces, camera))[0])
            total, cpu = time.perf_counter() - t0, time.process_time() - c0
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            ffmpeg_cpu = children.ru_utime + children.ru_stime - children0.ru_utime - children0.ru_stime
        print(
            f"  end to end render + shade + H.264 mp4: {args.frames / total:7.1f} fps ({args.frames} frames in "
            f"{total:.2f} s; CPU per frame: {cpu / args.frames * 1e3:.1f} ms python + "
            f"{ffmpeg_cpu / args.frames * 1e3:.1f} ms ffmpeg)"
        )
    if args.pytorch3d_repeats > 0:
        pytorch3d_figures(verts, faces, args.sizes, args.pytorch3d_repeats, render_times)
    print(
        f"load average (1 min) at start {load0:.2f}, at end {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
