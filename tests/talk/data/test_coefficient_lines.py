"""Manifest lines of ARKit-52 weights (npz, Live Link Face csv, Audio2Face json) and BFM coefficients (npz, mat)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from scipy.io import savemat

from motion.face.blendshapes import ARKIT_NAMES, ArkitRig, BlendshapeRig
from motion.face.blendshapes.weights_io import write_live_link_csv, write_weights_json
from talk.data import ManifestDataModule
from talk.data.batch import collate
from talk.data.formats.manifest import ManifestError
from talk.errors import DatasetError
from tests.motion.face.bfm_fixture import write_mini_bfm
from tests.talk.data.test_manifest import write_jsonl, write_wav

V = 40


@pytest.fixture
def arkit_set(tmp_path):
    """A 40-vertex rig whose file spells the names its own way (``EyeBlink_L``), three weight files."""
    rng = np.random.default_rng(0)
    spelled = [n[0].upper() + n[1:].replace("Left", "_L").replace("Right", "_R") for n in ARKIT_NAMES]
    deltas = rng.normal(size=(52, V, 3)).astype(np.float32) * 0.002
    rig = BlendshapeRig(
        rng.normal(size=(V, 3)) * 0.05, deltas[::-1].copy(), spelled[::-1], [[0, 1, 2], [1, 2, 3]]
    )
    rig.save_npz(tmp_path / "rig.npz")
    templates = {s: (rng.normal(size=(V, 3)) * 0.05).astype(np.float32) for s in ("a", "b")}
    with open(tmp_path / "templates.pkl", "wb") as f:
        pickle.dump(templates, f, protocol=2)
    weights = {n: rng.uniform(0, 1, size=(9, 52)).astype(np.float32) for n in ("w1", "w2", "w3")}
    np.savez(tmp_path / "w1.npz", weights=weights["w1"], names=np.array(ARKIT_NAMES))
    write_live_link_csv(tmp_path / "w2.csv", weights["w2"], 30)
    write_weights_json(tmp_path / "w3.json", weights["w3"], 30)
    lines = []
    for name, suffix, subject, split in (("w1", "npz", "a", "train"), ("w2", "csv", "b", "train"),
                                          ("w3", "json", "a", "val")):  # fmt: skip
        write_wav(tmp_path / f"{name}.wav")
        lines.append({"audio": f"{name}.wav", "motion": f"{name}.{suffix}", "subject": subject, "fps": 30,
                      "split": split})  # fmt: skip
    return write_jsonl(tmp_path / "arkit.jsonl", lines), weights, templates, deltas


def test_arkit_lines_decode_through_the_rig_on_each_subjects_template(arkit_set, tmp_path):
    manifest, weights, templates, deltas = arkit_set
    dm = ManifestDataModule(
        str(manifest), rig=str(tmp_path / "rig.npz"), templates=str(tmp_path / "templates.pkl")
    )
    dm.setup("fit")
    assert dm.num_vertices == V and dm.faces().tolist() == [[0, 1, 2], [1, 2, 3]]
    samples = {s.name: s for s in (*dm.datasets["train"], *dm.datasets["val"])}
    for name, subject in (("w1", "a"), ("w2", "b"), ("w3", "a")):
        s = samples[name]
        assert s.coefficients_kind == "arkit" and s.coefficients.shape == (9, 52)
        np.testing.assert_allclose(s.coefficients.numpy(), weights[name], atol=1e-6)  # csv/json keep 6 digits
        expected = templates[subject] + np.einsum("tk,kvc->tvc", s.coefficients.numpy(), deltas)
        np.testing.assert_allclose(s.motion.numpy(), expected, atol=1e-6)
        np.testing.assert_array_equal(s.template.numpy(), templates[subject])
    batch = collate([samples["w1"], samples["w3"]])
    assert batch.face_motion("arkit", 52).shape == (2, 9, 52)
    with pytest.raises(DatasetError, match="BFM coefficients"):
        batch.face_motion("bfm", 64)
    # without templates every subject gets the rig's neutral
    dm = ManifestDataModule(str(manifest), rig=str(tmp_path / "rig.npz"))
    np.testing.assert_allclose(dm.templates()["b"], ArkitRig(str(tmp_path / "rig.npz")).neutral.numpy())


def test_arkit_line_errors_are_one_sentence(arkit_set, tmp_path):
    manifest = arkit_set[0]
    with pytest.raises(ManifestError, match=r"arkit.jsonl:1: arkit motion needs .*data\.rig=") as err:
        ManifestDataModule(str(manifest)).setup("fit")
    assert "\n" not in str(err.value)
    np.savez(tmp_path / "bad.npz", weights=np.zeros((4, 3)), names=np.array(["jawOpen", "smile", "x"]))
    write_jsonl(tmp_path / "bad.jsonl", [{"audio": "w1.wav", "motion": "bad.npz", "subject": "a", "fps": 30,
                                          "split": "train"}])  # fmt: skip
    with pytest.raises(ManifestError, match=r"bad.jsonl:1: .* not ARKit blendshapes: smile, x"):
        _ = ManifestDataModule(str(tmp_path / "bad.jsonl"), rig=str(tmp_path / "rig.npz")).entries


@pytest.fixture
def bfm_set(tmp_path):
    arrays = write_mini_bfm(tmp_path / "BFM_model_front.mat", n_vertices=120)
    rng = np.random.default_rng(1)
    coeff = {n: rng.normal(size=(7, 257)).astype(np.float32) for n in ("c1", "c2")}
    np.savez(tmp_path / "c1.npz", coeff=coeff["c1"])
    savemat(tmp_path / "c2.mat", {"full_3dmm": coeff["c2"], "coeff_3dmm": coeff["c2"][:, 80:150]})
    lines = []
    for name, suffix in (("c1", "npz"), ("c2", "mat")):
        write_wav(tmp_path / f"{name}.wav")
        lines.append({"audio": f"{name}.wav", "motion": f"{name}.{suffix}", "subject": name, "fps": 25,
                      "split": "test"})  # fmt: skip
    return write_jsonl(tmp_path / "bfm.jsonl", lines), coeff, arrays


def test_bfm_lines_decode_identity_and_expression(bfm_set, tmp_path):
    manifest, coeff, arrays = bfm_set
    dm = ManifestDataModule(str(manifest), fps=25, bfm_model=str(tmp_path / "BFM_model_front.mat"))
    dm.setup("test")
    assert dm.num_vertices == len(arrays.meanshape) and dm.faces().shape == arrays.faces.shape
    centred = arrays.meanshape.astype(np.float64) - arrays.meanshape.mean(0)
    for s in dm.datasets["test"]:
        c = coeff[s.name].astype(np.float64)
        identity = c[:, :80].mean(0)
        template = (centred.reshape(-1) + arrays.id_base @ identity).reshape(
            -1, 3
        ) * 0.1  # decimetres -> metres
        motion = template + (c[:, 80:144] @ arrays.exp_base.T).reshape(7, -1, 3) * 0.1
        np.testing.assert_allclose(s.template.numpy(), template, atol=1e-5)
        np.testing.assert_allclose(s.motion.numpy(), motion, atol=1e-5)
        np.testing.assert_allclose(s.coefficients.numpy(), c[:, 80:144], atol=1e-6)
        assert s.coefficients_kind == "bfm"
    assert collate(list(dm.datasets["test"])).face_motion("bfm", 64).shape == (2, 7, 64)


def test_bfm_line_errors_are_one_sentence(bfm_set, tmp_path):
    np.savez(tmp_path / "short.npz", coeff=np.zeros((3, 256), np.float32))
    savemat(tmp_path / "other.mat", {"something": np.zeros((3, 257))})
    for motion, message in (("short.npz", "256 coefficients per frame; BFM motion needs Deep3DFaceRecon's 257"),
                            ("other.mat", "no per-frame coefficients .* it holds something")):  # fmt: skip
        path = write_jsonl(tmp_path / "x.jsonl", [{"audio": "c1.wav", "motion": motion, "subject": "s", "fps": 25,
                                                  "split": "train"}])  # fmt: skip
        with pytest.raises(ManifestError, match=rf"x.jsonl:1: .*{message}") as err:
            read = ManifestDataModule(str(path), bfm_model=str(tmp_path / "BFM_model_front.mat"))
            _ = read.entries
        assert "\n" not in str(err.value)


def test_arkit_rig_is_a_face_model_and_rebuilds_from_its_state(arkit_set, tmp_path):
    rig = ArkitRig(str(tmp_path / "rig.npz"))
    assert rig.names == ARKIT_NAMES and rig.missing == () and rig.num_motion_params == 52
    np.testing.assert_allclose(
        rig.deltas.numpy(), arkit_set[3]
    )  # the file's reversed, respelled order undone
    w = torch.rand(2, 3, 52) * 1.6 - 0.3
    offsets = rig.motion_offsets(w, torch.zeros(2, V, 3))
    torch.testing.assert_close(offsets, rig.vertices(w) - rig.neutral, atol=1e-6, rtol=0)
    assert rig.constrain(w).min() == 0 and rig.constrain(w).max() == 1
    rebuilt = ArkitRig(**rig.contained_init_args())
    rebuilt.load_state_dict(rig.state_dict())
    torch.testing.assert_close(rebuilt.motion_offsets(w, None), offsets)
    with pytest.raises(ValueError, match=r"ARKit motion must be \[B, T, 52\]"):
        rig.motion_offsets(torch.zeros(1, 3, 51), None)
