"""Bounded, temporally smoothed blendshape weights for any vertex motion in a rig's topology.

``solve_weights(rig, vertices)`` turns the output of a vertex or FLAME model into weights (ARKit's, for the
procedural rig) that drive an avatar. With ``a_k`` the k-th target's delta, ``A = [a_1 .. a_K]`` ``[3V,K]`` (rows
of masked-out vertices dropped), ``b_t`` frame t's offsets from the neutral and ``e = mean_k ||a_k||^2`` the
energy of an average target, it minimises over all frames jointly, within ``lo <= w <= hi``,

    sum_t ||A w_t - b_t||^2  +  e * smooth * sum_t ||(D w)_t||^2  +  ridge * sum_k ||a_k||^2 sum_t w_tk^2

where ``D`` is the second (or first) difference across frames. The smoothing acts on the weights themselves (what
an avatar receives), in units of an average target, so its weight means the same for any rig, unit or vertex
count. For a target independent of the others, of energy ``g e``, it is the zero-phase low-pass
``g / (g + smooth * (2 - 2 cos w)^2)``: with the default ``smooth = 0.003`` an average target (g = 1) keeps 95 %
at the Nyquist rate, and the smallest target of the procedural rig (``noseSneer``, g = 0.01) is halved at
0.24 fps (7 Hz at 30 fps), so speech-rate motion passes. Combinations of nearly collinear targets
(``mouthShrugUpper`` with ``mouthUpperUp``, ``eyeSquint`` with ``cheekSquint``) have a tiny data curvature and are
smoothed strongly: that is where frame-to-frame jitter comes from. Smoothing costs accuracy on motion that is not
smooth (``benchmarks/solver.py``); ``smooth = 0`` solves every frame on its own. ``ridge`` (relative to each
target's own energy: every weight shrinks by ``ridge / (1 + ridge)``) keeps the problem strictly convex and
breaks ties toward smaller weights where targets cancel each other (``mouthLeft`` against ``mouthRight``).

Algorithm. The data enter once, as ``A^T b_t``: one ``[T,3V] @ [3V,K]`` product in the input's precision,
O(T V K); everything after works on ``[T,K]``, and the smoothing term is a banded product, O(T K). The
Hessian is ``I (x) G + e * smooth * (D^T D) (x) I + ridge * I (x) diag(G)`` with ``G = A^T A``. Accelerated
projected gradient (FISTA with the adaptive restart of O'Donoghue & Candes 2015) in the metric of the Hessian's
diagonal (a Jacobi preconditioner that keeps the projection onto the box a clip), step ``1 / L`` from a Lanczos
estimate of the preconditioned Hessian's top eigenvalue, started from the clipped per-frame unconstrained
solution. Every iterate is clipped into the box, so the weights respect the bounds exactly;
:attr:`SolveResult.kkt_residual` measures optimality. (Exact active-set and projected-Newton polishing were tried
and dropped: on the procedural rig, where opposite targets nearly cancel and many weights sit at 0 with a zero
gradient, their steps swing far and they stalled as often as they helped.)
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from motion.face.blendshapes.rig import BlendshapeRig

__all__ = ["BlendshapeSolver", "Reconstruction", "SolveResult", "reconstruction_error", "solve_weights"]

ArrayLike = Tensor | np.ndarray


@dataclass(frozen=True)
class SolveResult:
    """Weights solved by :class:`BlendshapeSolver`.

    Attributes:
        weights: ``[T,K]`` or ``[B,T,K]`` (as the vertices were given), float32 on the CPU, within the bounds.
        iterations: gradient iterations run (the most over the clips).
        kkt_residual: ``max |clip(w - g / h) - w|`` over all weights, ``g`` the gradient and ``h`` the diagonal of
            the Hessian: how far one diagonal Newton step would still move a weight (0 at the optimum).
        converged: whether ``kkt_residual <= tol``.
    """

    weights: Tensor
    iterations: int
    kkt_residual: float
    converged: bool


@dataclass(frozen=True)
class Reconstruction:
    """Per-vertex Euclidean error of ``rig.vertices(weights)`` against target vertices, in millimetres.

    Attributes:
        mean_mm: mean over frames and (masked) vertices.
        max_mm: the largest.
        per_frame_mm: ``[T]`` or ``[B,T]`` mean per frame.
    """

    mean_mm: float
    max_mm: float
    per_frame_mm: Tensor


def _difference_bands(n: int, order: int) -> np.ndarray:
    """``[order+1, n]`` bands of ``D^T D`` for the ``order``-th difference over n frames:
    ``bands[j, a] = (D^T D)[a, a+j]`` (zero where ``a + j >= n``)."""
    stencil = np.array([1.0])
    for _ in range(order):
        stencil = np.convolve(stencil, [1.0, -1.0])
    bands = np.zeros((order + 1, n))
    rows = max(n - order, 0)  # difference rows; none for a clip shorter than the stencil
    for p in range(order + 1):
        for q in range(p, order + 1):  # row i puts stencil[p] * stencil[q] at (i + p, i + q)
            bands[q - p, p : p + rows] += stencil[p] * stencil[q]
    return bands


def _one_blas_thread() -> AbstractContextManager:
    """BLAS on one thread for the iterations: their ``[T,K] @ [K,K]`` products are too small to share, and on a
    busy machine a second BLAS thread spin-waiting for a core made them 10x slower. threadpoolctl ships with
    scikit-learn; without it the BLAS keeps its threads."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(1, user_api="blas")


def _vertex_weights(mask: ArrayLike | None, n_vertices: int) -> np.ndarray | None:
    """``[V]`` non-negative weights of the vertices in the fit, or None for all at weight 1."""
    if mask is None:
        return None
    m = np.asarray(mask.detach().cpu().numpy() if isinstance(mask, Tensor) else mask)
    if m.dtype == bool:
        if m.shape != (n_vertices,):
            raise ValueError(f"mask must be [V] = [{n_vertices}] booleans, got shape {m.shape}.")
        return m.astype(np.float64)
    if np.issubdtype(m.dtype, np.integer):  # vertex ids
        out = np.zeros(n_vertices)
        out[m.reshape(-1)] = 1.0
        return out
    if m.shape != (n_vertices,) or not np.isfinite(m).all() or (m < 0).any():
        raise ValueError(f"mask must be [V] = [{n_vertices}] non-negative weights, booleans or vertex ids.")
    return m.astype(np.float64)


class BlendshapeSolver:
    """Solves bounded, smoothed weights of one rig for any number of clips (the rig's products are kept).

    Args:
        rig: the rig whose weights are solved (its neutral and deltas, ``K`` targets).
        smooth: weight of the temporal penalty (module docstring); 0 solves every frame on its own.
        order: 2 penalises the second difference (acceleration; leaves steady ramps alone), 1 the first.
        ridge: weight of the ``||w||^2`` penalty, relative to each target's energy (module docstring).
        bounds: ``(lo, hi)``, scalars or ``[K]`` per target (``-inf`` / ``inf`` allowed); ARKit weights are in [0, 1].
        mask: vertices in the fit: ``[V]`` booleans, vertex ids, or ``[V]`` non-negative weights; None = all.
            Targets that move no vertex in the fit (``tongueOut`` of the procedural rig) get weight
            ``clip(0, lo, hi)``.
        tol: the KKT residual (:attr:`SolveResult.kkt_residual`) to reach.
        max_iter: most gradient iterations per clip.

    Attributes:
        active: ``[K]`` bool, the targets that move a vertex in the fit (the others are not solved for).
    """

    def __init__(
        self,
        rig: BlendshapeRig,
        smooth: float = 0.003,
        order: int = 2,
        ridge: float = 1e-6,
        bounds: tuple[float | ArrayLike, float | ArrayLike] = (0.0, 1.0),
        mask: ArrayLike | None = None,
        tol: float = 1e-5,
        max_iter: int = 1000,
    ) -> None:
        if not (smooth >= 0 and ridge >= 0):
            raise ValueError(f"smooth ({smooth}) and ridge ({ridge}) must be non-negative.")
        if order not in (1, 2):
            raise ValueError(f"order must be 1 (first difference) or 2 (second difference), got {order}.")
        k = rig.num_targets
        self.smooth, self.order, self.ridge = float(smooth), int(order), float(ridge)
        self.tol, self.max_iter = float(tol), int(max_iter)
        self.lo = np.broadcast_to(np.asarray(bounds[0], np.float64), (k,)).copy()
        self.hi = np.broadcast_to(np.asarray(bounds[1], np.float64), (k,)).copy()
        if (self.lo > self.hi).any():
            raise ValueError("bounds: lo must not exceed hi.")
        self._mask = _vertex_weights(mask, rig.num_vertices)
        self._root = None if self._mask is None else torch.as_tensor(np.sqrt(self._mask))[:, None]
        deltas = rig.deltas.detach().cpu().double()
        neutral = rig.neutral.detach().cpu().double()
        if self._root is not None:
            deltas, neutral = deltas * self._root, neutral * self._root
        a = deltas.reshape(k, -1).T  # [3V, K]
        energy = (a * a).sum(0).numpy()
        self.active = energy > 1e-12 * max(float(energy.max()), 1e-300)  # targets that move something
        self._a = a[:, torch.from_numpy(self.active)].contiguous()  # [3V, K'] float64
        self._a32 = self._a.float()  # for float32 motion: the data pass in the data's own precision
        self._neutral = neutral
        self._scale = float(energy[self.active].mean()) if self.active.any() else 1.0  # keeps numbers near 1
        self._gram = (self._a.T @ self._a).numpy() / self._scale  # [K', K']
        self._gdiag = np.diag(self._gram).copy()
        self.num_targets, self.num_vertices = k, rig.num_vertices

    def rhs(self, vertices: Tensor) -> np.ndarray:
        """``A^T b_t`` per frame (scaled like the Gram matrix), ``[B,T,K']`` float64, for vertices ``[B,T,V,3]``:
        the only pass over the vertices, in their precision (float32 input, float32 product)."""
        dtype = torch.float64 if vertices.dtype == torch.float64 else torch.float32
        x = vertices.detach().cpu().to(dtype) - self._neutral.to(dtype)
        if self._root is not None:
            x = x * self._root.to(dtype)
        b, n = x.shape[:2]
        a = self._a if dtype == torch.float64 else self._a32
        return (x.reshape(b * n, -1) @ a).double().numpy().reshape(b, n, -1) / self._scale

    def solve(self, vertices: ArrayLike) -> SolveResult:
        """Weights for vertex motion ``[T,V,3]`` or ``[B,T,V,3]`` in the rig's topology (metres)."""
        v = torch.as_tensor(vertices)
        squeeze = v.dim() == 3
        v = v[None] if squeeze else v
        if v.dim() != 4 or v.shape[2:] != (self.num_vertices, 3):
            raise ValueError(
                f"vertices must be [T,{self.num_vertices},3] or [B,T,{self.num_vertices},3] in the rig's topology, "
                f"got {tuple(torch.as_tensor(vertices).shape)}."
            )
        c = self.rhs(v) if v.shape[1] else np.zeros((v.shape[0], 0, int(self.active.sum())))
        return self.solve_rhs(c, squeeze)

    def solve_rhs(self, c: np.ndarray, squeeze: bool = False) -> SolveResult:
        """Weights from :meth:`rhs` products ``[B,T,K']`` (``[T,K']`` for one clip): motion longer than memory
        allows goes through :meth:`rhs` a piece at a time (its frames are independent) and is solved here at once.
        ``squeeze`` drops the clip axis of the result."""
        c = np.asarray(c, np.float64)
        c = c[None] if c.ndim == 2 else c
        b, n = c.shape[:2]
        out = np.broadcast_to(np.clip(0.0, self.lo, self.hi), (b, n, self.num_targets)).copy()
        iterations, kkt, converged = 0, 0.0, True
        if n and self.active.any():
            if not np.isfinite(c).all():
                raise ValueError("vertices contain NaN or infinite values; the solver needs finite motion.")
            with _one_blas_thread():
                for i in range(b):  # clips are independent problems
                    w, its, res = self._solve_clip(c[i])
                    out[i][:, self.active] = w
                    iterations, kkt = max(iterations, its), max(kkt, res)
            converged = kkt <= self.tol
        weights = torch.as_tensor(out, dtype=torch.float32)
        return SolveResult(weights[0] if squeeze else weights, iterations, kkt, converged)

    # --------------------------------------------------------------------------------------- one clip, [T, K']
    def _laplacian(self, n: int):  # noqa: ANN202 - a scipy.sparse.csr_matrix or None
        """``e * smooth * D^T D`` ``[T,T]`` (banded, in the Gram matrix's units), or None when nothing couples
        frames."""
        if self.smooth == 0.0 or n <= self.order:
            return None
        bands = self.smooth * _difference_bands(n, self.order)
        offsets = range(-self.order, self.order + 1)
        # deferred, as below: scipy.sparse would cost start-up time to every importer of the package
        from scipy import sparse

        return sparse.diags([bands[abs(o), : n - abs(o)] for o in offsets], list(offsets), format="csr")

    def _solve_clip(self, c: np.ndarray) -> tuple[np.ndarray, int, float]:
        """Minimise ``f(w) = w.Hw / 2 - c.w`` over the box for one clip ``c [T,K']`` (module docstring); returns
        ``(w, iterations, kkt_residual)``."""
        lo, hi = self.lo[self.active], self.hi[self.active]
        n, k = c.shape
        block = self._gram + np.diag(self.ridge * self._gdiag)  # one frame's Hessian
        lap = self._laplacian(n)

        def hessian(w: np.ndarray) -> np.ndarray:
            return w @ block if lap is None else w @ block + lap @ w

        h = np.diag(block)[None] + (0.0 if lap is None else lap.diagonal()[:, None])  # [T,K'] diagonal of H
        h = np.broadcast_to(h, (n, k))
        metric = 1.0 / np.sqrt(h)

        def scaled(x: np.ndarray) -> np.ndarray:  # the preconditioned Hessian h^-1/2 H h^-1/2
            return (metric * hessian(metric * x.reshape(n, k))).ravel()

        # step 1/L in the diagonal metric, L the top eigenvalue of the preconditioned Hessian (Lanczos; 2 % margin)
        if n * k <= 200:
            top = np.linalg.eigvalsh(np.stack([scaled(e) for e in np.eye(n * k)]))[-1]
        else:
            from scipy.sparse.linalg import LinearOperator, eigsh

            op = LinearOperator((n * k, n * k), scaled, dtype=np.float64)
            start = np.random.default_rng(0).standard_normal(
                n * k
            )  # fixed: deterministic, not orthogonal to any mode
            top = eigsh(op, k=1, which="LA", tol=1e-3, v0=start, return_eigenvectors=False)[0]
        step = 1.0 / (1.02 * float(top) * h)
        step_c = step * c
        w = np.clip(np.linalg.solve(block, c.T).T, lo, hi)  # every frame alone, unconstrained, clipped
        y, t_k, total, kkt = w.copy(), 1.0, 0, np.inf
        while total < self.max_iter:
            for _ in range(25):
                w_new = np.clip(y - step * hessian(y) + step_c, lo, hi)
                t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t_k * t_k))
                if np.sum((w_new - w) * (y - w_new)) > 0:  # the momentum points uphill: restart it
                    y, t_k = w_new, 1.0
                else:
                    y, t_k = w_new + (t_k - 1.0) / t_next * (w_new - w), t_next
                w = w_new
            total += 25
            # how far one diagonal Newton step would still move a weight
            kkt = float(np.abs(np.clip(w - (hessian(w) - c) / h, lo, hi) - w).max())
            if kkt <= self.tol:
                break
        return w, total, kkt


def solve_weights(
    rig: BlendshapeRig,
    vertices: ArrayLike,
    smooth: float = 0.003,
    bounds: tuple[float | ArrayLike, float | ArrayLike] = (0.0, 1.0),
    mask: ArrayLike | None = None,
    order: int = 2,
    ridge: float = 1e-6,
    tol: float = 1e-5,
    max_iter: int = 1000,
) -> Tensor:
    """Bounded, temporally smoothed least-squares weights of ``rig`` for vertex motion (module docstring).

    Args:
        rig: the rig (its topology must be the motion's).
        vertices: ``[T,V,3]`` or ``[B,T,V,3]``, metres.
        smooth: temporal penalty weight; 0 = every frame on its own.
        bounds: ``(lo, hi)``, scalars or ``[K]``.
        mask: vertices in the fit (``[V]`` booleans, ids or weights); None = all.
        order: 2 = second difference, 1 = first difference.
        ridge: ``||w||^2`` penalty weight (picks the smaller of cancelling target pairs).
        tol: KKT residual to reach.
        max_iter: most gradient iterations per clip.

    Returns:
        weights ``[T,K]`` or ``[B,T,K]`` float32 within the bounds. :class:`BlendshapeSolver` keeps the rig's
        products across clips and reports iterations and the KKT residual.
    """
    return BlendshapeSolver(rig, smooth, order, ridge, bounds, mask, tol, max_iter).solve(vertices).weights


def reconstruction_error(
    rig: BlendshapeRig, weights: ArrayLike, vertices: ArrayLike, mask: ArrayLike | None = None
) -> Reconstruction:
    """Per-vertex Euclidean error of ``rig.vertices(weights)`` against ``vertices``, in millimetres.

    Args:
        rig: the rig.
        weights: ``[T,K]`` or ``[B,T,K]``.
        vertices: ``[T,V,3]`` or ``[B,T,V,3]`` (matching ``weights``).
        mask: vertices that count (``[V]`` booleans or ids); None = all.
    """
    w = torch.as_tensor(weights).double()
    squeeze = w.dim() == 2
    target = torch.as_tensor(vertices).double()
    target = target[None] if target.dim() == 3 else target
    k = rig.num_targets
    posed = rig.neutral.double() + (w.reshape(-1, k) @ rig.deltas.double().reshape(k, -1)).reshape(
        target.shape
    )
    err = (posed - target).norm(dim=-1) * 1000.0  # [B,T,V]
    if mask is not None:
        err = err[..., torch.as_tensor(np.asarray(mask))]
    per_frame = err.mean(-1)
    return Reconstruction(float(err.mean()), float(err.max()), per_frame[0] if squeeze else per_frame)
