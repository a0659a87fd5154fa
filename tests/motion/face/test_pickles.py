"""The restricted unpickler: files that name code are refused unrun, FLAME/VOCASET-shaped data loads."""

from __future__ import annotations

import builtins
import collections
import contextlib
import importlib.util
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from motion.face.flame_io import load_flame_masks, load_flame_model, load_landmark_embedding
from motion.face.pickles import (
    ChumpyStandIn,
    UnsafePickleError,
    load_npy,
    load_pickle,
    loads_pickle,
    to_plain,
)
from talk.errors import UserError
from tests.talk.miniature import py2_pickle_dumps

REPO = Path(__file__).resolve().parents[3]


def _module_alone(relpath: str) -> types.ModuleType:
    """Imports one module file without its package ``__init__`` (``talk.data`` imports the Lightning DataModule,
    which these readers do not need and which would take seconds)."""
    name = "_isolated_" + relpath.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, REPO / relpath)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the body runs
    spec.loader.exec_module(module)
    return module


class _RunsCode:
    """Pickles as ``fn(arg)``: what a crafted file does to run code while it is being loaded."""

    def __init__(self, fn, arg) -> None:
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


def _payloads(marker: Path) -> dict[str, object]:
    return {
        "os.system": _RunsCode(os.system, f"touch {marker}"),
        "builtins.exec": _RunsCode(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
    }


@pytest.fixture(params=["os.system", "builtins.exec"])
def crafted(request, tmp_path):
    """(bytes of a dict whose value runs code when unpickled, marker file the code would create)."""
    marker = tmp_path / "pwned"
    payload = {"v_template": _payloads(marker)[request.param], "f": np.zeros((1, 3), np.int64)}
    return pickle.dumps(payload, protocol=2), marker


def _assert_refused(exc: BaseException, path: Path, marker: Path) -> None:
    msg = str(exc)
    assert isinstance(exc, UserError)
    assert str(path) in msg and "holds code" in msg and "\n" not in msg, msg
    assert not marker.exists()


def test_flame_model_and_masks_that_name_code_are_refused(crafted, tmp_path):
    data, marker = crafted
    for name, load in (("generic_model.pkl", load_flame_model), ("FLAME_masks.pkl", load_flame_masks)):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(UserError) as info:
            load(path)
        _assert_refused(info.value, path, marker)


def test_templates_pickle_that_names_code_is_refused(crafted, tmp_path):
    data, marker = crafted
    asset_files = _module_alone("talk/data/asset_files.py")
    path = tmp_path / "templates.pkl"
    path.write_bytes(data)
    with pytest.raises(UserError) as info:
        asset_files.load_templates(path)
    _assert_refused(info.value, path, marker)
    with pytest.raises(UserError) as info:  # region files are FLAME_masks pickles
        asset_files.load_region_sets(path)
    _assert_refused(info.value, path, marker)


@pytest.mark.parametrize("planted", ["subj_seq_to_idx.pkl", "raw_audio_fixed.pkl", "templates.pkl"])
def test_vocaset_release_pickle_that_names_code_is_refused(planted, tmp_path):
    vocaset_raw = _module_alone("talk/data/formats/vocaset_raw.py")
    raw, marker = tmp_path / "raw", tmp_path / "pwned"
    raw.mkdir()
    np.save(raw / "data_verts.npy", np.zeros((2, 4, 3), np.float32))
    files = {
        "subj_seq_to_idx.pkl": {"S": {"sentence01": {1: 0, 2: 1}}},
        "raw_audio_fixed.pkl": {"S": {"sentence01": {"audio": np.zeros(10, np.int16), "sample_rate": 22000}}},
        "templates.pkl": {"S": np.zeros((4, 3))},
    }
    files[planted] = {"S": _payloads(marker)["os.system"]}
    for name, content in files.items():
        (raw / name).write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(UserError) as info:
        vocaset_raw.convert_vocaset(raw, tmp_path / "out", progress=False)
    _assert_refused(info.value, raw / planted, marker)


def test_deca_npy_object_array_that_names_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "landmark_embedding.npy"
    np.save(path, np.array({"static_lmk_faces_idx": _payloads(marker)["os.system"]}, dtype=object))
    with pytest.raises(UserError) as info:
        load_landmark_embedding(path)
    _assert_refused(info.value, path, marker)


def test_refusal_names_the_global_and_imports_nothing():
    data = pickle.dumps(_RunsCode(os.system, "true"), protocol=2)
    with pytest.raises(UnsafePickleError, match=rf"refusing to load {os.name}\.system from a pickle") as info:
        loads_pickle(data)
    assert isinstance(info.value, pickle.UnpicklingError)
    # A module that only the file names is never imported.
    with pytest.raises(UnsafePickleError, match="not_a_module_talk_knows.f"):
        loads_pickle(b"\x80\x02cnot_a_module_talk_knows\nf\nq\x00.")
    assert "not_a_module_talk_knows" not in sys.modules


def test_admitted_callables_check_their_arguments():
    class Sneaky:  # numpy's array rebuild asked for a class other than ndarray
        def __reduce__(self):
            return np.zeros(1).__reduce__()[0], (collections.OrderedDict, (0,), b"b")

    with pytest.raises(UnsafePickleError, match="_reconstruct"):
        loads_pickle(pickle.dumps(Sneaky(), protocol=2))


@contextlib.contextmanager
def _fake_chumpy():
    """Installs a module ``chumpy.ch`` whose ``Ch`` pickles like chumpy's (value under ``"x"``), then removes it."""
    cls = type("Ch", (), {"__module__": "chumpy.ch", "__qualname__": "Ch"})
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch")}
    sys.modules["chumpy"] = types.ModuleType("chumpy")
    sys.modules["chumpy.ch"] = types.SimpleNamespace(Ch=cls)
    try:
        yield cls
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k)
            else:
                sys.modules[k] = v


def test_flame_shaped_protocol2_pickle_loads(tmp_path):
    x = np.random.default_rng(0).normal(size=(4, 3))
    reg = sp.csc_matrix(np.eye(3, 4))
    data = {
        "arr": np.arange(6, dtype=np.float32).reshape(2, 3),
        "ordered": collections.OrderedDict(a=np.int64(3), b=[1.5, "s", b"raw", b""]),
        "J_regressor": reg,
        "misc": ({1, 2}, frozenset({3}), slice(1, 2), 1 + 2j, bytearray(b"ab")),
    }
    with _fake_chumpy() as ch_class:
        ch = ch_class()
        ch.x, ch._dirty_vars, ch._depends_on_deps = x, {"r"}, {}
        data["ch"] = ch
        blob = pickle.dumps(data, protocol=2)
    assert b"chumpy.ch" in blob and "chumpy" not in sys.modules
    path = tmp_path / "model.pkl"
    path.write_bytes(blob)
    loaded = load_pickle(path)
    assert isinstance(loaded["ordered"], collections.OrderedDict) and loaded["ordered"]["a"] == 3
    assert loaded["ordered"]["b"] == [1.5, "s", b"raw", b""]
    assert loaded["misc"] == data["misc"]
    assert isinstance(loaded["ch"], ChumpyStandIn) and loaded["ch"].state["_dirty_vars"] == {"r"}
    plain = to_plain(loaded)
    np.testing.assert_array_equal(plain["arr"], data["arr"])
    np.testing.assert_array_equal(plain["ch"], x)
    assert sp.issparse(plain["J_regressor"]) and plain["J_regressor"].format == "csc"
    np.testing.assert_array_equal(plain["J_regressor"].toarray(), reg.toarray())


def test_python2_numpy_pickle_and_protocol5_array_load():
    # The opcodes Python 2 and its numpy wrote: numpy.core globals, byte strings decoded as latin1.
    py2 = {"templ": np.arange(6.0).reshape(2, 3), "ids": np.arange(3, dtype=np.int16), "name": "FaceTalk"}
    loaded = loads_pickle(py2_pickle_dumps(py2))
    for key in ("templ", "ids"):
        np.testing.assert_array_equal(loaded[key], py2[key])
        assert loaded[key].dtype == py2[key].dtype
    assert loaded["name"] == "FaceTalk"
    arr = np.arange(12.0).reshape(3, 4)[:, ::2]
    np.testing.assert_array_equal(loads_pickle(pickle.dumps(arr, protocol=5)), arr)
    assert loads_pickle(pickle.dumps(np.float64(2.5), protocol=5)) == 2.5


def test_npy_files_plain_and_object(tmp_path):
    plain = tmp_path / "plain.npy"
    np.save(plain, np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(load_npy(plain), np.ones((2, 3)))
    emb = tmp_path / "landmark_embedding.npy"
    lmk = {"static_lmk_faces_idx": np.array([0, 1]), "static_lmk_bary_coords": np.full((2, 3), 1 / 3)}
    np.save(emb, np.array(lmk, dtype=object))
    fidx, bary = load_landmark_embedding(emb)
    np.testing.assert_array_equal(fidx, [0, 1])
    np.testing.assert_allclose(bary, 1 / 3)


def test_deca_embedding_with_torch_tensors_loads(tmp_path):
    """DECA's landmark_embedding.npy keeps its dynamic embedding as torch tensors inside the pickled dict."""
    import torch

    lmk = {
        "static_lmk_faces_idx": np.array([4, 5]),
        "static_lmk_bary_coords": np.full((2, 3), 1 / 3),
        "dynamic_lmk_faces_idx": torch.arange(6).reshape(2, 3),
        "dynamic_lmk_bary_coords": torch.ones(2, 3, 3),
    }
    path = tmp_path / "landmark_embedding.npy"
    np.save(path, np.array(lmk, dtype=object))
    raw = load_npy(path).item()
    np.testing.assert_array_equal(raw["dynamic_lmk_faces_idx"], np.arange(6).reshape(2, 3))
    fidx, _ = load_landmark_embedding(path)
    np.testing.assert_array_equal(fidx, [4, 5])
