"""The idle head-motion model: seeded, speech-coupled, causal; rigid rotations about the neck."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from motion.idle import IdleHead, apply_head_pose, head_pose, neck_pivot, rotation_matrices, speech_activity

FPS, SR = 30.0, 16000


def _dists(x: torch.Tensor) -> torch.Tensor:
    """Pairwise distances ``[..., N, N]`` (exact on the diagonal, unlike cdist's matmul form)."""
    return (x[..., :, None, :] - x[..., None, :, :]).norm(dim=-1)


def _speech(seconds: float, on: list[tuple[float, float]]) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    wav = 1e-4 * np.random.default_rng(0).normal(size=t.size)
    for a, b in on:
        wav[(t >= a) & (t < b)] += 0.3 * np.sin(2 * np.pi * 180 * t[(t >= a) & (t < b)])
    return wav.astype(np.float32)


def test_activity_is_one_in_speech_zero_in_silence_and_causal():
    wav = _speech(4.0, [(1.0, 2.5)])
    act = speech_activity(wav, SR, 120, FPS)
    assert act[:25].max() < 0.05 and act[50:74].min() > 0.9 and act[110:].max() < 0.1
    changed = wav.copy()
    changed[int(3.0 * SR) :] = 0.5  # the future only: the past frames keep their values
    np.testing.assert_array_equal(speech_activity(changed, SR, 120, FPS)[:89], act[:89])


def test_head_pose_is_seeded_grows_with_speech_nods_at_onsets_and_is_causal():
    n = 600
    quiet = head_pose(n, FPS, seed=3, settings=IdleHead(nod_deg=0))
    torch.testing.assert_close(quiet, head_pose(n, FPS, seed=3, settings=IdleHead(nod_deg=0)), rtol=0, atol=0)
    assert not torch.equal(quiet, head_pose(n, FPS, seed=4, settings=IdleHead(nod_deg=0)))
    bounds = torch.tensor([2.5, 4.0, 1.5]) * math.pi / 180
    assert (quiet.abs().max(0).values <= bounds + 1e-6).all() and (quiet.std(0) > 0.2 * bounds).all()
    talking = head_pose(n, FPS, seed=3, activity=np.ones(n), settings=IdleHead(nod_deg=0))
    torch.testing.assert_close(talking, quiet * 1.6)  # speech_gain 0.6
    act = np.zeros(n)
    act[300:] = 1.0
    nod = head_pose(n, FPS, seed=3, activity=act, settings=IdleHead(speech_gain=0)) - quiet
    dip = nod[:, 0] * 180 / math.pi
    assert (
        dip[:300].abs().max() < 1e-6 and 1.4 < float(dip[300:310].max()) <= 1.5
    )  # one 1.5 degree nod (sampled)
    assert dip[310:].abs().max() < 1e-6 and nod[:, 1:].abs().max() < 1e-6
    later = act.copy()
    later[450:] = 0.0
    torch.testing.assert_close(
        head_pose(n, FPS, 3, later)[:450], head_pose(n, FPS, 3, act)[:450], rtol=0, atol=0
    )


def test_rotations_turn_the_face_as_named_and_keep_the_neck_still():
    nose = torch.tensor([0.0, 0.0, 1.0])
    r = rotation_matrices(torch.tensor([[0.2, 0.0, 0.0], [0.0, 0.2, 0.0], [0.0, 0.0, 0.2]]))
    assert (r[0] @ nose)[1] < 0 and (r[1] @ nose)[0] > 0  # +pitch: face down; +yaw: face towards +x
    assert (r[2] @ torch.tensor([0.0, 1.0, 0.0]))[0] < 0  # +roll: the top of the head towards -x
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3).expand(3, 3, 3), rtol=0, atol=1e-6)
    mesh = torch.randn(4, 50, 3) * 0.05
    pivot = neck_pivot(mesh[0])
    pose = torch.randn(4, 3) * 0.1
    posed = apply_head_pose(torch.cat([mesh, pivot.expand(4, 1, 3)], 1), pose, pivot)
    torch.testing.assert_close(posed[:, -1], pivot.expand(4, 3), rtol=0, atol=1e-7)
    torch.testing.assert_close(_dists(posed[:, :-1]), _dists(mesh), rtol=0, atol=1e-6)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="amplitudes"):
        IdleHead(yaw_deg=-1)
