"""BIWI DataModule: Test-A / Test-B membership, per-condition evaluation of unseen subjects, regions, faces."""

from __future__ import annotations

import numpy as np
import pytest

from talk.data import BiwiDataModule
from talk.data.formats.biwi import BIWI_SUBJECTS, BIWI_TRAIN
from talk.errors import DatasetError
from tests.talk.miniature import BIWI_LIPS, BIWI_UPPER, BIWI_V, write_biwi_miniature

SENTENCES = [1, 32, 33, 36, 37, 40]  # the boundaries of every split range


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_biwi_miniature(tmp_path_factory.mktemp("biwi"), BIWI_SUBJECTS, SENTENCES)


def names(subjects, sentences):
    return sorted(f"{s}_e{k:02d}" for s in subjects for k in sentences)


def test_default_splits_and_test_a(root):
    dm = BiwiDataModule(root=str(root), cache=False)
    dm.setup("fit")
    dm.setup("test")
    assert dm.datasets["train"].names == names(BIWI_TRAIN, [1, 32])
    assert dm.datasets["val"].names == names(BIWI_TRAIN, [33, 36])
    assert dm.datasets["test"].names == names(BIWI_TRAIN, [37, 40])  # seen subjects: one sample each
    assert dm.motion_dim == BIWI_V * 3 and dm.num_styles == 6 and dm.fps == 25.0 and dm.stride == 1
    sample = dm.datasets["test"][0]  # F2_e37
    assert sample.subject == "F2" and sample.style == BIWI_TRAIN.index("F2") and sample.dataset == "biwi"
    raw = np.load(root / "vertices_npy" / "F2_e37.npy")
    np.testing.assert_array_equal(sample.motion.numpy(), raw.reshape(-1, BIWI_V, 3))  # 25 fps: no stride


def test_test_b_is_the_other_eight_subjects_once_per_condition(root):
    dm = BiwiDataModule(root=str(root), test_split="B", cache=False)
    dm.setup("test")
    unseen = ["F1", "F5", "F6", "F7", "F8", "M1", "M2", "M6"]
    assert dm.test_subjects == unseen
    expected = [f"{n}_condition_{c}" for n in names(unseen, [37, 40]) for c in BIWI_TRAIN]
    assert dm.datasets["test"].names == expected and len(expected) == 8 * 2 * 6
    for i in (0, 5, 13):
        sample = dm.datasets["test"][i]
        assert sample.name == expected[i]
        assert sample.style == i % 6 and sample.subject == expected[i].split("_")[0]
    a, b = dm.datasets["test"][0], dm.datasets["test"][1]  # same sequence, two conditions
    assert a.subject == b.subject == "F1" and (a.style, b.style) == (0, 1)
    np.testing.assert_array_equal(a.motion.numpy(), b.motion.numpy())
    batch = next(iter(dm.test_dataloader()))
    assert batch.style.tolist() == [0] and batch.names == [expected[0]] and batch.datasets == ["biwi"]


def test_without_per_condition_unseen_subjects_get_style_minus_one(root):
    dm = BiwiDataModule(root=str(root), test_split="B", per_condition=False, cache=False)
    dm.setup("test")
    assert dm.datasets["test"].names == names(["F1", "F5", "F6", "F7", "F8", "M1", "M2", "M6"], [37, 40])
    assert dm.datasets["test"][0].style == -1


def test_regions_and_faces(root, tmp_path):
    dm = BiwiDataModule(root=str(root))
    regions = dm.regions()
    assert (
        regions["lips"].tolist() == BIWI_LIPS.tolist()
        and regions["upper_face"].tolist() == BIWI_UPPER.tolist()
    )
    assert dm.regions_path == str(root / "regions")
    faces = dm.faces()
    assert faces.shape == (BIWI_V - 2, 3) and faces[0].tolist() == [0, 1, 2]
    bad = tmp_path / "regions"
    bad.mkdir()
    (bad / "lve.txt").write_text("0, 1, 99")
    (bad / "fdd.txt").write_text("10 11\n12")
    with pytest.raises(DatasetError, match="region 'lve' .* ids up to 99 but the meshes have 15 vertices"):
        BiwiDataModule(root=str(root), regions_path=str(bad)).regions()
    assert BiwiDataModule(root=str(root), regions_path=str(bad), lip_region="fdd").regions()["lips"].tolist() == [
        10, 11, 12,
    ]  # fmt: skip
    (bad / "lve.txt").write_text("0, 1, two")
    with pytest.raises(DatasetError, match="lve.txt must hold integer vertex ids"):
        BiwiDataModule(root=str(root), regions_path=str(bad)).regions()
    with pytest.raises(DatasetError, match=r"has no region\(s\) \['mouth'\]"):
        BiwiDataModule(root=str(root), lip_region="mouth").regions()
    with pytest.raises(DatasetError, match="region file .*nothing.pkl not found"):
        BiwiDataModule(root=str(root), regions_path=str(tmp_path / "nothing.pkl")).regions()
    with pytest.raises(DatasetError, match="face model .*none.ply not found"):
        BiwiDataModule(root=str(root), face_model_path=str(tmp_path / "none.ply")).faces()


def test_bad_arguments_and_data_are_named(root, tmp_path):
    with pytest.raises(DatasetError, match="test_split must be 'A' or 'B'"):
        BiwiDataModule(root=str(root), test_split="C")
    with pytest.raises(DatasetError, match=r"train_subjects \['X1'\] are not in all_subjects"):
        BiwiDataModule(root=str(root), train_subjects=["X1"])
    small = write_biwi_miniature(tmp_path / "small", ["F2", "F3"], [1, 37])
    assert BiwiDataModule(root=str(small)).faces() is not None
    (small / "BIWI.ply").unlink()
    assert BiwiDataModule(root=str(small)).faces() is None  # no mesh file: no faces, as VocasetDataModule
    np.save(small / "vertices_npy" / "F2_e01.npy", np.zeros((10, 7 * 3), np.float32))
    dm = BiwiDataModule(root=str(small), train_subjects=["F2", "F3"], all_subjects=["F2", "F3"])
    with pytest.raises(DatasetError, match="the val split .* is empty"):
        dm.setup("fit")
    dm.setup("test")
    with pytest.raises(
        DatasetError, match="F2_e01.npy has shape \\(10, 21\\) but the template of 'F2' has 15"
    ):
        dm.datasets["train"][0]
