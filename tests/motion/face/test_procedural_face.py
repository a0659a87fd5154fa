"""The procedural face: file format, mesh topology, and the semantics the synthetic data relies on."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from motion.face.flame import FLAME, FLAMEParams
from motion.face.flame_io import load_flame_masks, load_flame_model
from motion.face.procedural.face import EXPRESSION_NAMES, build_procedural_face, write_procedural_face

N_EXP = 12


@pytest.fixture(scope="module")
def face():
    return build_procedural_face(seed=0)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return write_procedural_face(tmp_path_factory.mktemp("face"), seed=0)


@pytest.fixture(scope="module")
def flame(paths):
    return FLAME(str(paths.model), n_shape=40, n_expression=N_EXP)


def pose(flame, jaw=0.0, shape=None, **expr):
    e = torch.zeros(1, 1, N_EXP)
    for name, val in expr.items():
        e[0, 0, EXPRESSION_NAMES.index(name)] = val
    params = FLAMEParams(shape=shape, expression=e, jaw_pose=torch.tensor([[[jaw, 0.0, 0.0]]]))
    with torch.no_grad():
        return flame(params).vertices[0, 0].numpy().astype(np.float64)


def lip_gap(face, v):
    """Vertical gap (m) between paired upper / lower slit vertices; negative = lips pressed together."""
    return v[face.upper_lip, 1] - v[face.lower_lip, 1]


def test_file_structure_matches_flame(face, paths):
    m = load_flame_model(paths.model)
    v = m["v_template"].shape[0]
    assert 3000 <= v <= 5100
    assert 1.7 < m["f"].shape[0] / v < 2.2
    assert m["v_template"].dtype == np.float64 and m["f"].dtype == np.uint32
    assert m["shapedirs"].shape == (v, 3, 400) and m["shapedirs"].dtype == np.float64
    assert m["posedirs"].shape == (v, 3, 36) and np.abs(m["posedirs"]).max() > 0
    assert sp.issparse(m["J_regressor"]) and m["J_regressor"].shape == (5, v)
    np.testing.assert_allclose(m["J_regressor"].sum(1), 1.0)
    assert m["weights"].shape == (v, 5)
    np.testing.assert_allclose(m["weights"].sum(1), 1.0, atol=1e-12)
    assert (m["weights"] >= 0).all()
    np.testing.assert_array_equal(m["kintree_table"][1], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(m["kintree_table"][0, 1:], [0, 1, 1, 1])
    assert m["bs_style"] == "lbs" and m["bs_type"] == "lrotmin"
    for key in ("v_template", "shapedirs", "posedirs", "weights"):
        np.testing.assert_array_equal(m[key], face.model[key])
    # named shape columns are used, the tail of both bases is zero
    assert (np.abs(m["shapedirs"][:, :, :16]).max(axis=(0, 1)) > 1e-3).all()
    assert np.abs(m["shapedirs"][:, :, 40:300]).max() == 0
    assert np.abs(m["shapedirs"][:, :, 300 + len(EXPRESSION_NAMES) :]).max() == 0


def test_closed_consistently_oriented_surface(face):
    f = face.model["f"].astype(np.int64)
    v = face.model["v_template"]
    directed = Counter(map(tuple, np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]).tolist()))
    assert max(directed.values()) == 1, "an oriented edge is used twice: inconsistent winding"
    assert all((b, a) in directed for (a, b) in directed), "open boundary: the mesh is not closed"
    tri = v[f]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) / 2
    assert area.min() > 0
    volume = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6
    assert volume > 0.001  # outward normals, a head-sized volume (m^3)


def test_layout_units_and_orientation(face):
    v = face.model["v_template"]
    masks = face.masks
    skin = np.setdiff1d(np.arange(len(v)), np.concatenate([masks["left_eyeball"], masks["right_eyeball"]]))
    face_pts = v[masks["face"]]
    assert 0.19 < face_pts[:, 1].max() - face_pts[:, 1].min() + 0.06 < 0.28  # brow-to-chin plus forehead
    head = v[skin]
    assert 0.2 < head[:, 1].max() - v[masks["face"], 1].min() < 0.26  # crown to chin
    nose_tip = v[masks["nose"]][np.argmax(v[masks["nose"], 2])]
    assert abs(nose_tip[0]) < 0.005 and nose_tip[2] == pytest.approx(head[:, 2].max(), abs=0.002)
    assert v[masks["left_eyeball"], 0].mean() > 0.02 and v[masks["right_eyeball"], 0].mean() < -0.02
    mirrored = head * np.array([-1, 1, 1])
    dist = np.min(np.linalg.norm(mirrored[::7, None] - head[None, ::1], axis=-1), axis=1)
    assert np.percentile(dist, 95) < 0.004  # left/right symmetric


def test_masks_file(face, paths):
    masks = load_flame_masks(paths.masks)
    n_v = face.num_vertices
    for name in (
        "lips",
        "forehead",
        "eye_region",
        "nose",
        "face",
        "left_eyeball",
        "right_eyeball",
        "scalp",
        "neck",
        "lip_upper_edge",
        "lip_lower_edge",
        "mouth_interior",
    ):
        ids = masks[name]
        assert ids.dtype == np.int64 and len(ids) > 0, name
        assert ids.min() >= 0 and ids.max() < n_v, name
    assert np.isin(face.upper_lip, masks["lips"]).all() and np.isin(face.lower_lip, masks["lips"]).all()
    assert len(np.intersect1d(masks["forehead"], masks["lips"])) == 0


def test_lips_closed_at_rest_for_any_shape(face, flame):
    v = pose(flame)
    np.testing.assert_array_equal(lip_gap(face, v), 0.0)
    shape = torch.randn(1, 40, generator=torch.Generator().manual_seed(3)) * 1.5
    v = pose(flame, shape=shape)
    assert np.abs(lip_gap(face, v)).max() < 1e-6
    assert np.abs(v - pose(flame)).max() > 0.004  # and the shape did change the head


def test_shape_coefficients_change_head_plausibly(flame):
    base = pose(flame)
    for k in range(16):
        coeff = torch.zeros(1, 40)
        coeff[0, k] = 1.0
        d = np.linalg.norm(pose(flame, shape=coeff) - base, axis=1)
        assert 0.0015 < d.max() < 0.012, k
    width = lambda v: v[:, 0].max() - v[:, 0].min()  # noqa: E731
    assert width(pose(flame, shape=torch.eye(40)[None, 0])) > width(base) * 1.03


def test_jaw_opens_mouth_and_lowers_chin(face, flame):
    chin = face.landmarks["lmk_face_idx"][list(face.landmarks["names"]).index("chin")]
    chin_v = face.model["f"][chin].astype(int)
    gaps, chins = [], []
    for jaw in (0.0, 0.05, 0.12, 0.25):
        v = pose(flame, jaw=jaw)
        gaps.append(lip_gap(face, v).max())
        chins.append(v[chin_v, 1].mean())
    assert gaps[0] == 0 and all(np.diff(gaps) > 0.002)
    assert 0.015 < gaps[-1] < 0.035  # wide open ~2 cm
    assert all(np.diff(chins) < -0.002)
    forehead = face.masks["forehead"]
    assert np.abs(pose(flame, jaw=0.25)[forehead] - pose(flame)[forehead]).max() < 1e-6


@pytest.mark.parametrize("jaw", [0.0, 0.04, 0.08])
def test_lip_press_closes_small_jaw_openings(face, flame, jaw):
    open_gap = lip_gap(face, pose(flame, jaw=jaw))
    pressed = lip_gap(face, pose(flame, jaw=jaw, lip_press=1.0))
    assert pressed.max() <= 0.0003  # contact along the whole slit
    assert pressed.min() > -0.012  # pressed, not passed through each other by more than a lip
    if jaw > 0:
        assert open_gap.max() > 0.003


def _lid_clearance(face, v, eye: str) -> np.ndarray:
    """z of skin vertices in front of the eye minus the eyeball surface behind them (m)."""
    ball = v[face.masks[f"{eye}_eyeball"]]
    c = ball.mean(0)
    r = np.linalg.norm(ball - c, axis=1).min()
    skin = v[face.masks[f"{eye}_eye_region"]]
    rho = np.linalg.norm(skin[:, :2] - c[:2], axis=1)
    sel = rho < 0.55 * r
    return skin[sel, 2] - (c[2] + np.sqrt(r**2 - rho[sel] ** 2))


@pytest.mark.parametrize("eye,other", [("left", "right"), ("right", "left")])
def test_blink_closes_that_eyelid(face, flame, eye, other):
    open_v = pose(flame)
    assert _lid_clearance(face, open_v, eye).min() < -0.002  # open: the eyeball is visible
    closed = pose(flame, **{f"blink_{eye}": 1.0})
    assert _lid_clearance(face, closed, eye).min() > 0.0  # closed: skin covers the whole cornea
    assert _lid_clearance(face, closed, other).min() < -0.002  # the other eye stays open


def test_expressions_move_their_regions(face, flame):
    base = pose(flame)
    corner_l = np.argmax(base[face.upper_lip, 0])
    up_c, lo_c = face.upper_lip[len(face.upper_lip) // 2], face.lower_lip[len(face.lower_lip) // 2]
    mouth_width = lambda v: v[face.upper_lip, 0].max() - v[face.upper_lip, 0].min()  # noqa: E731
    forehead = face.masks["forehead"]

    v = pose(flame, smile=1.0)
    assert v[face.upper_lip[corner_l], 1] - base[face.upper_lip[corner_l], 1] > 0.003
    v = pose(flame, stretch=1.0)
    assert mouth_width(v) - mouth_width(base) > 0.006
    v = pose(flame, lip_round=1.0)
    assert mouth_width(base) - mouth_width(v) > 0.008 and v[up_c, 2] - base[up_c, 2] > 0.005
    v = pose(flame, brow_raise=1.0)
    assert (v[forehead, 1] - base[forehead, 1]).max() > 0.005
    v = pose(flame, brow_furrow=1.0)
    assert (v[forehead, 1] - base[forehead, 1]).min() < -0.002
    v = pose(flame, upper_lip_raise=1.0)
    assert v[up_c, 1] - base[up_c, 1] > 0.003 and abs(v[lo_c, 1] - base[lo_c, 1]) < 1e-4
    v = pose(flame, lower_lip_depress=1.0)
    assert base[lo_c, 1] - v[lo_c, 1] > 0.003 and abs(v[up_c, 1] - base[up_c, 1]) < 1e-4
    v = pose(flame, cheek_puff=1.0)
    assert (np.abs(v[:, 0]) - np.abs(base[:, 0])).max() > 0.004
    for name in EXPRESSION_NAMES:  # the whole plausible range stays bounded
        for val in (-0.5, 1.5):
            assert np.abs(pose(flame, **{name: val}) - base).max() < 0.025, name


def test_skinning_weights_follow_anatomy(face):
    w = face.model["weights"]
    m = face.masks
    assert (w[m["left_eyeball"], 3] == 1).all() and (w[m["right_eyeball"], 4] == 1).all()
    assert (w[m["forehead"], 2] == 0).all()
    assert w[face.lower_lip[len(face.lower_lip) // 2], 2] > 0.99
    assert w[face.upper_lip[len(face.upper_lip) // 2], 2] < 0.01


def test_eye_pose_rotates_eyeballs_about_their_centre(face, flame):
    ball = face.masks["left_eyeball"]
    with torch.no_grad():
        out = flame(FLAMEParams(eye_pose=torch.tensor([[[0.0, 0.3, 0.0, 0.0, 0.0, 0.0]]])))
    v = out.vertices[0, 0].numpy()
    base = face.model["v_template"]
    c = base[ball].mean(0)
    np.testing.assert_allclose(
        np.linalg.norm(v[ball] - c, axis=1), np.linalg.norm(base[ball] - c, axis=1), atol=1e-6
    )
    front = ball[np.argmax(base[ball, 2])]  # the cornea apex
    assert v[front, 0] - base[front, 0] > 0.003  # a positive y rotation turns the gaze toward +x
    np.testing.assert_allclose(v[face.masks["right_eyeball"]], base[face.masks["right_eyeball"]], atol=1e-6)


def test_seed_only_changes_random_identity_columns(face):
    other = build_procedural_face(seed=1)
    np.testing.assert_array_equal(other.model["v_template"], face.model["v_template"])
    np.testing.assert_array_equal(other.model["shapedirs"][:, :, :16], face.model["shapedirs"][:, :, :16])
    assert np.abs(other.model["shapedirs"][:, :, 16:40] - face.model["shapedirs"][:, :, 16:40]).max() > 1e-4
    np.testing.assert_array_equal(build_procedural_face(seed=1).model["shapedirs"], other.model["shapedirs"])
