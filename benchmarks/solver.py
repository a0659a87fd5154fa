"""Blendshape solver: solve time per 10 s of motion on the procedural ARKit rig, and reconstruction error.

Run: ``python benchmarks/solver.py`` (about a minute on 2 CPU threads, most of it in scipy's baseline). 10 s of motion at 30 fps (300
frames) on the procedural head's ARKit-52 rig (4948 vertices), solved by ``motion.face.blendshapes.solve`` and, in
the same run, by two baselines: per-frame unconstrained least squares clipped to [0, 1] (fast, not the bounded
optimum), and scipy's ``lsq_linear`` per frame (the exact bounded optimum; timed on a few frames and extrapolated).

Two kinds of motion:

(a) weights known: smooth random ARKit-style curves (about half the targets active, many weights held at 0 or 1,
    opposite targets such as ``mouthLeft`` / ``mouthRight`` never active together, ``tongueOut`` 0) played through
    the rig; the solver should give them back.
(b) real motion of the procedural head: the FLAME-format head's expression and jaw motion from the synthetic
    dataset (``data/synthetic/flame/*.npz`` of a test speaker, decoded with ``talk.synth.face``, 60 -> 30 fps),
    or, without that folder, sequences synthesized in-process with ``talk.synth``; the rig is built on that
    speaker's identity. Some of it lies outside the rig's span (the head's ``lower_lip_depress`` goes negative).

Times are wall-clock seconds, best of ``--repeats``, with the CPU seconds of that run (all threads); on a busy machine
the wall time grows (compare ``--threads 1``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a plain checkout

from motion.face.blendshapes.arkit import ARKIT_NAMES  # noqa: E402
from motion.face.blendshapes.procedural import procedural_arkit_rig  # noqa: E402
from motion.face.blendshapes.rig import BlendshapeRig  # noqa: E402
from motion.face.blendshapes.solve import BlendshapeSolver, reconstruction_error  # noqa: E402
from motion.face.procedural.face import build_procedural_face  # noqa: E402

FPS, SECONDS = 30, 10.0
OPPOSITE = [("mouthLeft", "mouthRight"), ("jawLeft", "jawRight")] + [
    (f"eyeLook{a}{side}", f"eyeLook{b}{side}")
    for side in ("Left", "Right")
    for a, b in (("Up", "Down"), ("In", "Out"))
]


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """``(wall, cpu, result)``: the best wall time of ``repeats`` calls, the CPU time of that call (all threads; on a
    shared machine it says what the wall time would be on an idle one) and the last result."""
    best, best_cpu, out = float("inf"), 0.0, None
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        if time.perf_counter() - start < best:
            best, best_cpu = time.perf_counter() - start, time.process_time() - cpu
    return best, best_cpu, out


def known_weights(frames: int, seed: int = 0) -> np.ndarray:
    """``[T,52]`` smooth random ARKit-style weights in [0, 1] (module docstring, (a))."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / FPS
    w = np.zeros((frames, len(ARKIT_NAMES)))
    for k in range(len(ARKIT_NAMES) - 1):  # tongueOut stays 0
        if rng.uniform() < 0.5:
            continue
        amplitude, hertz, phase = rng.uniform(0.2, 0.6, 3), rng.uniform(0.2, 2.5, 3), rng.uniform(0, 6.3, 3)
        curve = (amplitude * np.sin(2 * np.pi * hertz * t[:, None] + phase)).sum(1)
        w[:, k] = np.clip(rng.uniform(0.0, 0.6) + curve, 0.0, 1.0)
    for a, b in OPPOSITE:
        i, j = ARKIT_NAMES.index(a), ARKIT_NAMES.index(b)
        diff = w[:, i] - w[:, j]
        w[:, i], w[:, j] = np.maximum(diff, 0.0), np.maximum(-diff, 0.0)
    return w


def real_motion(frames: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``(vertices [T,V,3] float32, speaker shape, where from)`` of the procedural head (module docstring, (b))."""
    from talk.synth.face import load_face

    data = ROOT / "data" / "synthetic"
    step = 60 // FPS
    files = (
        sorted((data / "flame").glob("SYN_09_F_sentence*.npz")) if (data / "face_model.pkl").is_file() else []
    )
    if files:
        face = load_face(data / "face_model.pkl", n_shape=20)
        expr, jaw = [], []
        for f in files:
            with np.load(f) as z:
                expr.append(z["expression"])
                jaw.append(z["jaw"])
                shape = z["shape"]
            if sum(len(e) for e in expr) >= frames * step:
                break
        e, j = np.concatenate(expr)[::step][:frames], np.concatenate(jaw)[::step][:frames]
        source = f"data/synthetic/flame: SYN_09_F, {len(expr)} sentences decoded by talk.synth.face.JawFace"
        return face(shape, e, j), np.asarray(shape), source
    from motion.face.procedural.face import write_procedural_face
    from talk.synth.face import calibrate_lip_contact, lip_pairs
    from talk.synth.speakers import make_speaker
    from talk.synth.writer import synthesize_sequence

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_procedural_face(tmp)
        face = load_face(paths.model, n_shape=20)
        speaker = make_speaker(0, 8)
        contact = calibrate_lip_contact(face, np.asarray(speaker.shape), *lip_pairs(paths.masks))
        verts, sentence = [], 0
        while sum(len(v) for v in verts) < frames:
            verts.append(synthesize_sequence(face, speaker, 0, sentence, contact=contact).vertices[::step])
            sentence += 1
    source = f"synthesized in-process (talk.synth, speaker 9 of seed 0, {sentence} sentences)"
    return np.concatenate(verts)[:frames], np.asarray(speaker.shape), source


def clipped_least_squares(rig: BlendshapeRig, vertices: torch.Tensor) -> torch.Tensor:
    """Baseline: per-frame unconstrained least squares (normal equations), then clipped to [0, 1]."""
    a = rig.deltas.reshape(rig.num_targets, -1).T  # [3V, K]
    c = (vertices - rig.neutral).reshape(len(vertices), -1) @ a
    gram = (a.T @ a).double()
    active = gram.diagonal() > 0
    w = torch.zeros(len(vertices), rig.num_targets, dtype=torch.float64)
    w[:, active] = torch.linalg.solve(gram[active][:, active], c[:, active].double().T).T
    return w.clamp(0, 1).float()


def lsq_linear_frames(rig: BlendshapeRig, vertices: torch.Tensor, frames: int) -> np.ndarray:
    """Baseline: scipy's bounded least squares (``bvls``, an exact active-set method), one frame at a time, on
    the first ``frames`` frames; targets that move nothing (``tongueOut``) are left out at 0."""
    from scipy.optimize import lsq_linear

    a = rig.deltas.double().reshape(rig.num_targets, -1).T.numpy()
    active = (a * a).sum(0) > 0
    b = (vertices[:frames].double() - rig.neutral.double()).reshape(frames, -1).numpy()
    out = np.zeros((frames, rig.num_targets))
    for t in range(frames):
        out[t, active] = lsq_linear(a[:, active], b[t], bounds=(0.0, 1.0), method="bvls").x
    return out


def report(name: str, rig: BlendshapeRig, weights: torch.Tensor, vertices: torch.Tensor, truth=None) -> None:
    err = reconstruction_error(rig, weights, vertices)
    w = weights.double().numpy()
    line = f"    {name:<34} vertex error mean {err.mean_mm:7.4f} mm  max {err.max_mm:6.3f} mm"
    line += f"  jitter {np.sqrt((np.diff(w, 2, axis=0) ** 2).mean()):.4f}"
    if truth is not None:
        dw = np.abs(w - truth[: len(w)])
        worst = ARKIT_NAMES[int(dw.max(0).argmax())]
        line += f"  weight error mean {dw.mean():.5f} max {dw.max():.4f} ({worst})"
    print(line)


def run_case(title: str, rig: BlendshapeRig, vertices: torch.Tensor, repeats: int, truth=None) -> None:
    print(f"\n{title}")
    n = len(vertices)
    per_10s = SECONDS * FPS / n
    rows = []
    default, unsmoothed = BlendshapeSolver(rig), BlendshapeSolver(rig, smooth=0.0)
    for solver in (default, unsmoothed):
        seconds, cpu, result = timed(lambda s=solver: s.solve(vertices), repeats)
        rows.append((f"talk solver, smooth={solver.smooth}", seconds, result.weights))
        detail = f"CPU {cpu * per_10s:.3f} s; {result.iterations} iterations, KKT residual {result.kkt_residual:.1e}"
        print(f"  talk solver smooth={solver.smooth:<6}{seconds * per_10s:7.3f} s per 10 s  ({detail})")
    seconds, cpu, w_ls = timed(lambda: clipped_least_squares(rig, vertices), repeats)
    rows.append(("baseline: least squares + clip", seconds, w_ls))
    print(f"  baseline least squares + clip {seconds * per_10s:7.3f} s per 10 s  (CPU {cpu * per_10s:.3f} s)")
    few = 10
    seconds, _, w_exact = timed(lambda: lsq_linear_frames(rig, vertices, few), 1)
    seconds *= per_10s * n / few
    print(f"  baseline scipy lsq_linear      {seconds:7.3f} s per 10 s  (timed on {few} frames)")
    print(f"  reconstruction, {n} frames:")
    for name, _, w in rows:
        report(name, rig, w, vertices, truth)
    exact = torch.as_tensor(w_exact, dtype=torch.float32)
    print(
        f"  reconstruction, first {few} frames (the exact per-frame optimum, and the solver without smoothing):"
    )
    report("baseline: scipy lsq_linear (bvls)", rig, exact, vertices[:few], truth)
    report("talk solver, smooth=0.0", rig, rows[1][2][:few], vertices[:few], truth)
    gap = (rows[1][2][:few] - exact).abs().max().item()
    print(f"    max weight difference between the two: {gap:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch and BLAS threads")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    except ImportError:
        pass
    frames = int(SECONDS * FPS)

    start = time.perf_counter()
    face = build_procedural_face(0)
    face_s = time.perf_counter() - start
    rig_s, _, rig = timed(lambda: procedural_arkit_rig(face=face), args.repeats)
    print(f"procedural ARKit rig: {rig.num_targets} targets, {rig.num_vertices} vertices")
    print(f"  built in {rig_s:.3f} s from the head (the head itself: {face_s:.2f} s, once per process)")
    print(f"threads: {args.threads}; motion: {frames} frames = {SECONDS:.0f} s at {FPS} fps")

    truth = known_weights(frames)
    vertices = rig.vertices(torch.as_tensor(truth, dtype=torch.float32))[0]
    run_case(
        "(a) weights known: random ARKit-style curves through the rig", rig, vertices, args.repeats, truth
    )

    verts, shape, source = real_motion(frames)
    speaker_rig = procedural_arkit_rig(shape=shape)
    title = f"(b) real motion of the procedural head: {source}"
    run_case(title, speaker_rig, torch.as_tensor(verts), args.repeats)


if __name__ == "__main__":
    main()
