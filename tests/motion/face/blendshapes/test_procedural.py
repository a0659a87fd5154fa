"""The procedural ARKit-52 rig: order, unsupported targets, left/right symmetry and what the key targets move."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from motion.face.blendshapes.arkit import ARKIT_NAMES
from motion.face.blendshapes.procedural import UNSUPPORTED_TARGETS, procedural_arkit_rig
from motion.face.procedural.face import build_procedural_face

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def face():
    return build_procedural_face(seed=0)


@pytest.fixture(scope="module")
def rig():
    return procedural_arkit_rig()


def delta(rig, name: str) -> np.ndarray:
    return rig.deltas[ARKIT_NAMES.index(name)].double().numpy()


def posed(rig, **weights: float) -> np.ndarray:
    w = torch.zeros(1, rig.num_targets)
    for name, value in weights.items():
        w[0, ARKIT_NAMES.index(name)] = value
    return rig.vertices(w)[0, 0].double().numpy()


@pytest.fixture(scope="module")
def mirror(rig, face) -> np.ndarray:
    """``[V]`` id of each vertex's mirror image across x = 0 (the two mouth-slit copies share a position, so
    upper-lip copies are matched among themselves, lower ones likewise)."""
    p = rig.neutral.double().numpy()
    group = np.zeros(len(p), int)
    group[face.masks["lip_upper_edge"]] = 1
    group[face.masks["lip_lower_edge"]] = 2
    out = np.zeros(len(p), int)
    for g in range(3):
        ids = np.nonzero(group == g)[0]
        dist, j = cKDTree(p[ids]).query(p[ids] * [-1, 1, 1])
        assert dist.max() < 5e-4  # the head is symmetric to within its smooth-union blends
        out[ids] = ids[j]
    return out


def test_52_targets_in_arkit_order_on_the_head(rig, face):
    assert rig.names == ARKIT_NAMES and rig.num_targets == 52
    assert rig.num_vertices == face.num_vertices
    np.testing.assert_array_equal(rig.faces.numpy(), face.model["f"].astype(np.int64))
    np.testing.assert_allclose(rig.neutral.numpy(), face.model["v_template"], atol=1e-7)
    assert rig.to_arkit().missing == ()


def test_unsupported_targets_are_exact_zeros_and_the_rest_move(rig):
    assert UNSUPPORTED_TARGETS == ("tongueOut",)
    for name in ARKIT_NAMES:
        moved = np.abs(delta(rig, name)).max()
        if name in UNSUPPORTED_TARGETS:
            assert moved == 0.0
        else:
            assert 1e-3 < moved < 0.035, name  # millimetres to a few centimetres, in metres


def test_left_and_right_targets_mirror_each_other(rig, mirror):
    flip = np.array([-1.0, 1.0, 1.0])
    pairs = [(n, n.replace("Left", "Right")) for n in ARKIT_NAMES if n.endswith("Left")]
    pairs += [("mouthLeft", "mouthRight"), ("jawLeft", "jawRight")]
    for left, right in pairs:
        a, b = delta(rig, left), delta(rig, right)
        assert np.abs(a * flip - b[mirror]).max() < 0.05 * np.abs(a).max(), (left, right)
    for name in (
        "jawOpen",
        "jawForward",
        "mouthClose",
        "mouthFunnel",
        "mouthPucker",
        "browInnerUp",
        "cheekPuff",
    ):
        d = delta(rig, name)
        assert np.abs(d * flip - d[mirror]).max() < 0.05 * np.abs(d).max(), name


def test_jaw_open_drops_the_chin_and_opens_the_lips_not_the_forehead(rig, face):
    p = rig.neutral.double().numpy()
    d = delta(rig, "jawOpen")
    front = p[:, 2] > 0.05
    chin = np.argmin(np.where(front, p[:, 1], np.inf))
    assert d[chin, 1] < -0.005
    assert np.abs(d[face.masks["forehead"]]).max() < 1e-6
    assert np.abs(d[face.masks["left_eyeball"]]).max() < 1e-6
    upper, lower = face.masks["lip_upper_edge"], face.masks["lip_lower_edge"]
    gap = np.linalg.norm(posed(rig, jawOpen=1.0)[upper] - posed(rig, jawOpen=1.0)[lower], axis=1)
    assert 0.02 < gap.max() < 0.03  # 2-3 cm at the incisors
    closed = posed(rig, jawOpen=1.0, mouthClose=1.0)
    assert np.linalg.norm(closed[upper] - closed[lower], axis=1).max() < 5e-4  # ARKit's mouthClose on jawOpen


def test_eye_blink_left_moves_only_the_left_lids_and_closes_them(rig, face):
    d = delta(rig, "eyeBlinkLeft")
    moved = np.nonzero(np.linalg.norm(d, axis=1) > 1e-6)[0]
    assert set(moved) <= set(face.masks["left_eye_region"].tolist())
    assert d[:, 1].min() < -0.006  # the upper lid comes down over the eye
    assert np.abs(delta(rig, "eyeBlinkRight")[face.masks["left_eye_region"]]).max() < 1e-6


def test_eye_look_rotates_the_eyeball_rigidly(rig, face):
    ball = face.masks["left_eyeball"]
    p = rig.neutral.double().numpy()[ball]
    centre = p.mean(0)
    front = np.argmax(p[:, 2])
    for name, axis, sign in (("eyeLookInLeft", 0, -1), ("eyeLookOutLeft", 0, 1), ("eyeLookUpLeft", 1, 1)):
        q = posed(rig, **{name: 1.0})[ball]
        np.testing.assert_allclose(
            np.linalg.norm(q - centre, axis=1), np.linalg.norm(p - centre, axis=1), atol=1e-6
        )
        assert sign * (q[front, axis] - p[front, axis]) > 0.002, name


def test_deterministic_cached_and_built_on_a_speaker(rig, face):
    again = procedural_arkit_rig()
    assert torch.equal(again.deltas, rig.deltas) and again is not rig
    again.deltas.zero_()  # a caller's rig is its own copy
    assert np.abs(procedural_arkit_rig().deltas.numpy()).max() > 0
    shape = np.zeros(20)
    shape[[1, 13]] = (1.0, -1.5)  # head height, lower-face length: the jaw joint and the chin move
    speaker = procedural_arkit_rig(shape=shape)
    expected = face.model["v_template"] + face.model["shapedirs"][:, :, :20] @ shape
    np.testing.assert_allclose(speaker.neutral.numpy(), expected, atol=1e-6)
    assert not torch.allclose(
        speaker.deltas[ARKIT_NAMES.index("jawOpen")], rig.deltas[ARKIT_NAMES.index("jawOpen")]
    )
