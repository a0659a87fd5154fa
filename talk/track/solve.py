"""Batched Levenberg-Marquardt for tracking: many small per-frame least-squares problems solved at once.

The problem is ``sum_t |r_t(x_t, s)|^2 + sum_t x_t' P x_t + s' Q s + sum_t (x_t - x_{t-1})' S (x_t - x_{t-1})``
with per-frame variables ``x [T, P]``, optional shared variables ``s [N]`` (the identity), diagonal priors P, Q
and a diagonal temporal smoothness S (as Face2Face and its successors do on a GPU). Jacobians come from forward
mode (one ``jvp`` per variable column, the column of every frame at once: frames do not depend on each other's
variables). The damped normal equations are solved exactly:

- without smoothness, per frame, with the shared block eliminated by its Schur complement;
- with smoothness (a block-tridiagonal system), by conjugate gradients preconditioned with each frame's block.

Steps are accepted when the total cost falls; the damping shrinks after a good step and grows after a bad one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import jvp, vmap

__all__ = ["levenberg_marquardt"]

Residuals = Callable[[Tensor, Tensor | None], Tensor]  # (x [T, P], s [N] or None) -> r [T, R]


def _jacobians(fn: Residuals, x: Tensor, s: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """r [T, R], dr/dx [T, R, P] and dr/ds [T, R, N] (None without shared variables)."""
    n_p = x.shape[1]
    basis = torch.eye(n_p, dtype=x.dtype)[:, None, :].expand(
        -1, *x.shape
    )  # [P, T, P]: column p of every frame
    r = fn(x, s)
    j_x = vmap(lambda t: jvp(lambda x_: fn(x_, s), (x,), (t,))[1])(basis)  # [P, T, R]
    j_s = None
    if s is not None:
        zero_x = torch.zeros_like(x)
        basis_s = torch.eye(len(s), dtype=s.dtype)  # [N, N]
        j_s = vmap(lambda t: jvp(fn, (x, s), (zero_x, t))[1])(basis_s).permute(1, 2, 0)  # [T, R, N]
    return r, j_x.permute(1, 2, 0), j_s


def _laplacian(x: Tensor, smooth: Tensor, anchor: Tensor | None) -> Tensor:
    """Gradient / 2 of the smoothness term: S (2 x_t - x_{t-1} - x_{t+1}) with the ends (and the anchor) handled."""
    out = torch.zeros_like(x)
    diff = x[1:] - x[:-1]
    out[1:] += diff
    out[:-1] -= diff
    if anchor is not None:
        out[0] += x[0] - anchor
    return out * smooth


def _cost(r: Tensor, x: Tensor, s: Tensor | None, prior: Tensor, prior_s: Tensor | None, smooth: Tensor | None,
          anchor: Tensor | None) -> Tensor:  # fmt: skip
    cost = r.square().sum() + (prior * x.square()).sum()
    if s is not None and prior_s is not None:
        cost = cost + (prior_s * s.square()).sum()
    if smooth is not None:
        states = x if anchor is None else torch.cat([anchor[None], x])
        cost = cost + (smooth * (states[1:] - states[:-1]).square()).sum()
    return cost


def levenberg_marquardt(
    fn: Residuals,
    x: Tensor,
    prior: Tensor,
    shared: Tensor | None = None,
    prior_shared: Tensor | None = None,
    smooth: Tensor | None = None,
    anchor: Tensor | None = None,
    iterations: int = 10,
    damping: float = 1e-3,
    cg_iterations: int = 30,
    jacobian: Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor, Tensor | None]] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Minimise the module's objective.

    Args:
        fn: Residuals of every frame, ``fn(x [T, P], s [N] or None) -> [T, R]``; frame t's row may depend only on
            ``x[t]`` and ``s``.
        x: [T, P] initial per-frame variables.
        prior: [P] diagonal prior weights of the per-frame variables (0 = none).
        shared: [N] initial shared variables, or None.
        prior_shared: [N] their diagonal prior weights.
        smooth: [P] weights of the squared frame-to-frame differences, or None (not with ``shared``).
        anchor: [P] the frame before ``x[0]`` (fixed), tied to it by ``smooth``; None = free start.
        iterations: Levenberg-Marquardt iterations (each may retry with more damping).
        damping: Initial damping, relative to the diagonal of the normal matrix.
        cg_iterations: Conjugate-gradient iterations per solve when frames are coupled by ``smooth``.
        jacobian: ``(x, s) -> (r [T, R], dr/dx [T, R, P], dr/ds [T, R, N] or None)`` when known in closed form;
            None = forward-mode automatic differentiation of ``fn``.

    Returns:
        ``(x, shared)`` at the minimum found.
    """
    if smooth is not None and shared is not None:
        raise ValueError("levenberg_marquardt: smooth and shared variables together are not supported.")
    x = x.detach().clone()
    s = None if shared is None else shared.detach().clone()
    prior_s = None if s is None else (prior_shared if prior_shared is not None else torch.zeros_like(s))
    mu = damping
    with torch.no_grad():
        cost = _cost(fn(x, s), x, s, prior, prior_s, smooth, anchor)
    for _ in range(iterations):
        r, j, j_s = jacobian(x, s) if jacobian is not None else _jacobians(fn, x, s)
        with torch.no_grad():
            jtj = j.transpose(1, 2) @ j  # [T, P, P]
            g = (j.transpose(1, 2) @ r[..., None])[..., 0] + prior * x  # [T, P] (half gradients)
            if smooth is not None:
                g = g + _laplacian(x, smooth, anchor)
            eye = torch.eye(x.shape[1], dtype=x.dtype)
            if s is not None:
                assert j_s is not None and prior_s is not None
                h_ss = torch.einsum("trn,trm->nm", j_s, j_s) + torch.diag(prior_s)
                h_ts = j.transpose(1, 2) @ j_s  # [T, P, N]
                g_s = torch.einsum("trn,tr->n", j_s, r) + prior_s * s
            # each frame's block of the normal matrix: J'J, the prior and its share of the smoothness
            h_base = jtj + torch.diag_embed(prior.expand_as(x))
            if smooth is not None:
                degree = torch.full((len(x), 1), 2.0, dtype=x.dtype)  # neighbours of each frame
                degree[-1] = 1.0
                if anchor is None:
                    degree[0] = 1.0 if len(x) > 1 else 0.0
                h_base = h_base + torch.diag_embed(smooth * degree)
            diagonal = torch.diag_embed(torch.diagonal(h_base, dim1=1, dim2=2))
            improved = False
            for _attempt in range(6):
                h_block = h_base + mu * diagonal + 1e-12 * eye
                if s is None and smooth is None:
                    dx, ds = torch.linalg.solve(h_block, -g[..., None])[..., 0], None
                elif s is not None:
                    h_ss_d = (
                        h_ss
                        + mu * torch.diag(torch.diagonal(h_ss))
                        + 1e-12 * torch.eye(len(s), dtype=s.dtype)
                    )
                    inv_hts = torch.linalg.solve(h_block, h_ts)  # [T, P, N]
                    inv_g = torch.linalg.solve(h_block, g[..., None])  # [T, P, 1]
                    schur = h_ss_d - torch.einsum("tpn,tpm->nm", h_ts, inv_hts)
                    rhs = -(g_s - torch.einsum("tpn,tp->n", h_ts, inv_g[..., 0]))
                    ds = torch.linalg.solve(schur, rhs)
                    dx = -(inv_g[..., 0] + (inv_hts @ ds))
                else:
                    dx, ds = _pcg(h_block, smooth, -g, cg_iterations), None
                x_new = x + dx
                s_new = None if s is None else s + ds
                new_cost = _cost(fn(x_new, s_new), x_new, s_new, prior, prior_s, smooth, anchor)
                if torch.isfinite(new_cost) and new_cost <= cost:
                    x, s, improved = x_new, s_new, True
                    converged = (cost - new_cost) <= 1e-10 * cost
                    cost = new_cost
                    mu = max(mu / 3, 1e-9)
                    break
                mu *= 8
            if not improved or converged:
                break
    return x, s


def _pcg(h_block: Tensor, smooth: Tensor, b: Tensor, n_iter: int) -> Tensor:
    """Solve (blockdiag(h_block) - S-coupling) dx = b by block-Jacobi preconditioned conjugate gradients.

    ``h_block`` already holds each frame's smoothness diagonal (and the damping); the off-diagonal blocks are
    ``-S`` between consecutive frames.
    """
    chol = torch.linalg.cholesky(h_block)

    def apply(v: Tensor) -> Tensor:
        out = (h_block @ v[..., None])[..., 0]
        out[1:] -= smooth * v[:-1]
        out[:-1] -= smooth * v[1:]
        return out

    def precondition(v: Tensor) -> Tensor:
        return torch.cholesky_solve(v[..., None], chol)[..., 0]

    x = precondition(b)
    r = b - apply(x)
    z = precondition(r)
    p = z.clone()
    rz = (r * z).sum()
    for _ in range(n_iter):
        ap = apply(p)
        alpha = rz / (p * ap).sum().clamp(min=1e-300)
        x = x + alpha * p
        r = r - alpha * ap
        if r.abs().max() < 1e-14:
            break
        z = precondition(r)
        rz_new = (r * z).sum()
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x
