"""FLAME forward pass and FLAME file loading (tiny hand-made models and the procedural face)."""

from __future__ import annotations

import math
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from motion.face.flame import FLAME, FLAMEParams, batch_rodrigues
from motion.face.flame_io import (
    FlameModelFormatError,
    FlameModelNotFoundError,
    load_flame_masks,
    load_flame_model,
)
from motion.face.procedural.face import write_procedural_face


@pytest.fixture(scope="module")
def proc_paths(tmp_path_factory):
    return write_procedural_face(tmp_path_factory.mktemp("proc"))


@pytest.fixture(scope="module")
def proc_flame(proc_paths):
    return FLAME(
        str(proc_paths.model), n_shape=20, n_expression=12, landmark_embedding_path=str(proc_paths.landmarks)
    )


def _tiny_model(n_shape_cols: int = 300, n_exp_cols: int = 100) -> dict:
    """6 vertices: 0-2 follow the jaw, 3-5 the root; the jaw joint sits at vertex 5."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=(6, 3)) * 0.05
    weights = np.zeros((6, 5))
    weights[:3, 2] = 1.0
    weights[3:, 0] = 1.0
    reg = np.zeros((5, 6))
    reg[0, 3] = reg[1, 4] = reg[2, 5] = reg[3, 0] = reg[4, 1] = 1.0
    shapedirs = np.zeros((6, 3, n_shape_cols + n_exp_cols))
    shapedirs[:, :, 0] = rng.normal(size=(6, 3)) * 0.01
    shapedirs[:, :, 1] = rng.normal(size=(6, 3)) * 0.01
    shapedirs[:, :, n_shape_cols] = rng.normal(size=(6, 3)) * 0.01
    return {
        "v_template": v,
        "f": np.array([[0, 1, 2], [3, 4, 5]], np.uint32),
        "shapedirs": shapedirs,
        "posedirs": np.zeros((6, 3, 36)),
        "J_regressor": sp.csc_matrix(reg),
        "weights": weights,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], np.int64),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


def _write(tmp_path, model, name="m.pkl"):
    path = tmp_path / name
    with open(path, "wb") as fh:
        pickle.dump(model, fh, protocol=2)
    return str(path)


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def test_zero_params_reproduce_template_exactly(proc_flame):
    out = proc_flame(FLAMEParams.zeros(2, 3, n_shape=20, n_expression=12))
    assert out.vertices.shape == (2, 3, proc_flame.num_vertices, 3)
    assert torch.equal(out.vertices[1, 2], proc_flame.v_template)
    out2 = proc_flame(FLAMEParams(jaw_pose=torch.zeros(1, 4, 3)))  # the other fields are None -> zeros
    assert torch.equal(out2.vertices[0, 3], proc_flame.v_template)
    assert out.landmarks is not None and out.landmarks.shape[:2] == (2, 3) and out.landmarks.shape[-1] == 3
    assert out.joints.shape == (2, 3, 5, 3)


def test_lbs_matches_hand_computed_jaw_rotation(tmp_path):
    model = _tiny_model()
    flame = FLAME(_write(tmp_path, model), n_shape=2, n_expression=1)
    theta = 0.3
    out = flame(FLAMEParams(jaw_pose=torch.tensor([[[theta, 0.0, 0.0]]], dtype=torch.float32)))
    v = model["v_template"]
    pivot = v[5]
    expected = v.copy()
    expected[:3] = (v[:3] - pivot) @ _rot_x(theta).T + pivot
    np.testing.assert_allclose(out.vertices[0, 0].numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(out.joints[0, 0, 2].numpy(), pivot, atol=1e-6)


def test_pose_corrective_uses_rotation_minus_identity_of_non_root_joints(tmp_path):
    model = _tiny_model()
    direction = np.array([0.0, 0.01, 0.02])
    # feature 9 + 7 = jaw (2nd non-root joint), matrix entry R[2,1] = sin(theta) for a rotation about x
    model["posedirs"][0, :, 16] = direction
    model["posedirs"][3, :, 0 + 4] = direction  # neck R[1,1] = cos - 1, zero for a pure jaw rotation
    flame = FLAME(_write(tmp_path, model), n_shape=2, n_expression=1)
    theta = 0.4
    out = flame(FLAMEParams(jaw_pose=torch.tensor([[[theta, 0.0, 0.0]]])))
    v = model["v_template"]
    posed0 = v[0] + math.sin(theta) * direction  # the corrective is added in the rest pose, then skinned
    expected0 = (posed0 - v[5]) @ _rot_x(theta).T + v[5]
    np.testing.assert_allclose(out.vertices[0, 0, 0].numpy(), expected0, atol=1e-6)
    np.testing.assert_allclose(out.vertices[0, 0, 3].numpy(), v[3], atol=1e-7)


def test_shape_and_expression_use_flame_column_layout(tmp_path):
    model = _tiny_model()
    flame = FLAME(_write(tmp_path, model), n_shape=2, n_expression=1)
    out = flame(
        FLAMEParams(
            shape=torch.tensor([[1.0, 0.0]]),
            expression=torch.tensor(
                [
                    [[0.0]],
                ]
            ).reshape(1, 1, 1),
        )
    )
    np.testing.assert_allclose(
        out.vertices[0, 0].numpy(), model["v_template"] + model["shapedirs"][:, :, 0], atol=1e-6
    )
    out = flame(FLAMEParams(expression=torch.full((1, 2, 1), 2.0)))  # expression 0 is file column 300
    np.testing.assert_allclose(
        out.vertices[0, 1].numpy(), model["v_template"] + 2 * model["shapedirs"][:, :, 300], atol=1e-6
    )


def test_global_pose_and_translation(tmp_path):
    model = _tiny_model()
    flame = FLAME(_write(tmp_path, model), n_shape=2, n_expression=1)
    out = flame(
        FLAMEParams(global_pose=torch.tensor([[[0.0, 0.5, 0.0]]]), translation=torch.tensor([[[1.0, 2, 3]]]))
    )
    v = model["v_template"]
    root = v[3]
    c, s = math.cos(0.5), math.sin(0.5)
    ry = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    np.testing.assert_allclose(out.vertices[0, 0].numpy(), (v - root) @ ry.T + root + [1, 2, 3], atol=1e-6)


def test_too_many_coefficients_raise(tmp_path):
    path = _write(tmp_path, _tiny_model())
    with pytest.raises(ValueError, match="n_shape=301"):
        FLAME(path, n_shape=301)
    with pytest.raises(ValueError, match="n_expression=101"):
        FLAME(path, n_expression=101)
    flame = FLAME(path, n_shape=2, n_expression=1)
    with pytest.raises(ValueError, match="expression"):
        flame(FLAMEParams(expression=torch.zeros(1, 1, 5)))
    with pytest.raises(ValueError, match="inconsistent"):
        flame(FLAMEParams(jaw_pose=torch.zeros(1, 2, 3), expression=torch.zeros(1, 3, 1)))


def test_gradients_flow_to_expression_and_jaw(proc_flame):
    expr = torch.zeros(1, 2, 12, requires_grad=True)
    jaw = torch.full((1, 2, 3), 0.05, requires_grad=True)
    out = proc_flame(FLAMEParams(expression=expr, jaw_pose=jaw))
    probe = torch.randn(out.vertices.shape, generator=torch.Generator().manual_seed(0))
    (out.vertices * probe).sum().backward()
    assert expr.grad.abs()[..., :11].min() > 0  # every named component moves some vertex
    assert jaw.grad[..., 0].abs().min() > 0


def test_batch_rodrigues_is_orthonormal_and_exact_at_zero():
    r = batch_rodrigues(torch.tensor([[0.0, 0, 0], [0.3, -0.2, 0.5]], dtype=torch.float64))
    assert torch.equal(r[0], torch.eye(3, dtype=torch.float64))
    np.testing.assert_allclose((r[1] @ r[1].T).numpy(), np.eye(3), atol=1e-12)


def test_chumpy_pickle_loads_without_chumpy(tmp_path):
    """Write a FLAME-like pickle whose arrays are chumpy ``Ch`` objects, then load it with chumpy absent."""
    mod_root = types.ModuleType("chumpy")
    mod_ch = types.ModuleType("chumpy.ch")

    class Ch:  # mimics chumpy: the value lives in __dict__["x"]; caches are dropped by __getstate__
        def __init__(self, x):
            self.x = np.asarray(x, np.float64)
            self._dirty_vars = set()
            self._itr = None
            self._depends_on_deps = {}
            self._cache = {"r": None}

        def __getstate__(self):
            state = dict(self.__dict__)
            del state["_cache"]
            return state

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    mod_ch.Ch = Ch
    mod_root.ch = mod_ch
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch")}
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = mod_root, mod_ch
    try:
        model = _tiny_model()
        chumpied = dict(model)
        for key in ("v_template", "shapedirs", "posedirs", "weights"):
            chumpied[key] = Ch(model[key])
        path = _write(tmp_path, chumpied, "chumpy_model.pkl")
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    assert b"chumpy.ch" in open(path, "rb").read()
    assert "chumpy" not in sys.modules or saved["chumpy"] is not None
    loaded = load_flame_model(path)
    for key in ("v_template", "shapedirs", "posedirs", "weights"):
        assert isinstance(loaded[key], np.ndarray)
        np.testing.assert_array_equal(loaded[key], model[key])
    assert sp.issparse(loaded["J_regressor"]) and loaded["J_regressor"].format == "csc"
    np.testing.assert_array_equal(loaded["J_regressor"].toarray(), model["J_regressor"].toarray())
    flame = FLAME(path, n_shape=2, n_expression=1)
    assert torch.allclose(flame.v_template, torch.as_tensor(model["v_template"], dtype=torch.float32))


def test_missing_file_message_points_to_flame_download(tmp_path):
    with pytest.raises(FlameModelNotFoundError) as info:
        load_flame_model(tmp_path / "generic_model.pkl")
    assert isinstance(info.value, FileNotFoundError)
    msg = str(info.value)
    assert "flame.is.tue.mpg.de" in msg and "generic_model.pkl" in msg and "\n" not in msg
    with pytest.raises(FileNotFoundError):
        FLAME(str(tmp_path / "nope.pkl"))
    with pytest.raises(FileNotFoundError):
        load_flame_masks(tmp_path / "FLAME_masks.pkl")


def test_wrong_structure_is_a_clear_error(tmp_path):
    model = _tiny_model()
    del model["posedirs"]
    with pytest.raises(FlameModelFormatError, match="posedirs"):
        load_flame_model(_write(tmp_path, model))
    bad = tmp_path / "garbage.pkl"
    bad.write_bytes(b"not a pickle at all")
    with pytest.raises(FlameModelFormatError, match="garbage.pkl"):
        load_flame_model(bad)
    model = _tiny_model()
    model["weights"] = model["weights"][:, :4]
    with pytest.raises(FlameModelFormatError, match="weights"):
        load_flame_model(_write(tmp_path, model, "w.pkl"))


def test_flame_params_inference():
    p = FLAMEParams(shape=torch.zeros(3, 10), expression=torch.zeros(3, 7, 4))
    assert p.batch_frames() == (3, 7)
    assert FLAMEParams(shape=torch.zeros(2, 10)).batch_frames() == (2, 1)
    with pytest.raises(ValueError):
        FLAMEParams().batch_frames()
    z = FLAMEParams.zeros(2, 5, n_shape=4, n_expression=3, dtype=torch.float64)
    assert (
        z.expression.shape == (2, 5, 3) and z.eye_pose.shape == (2, 5, 6) and z.shape.dtype == torch.float64
    )


def test_motion_offsets_on_a_flame_template_are_flame_itself(proc_flame):
    torch.manual_seed(0)
    shape = torch.randn(2, 20) * 0.8
    template = proc_flame(FLAMEParams(shape=shape, jaw_pose=torch.zeros(2, 1, 3))).vertices[:, 0]
    torch.testing.assert_close(proc_flame.fit_shape(template), shape, atol=1e-3, rtol=0)
    motion = torch.cat([torch.rand(2, 5, 12), torch.rand(2, 5, 1) * 0.3, torch.randn(2, 5, 2) * 0.02], -1)
    assert proc_flame.num_motion_params == motion.shape[-1] == 15
    offsets = proc_flame.motion_offsets(motion, template)
    params = FLAMEParams(shape=shape, expression=motion[..., :12], jaw_pose=motion[..., 12:])
    posed = proc_flame(params).vertices
    torch.testing.assert_close(template[:, None] + offsets, posed, atol=1e-6, rtol=0)
    # any template (not one FLAME made): zero motion stays on it, and the jaw still opens the mouth
    other = template + torch.randn_like(template) * 1e-3
    assert proc_flame.motion_offsets(torch.zeros(2, 3, 15), other).abs().max() < 1e-6
    jaw = torch.zeros(1, 1, 15)
    jaw[..., 12] = 0.2
    assert proc_flame.motion_offsets(jaw, other[:1]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="15"):
        proc_flame.motion_offsets(torch.zeros(1, 2, 14), template[:1])
