"""The blendshape solver: exact recovery in the rig's span, the bounded optimum outside it, smoothing, masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import lsq_linear

from motion.face.blendshapes.rig import BlendshapeRig
from motion.face.blendshapes.solve import BlendshapeSolver, reconstruction_error, solve_weights

pytestmark = pytest.mark.usefixtures("one_thread")

V, K, T = 80, 8, 60


@pytest.fixture(scope="module")
def rig() -> BlendshapeRig:
    """Smooth, partly overlapping targets on a random point set, one of them all zero (like tongueOut)."""
    rng = np.random.default_rng(0)
    neutral = rng.normal(size=(V, 3)) * 0.05
    centres = rng.normal(size=(K, 3)) * 0.05
    bump = np.exp(-(((neutral[None] - centres[:, None]) ** 2).sum(-1)) / (2 * 0.04**2))  # [K,V]
    deltas = bump[..., None] * rng.normal(size=(K, 1, 3)) * 0.004
    deltas[-1] = 0.0
    return BlendshapeRig(neutral, deltas, [f"t{k}" for k in range(K)])


def curves(rng: np.random.Generator, frames: int = T) -> np.ndarray:
    """``[T,K]`` smooth weights in [0,1] that sit at 0 and at 1 for stretches (clipped sines); last target 0."""
    t = np.arange(frames)[:, None] / 30.0
    w = np.clip(0.5 + 0.9 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5, K) * t + rng.uniform(0, 6, K)), 0, 1)
    w[:, -1] = 0.0
    return w


def exact_per_frame(rig: BlendshapeRig, vertices: torch.Tensor) -> np.ndarray:
    """scipy's bounded least squares, frame by frame (the optimum of the unsmoothed problem)."""
    a = rig.deltas.double().reshape(K, -1).T.numpy()[:, :-1]
    b = (vertices.double() - rig.neutral.double()).reshape(len(vertices), -1).numpy()
    out = np.zeros((len(vertices), K))
    for t in range(len(vertices)):
        out[t, :-1] = lsq_linear(a, b[t], bounds=(0, 1), method="bvls", tol=1e-14).x
    return out


def jitter(w: torch.Tensor) -> float:
    return float(w.double().diff(n=2, dim=0).pow(2).mean().sqrt())


def test_recovers_known_weights_including_bounds(rig):
    truth = curves(np.random.default_rng(1))
    assert (truth == 0).mean() > 0.1 and (truth == 1).mean() > 0.1  # the bounds are really hit
    vertices = rig.vertices(torch.as_tensor(truth)).double()[0]
    result = BlendshapeSolver(rig, smooth=0.0, ridge=0.0, tol=1e-11).solve(vertices)
    assert result.converged and result.kkt_residual <= 1e-11
    assert result.weights.shape == (T, K) and result.weights.dtype == torch.float32
    np.testing.assert_allclose(result.weights.numpy(), truth, atol=1e-5)
    err = reconstruction_error(rig, result.weights, vertices)
    assert err.max_mm < 1e-4 and err.per_frame_mm.shape == (T,)


def test_outside_the_span_gives_the_bounded_optimum(rig):
    rng = np.random.default_rng(2)
    truth = rng.uniform(-0.8, 1.8, size=(T, K))  # beyond the box, plus motion no target makes
    vertices = rig.vertices(torch.as_tensor(truth))[0].double() + 0.002 * torch.as_tensor(
        rng.normal(size=(T, V, 3))
    )
    result = BlendshapeSolver(rig, smooth=0.0, ridge=0.0, tol=1e-10).solve(vertices)
    w = result.weights.numpy()
    assert w.min() == 0.0 and w.max() == 1.0  # bounds respected, and active
    assert result.converged
    np.testing.assert_allclose(w, exact_per_frame(rig, vertices), atol=2e-5)
    assert (w[:, -1] == 0).all()  # a target that moves nothing stays at 0


def test_per_target_bounds_and_batches(rig):
    rng = np.random.default_rng(3)
    truth = rng.uniform(-1.0, 2.0, size=(2, T, K))
    vertices = rig.vertices(torch.as_tensor(truth))
    lo, hi = np.full(K, -0.5), np.full(K, 1.5)
    lo[0], hi[1] = 0.2, 0.3
    weights = solve_weights(rig, vertices, smooth=0.0, bounds=(lo, hi))
    assert weights.shape == (2, T, K)
    w = weights.numpy()
    assert (w >= lo.astype(np.float32)).all() and (w <= hi.astype(np.float32)).all()
    assert np.isclose(w[..., 0].min(), 0.2) and np.isclose(w[..., 1].max(), 0.3)
    one = solve_weights(rig, vertices[1], smooth=0.0, bounds=(lo, hi))
    np.testing.assert_allclose(one.numpy(), w[1], atol=1e-6)  # clips are independent


def test_smoothing_reduces_jitter_on_noisy_motion(rig):
    rng = np.random.default_rng(4)
    truth = 0.5 + 0.3 * np.sin(2 * np.pi * 0.5 * np.arange(T)[:, None] / 30.0 + rng.uniform(0, 6, K))
    truth[:, -1] = 0.0
    clean = rig.vertices(torch.as_tensor(truth))[0]
    noisy = clean + 0.001 * torch.as_tensor(rng.normal(size=(T, V, 3)), dtype=torch.float32)
    raw = solve_weights(rig, noisy, smooth=0.0)
    for order in (1, 2):
        smooth = solve_weights(rig, noisy, smooth=1.0, order=order)
        assert jitter(smooth) < 0.3 * jitter(raw)
        assert (
            np.abs(smooth.numpy() - truth).mean() < np.abs(raw.numpy() - truth).mean()
        )  # closer to the truth


def test_mask_ignores_vertices_outside_it(rig):
    truth = curves(np.random.default_rng(5))
    vertices = rig.vertices(torch.as_tensor(truth))[0].double()
    keep = np.ones(V, bool)
    keep[:10] = False
    vertices[:, :10] += 0.01  # garbage where the mask is off
    for mask in (keep, np.nonzero(keep)[0], keep.astype(np.float64)):
        w = solve_weights(rig, vertices, smooth=0.0, ridge=0.0, mask=mask, tol=1e-11)
        np.testing.assert_allclose(w.numpy(), truth, atol=1e-4)
    assert reconstruction_error(rig, torch.as_tensor(truth), vertices, mask=keep).max_mm < 1e-4


def test_reconstruction_error_is_in_millimetres(rig):
    w = torch.zeros(3, K)
    shifted = rig.neutral.expand(3, V, 3) + torch.tensor([0.003, 0.0, 0.004])  # 5 mm everywhere
    err = reconstruction_error(rig, w, shifted)
    assert err.mean_mm == pytest.approx(5.0, rel=1e-5) and err.max_mm == pytest.approx(5.0, rel=1e-5)


def test_wrong_shapes_and_options_are_rejected(rig):
    with pytest.raises(ValueError, match=r"\[T,80,3\]"):
        solve_weights(rig, torch.zeros(5, V + 1, 3))
    with pytest.raises(ValueError, match="order"):
        BlendshapeSolver(rig, order=3)
    with pytest.raises(ValueError, match="lo must not exceed hi"):
        BlendshapeSolver(rig, bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="NaN"):
        solve_weights(rig, torch.full((3, V, 3), float("nan")))
    assert solve_weights(rig, torch.zeros(0, V, 3)).shape == (0, K)
