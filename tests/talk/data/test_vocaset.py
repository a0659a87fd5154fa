import pickle

import numpy as np
import pytest

from talk.data import VocasetDataModule
from talk.errors import DatasetError
from tests.talk.miniature import LIPS, V, write_miniature

SUBJECTS = {"FaceTalk_A_TA": 3, "FaceTalk_B_TA": 3, "FaceTalk_C_TA": 3, "FaceTalk_D_TA": 3}


def make_dm(root, **kw):
    args = dict(
        root=str(root),
        train_subjects=["FaceTalk_A_TA", "FaceTalk_B_TA"],
        val_subjects=["FaceTalk_C_TA"],
        test_subjects=["FaceTalk_D_TA"],
        train_sentences=(1, 2),
        val_sentences=(2, 3),
        test_sentences=(3, 3),
        batch_size=2,
    )
    args.update(kw)
    return VocasetDataModule(**args)


def test_splits_follow_subjects_and_sentence_ranges(tmp_path):
    write_miniature(tmp_path, SUBJECTS)
    dm = make_dm(tmp_path)
    dm.setup("fit")
    assert dm.datasets["train"].names == [
        "FaceTalk_A_TA_sentence01", "FaceTalk_A_TA_sentence02", "FaceTalk_B_TA_sentence01", "FaceTalk_B_TA_sentence02",
    ]  # fmt: skip
    assert dm.datasets["val"].names == ["FaceTalk_C_TA_sentence02", "FaceTalk_C_TA_sentence03"]
    assert dm.datasets["test"].names == ["FaceTalk_D_TA_sentence03"]
    assert dm.motion_dim == V * 3 and dm.num_styles == 2


def test_samples_are_read_at_30fps_with_templates_and_styles(tmp_path):
    write_miniature(tmp_path, SUBJECTS, seconds=0.6)
    dm = make_dm(tmp_path)
    dm.setup("fit")
    raw = np.load(tmp_path / "vertices_npy" / "FaceTalk_B_TA_sentence01.npy")
    sample = dm.datasets["train"][2]
    assert sample.subject == "FaceTalk_B_TA" and sample.style == 1
    assert sample.motion.shape == (18, V, 3)  # 36 frames at 60 fps -> every second one
    np.testing.assert_allclose(sample.motion.numpy(), raw[::2].reshape(-1, V, 3))
    assert sample.audio.shape == (int(0.6 * 16000),)
    val = dm.datasets["val"][0]
    assert val.style == -1  # unseen subject


def test_batches_pad_and_mask(tmp_path):
    write_miniature(tmp_path, {"FaceTalk_A_TA": 1}, seconds=0.5)
    write_miniature(tmp_path / "long", {"FaceTalk_B_TA": 1}, seconds=0.8, seed=1)
    for sub in ("wav", "vertices_npy"):
        for p in (tmp_path / "long" / sub).iterdir():
            p.rename(tmp_path / sub / p.name)
    templates = pickle.load(open(tmp_path / "templates.pkl", "rb"))
    templates.update(pickle.load(open(tmp_path / "long" / "templates.pkl", "rb")))
    pickle.dump(templates, open(tmp_path / "templates.pkl", "wb"))
    dm = make_dm(
        tmp_path, train_subjects=["FaceTalk_A_TA", "FaceTalk_B_TA"], val_subjects=[], test_subjects=[]
    )
    dm.setup("train")
    batch = next(iter(dm._loader("train", False)))
    assert batch.motion.shape == (2, 24, V, 3)
    assert batch.motion_mask.sum(1).tolist() == [15, 24]
    assert batch.audio_lengths.tolist() == [8000, 12800]
    assert batch.audio[0, 8000:].abs().sum() == 0


def test_regions_by_name(tmp_path):
    write_miniature(tmp_path, SUBJECTS)
    regions = make_dm(tmp_path).regions()
    assert regions["lips"].tolist() == LIPS.tolist()
    assert regions["upper_face"].tolist() == [8, 9, 10, 11]
    with pytest.raises(DatasetError, match="no region"):
        make_dm(tmp_path, lip_region="mouth").regions()


def test_mesh_without_wav_is_named(tmp_path):
    write_miniature(tmp_path, SUBJECTS)
    (tmp_path / "wav" / "FaceTalk_A_TA_sentence02.wav").unlink()
    with pytest.raises(DatasetError, match="FaceTalk_A_TA_sentence02.npy has no matching audio"):
        make_dm(tmp_path).setup("fit")


def test_wrong_vertex_count_is_named(tmp_path):
    write_miniature(tmp_path, SUBJECTS)
    np.save(
        tmp_path / "vertices_npy" / "FaceTalk_A_TA_sentence01.npy", np.zeros((10, (V + 1) * 3), np.float32)
    )
    dm = make_dm(tmp_path)
    dm.setup("fit")
    with pytest.raises(DatasetError, match="sentence01.npy has shape .* 12 vertices"):
        dm.datasets["train"][0]


def test_subject_without_template_is_named(tmp_path):
    write_miniature(tmp_path, SUBJECTS)
    templates = pickle.load(open(tmp_path / "templates.pkl", "rb"))
    del templates["FaceTalk_C_TA"]
    pickle.dump(templates, open(tmp_path / "templates.pkl", "wb"))
    with pytest.raises(DatasetError, match="'FaceTalk_C_TA' has sequences but no template"):
        make_dm(tmp_path).setup("fit")


def test_missing_root_and_empty_split(tmp_path):
    with pytest.raises(DatasetError, match="nope does not exist; create one with `talk data synth"):
        make_dm(tmp_path / "nope").setup("fit")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(
        DatasetError, match="a_file is a file, not a folder; create one with `talk data synth"
    ):
        make_dm(tmp_path / "a_file").setup("fit")
    write_miniature(tmp_path, SUBJECTS)
    with pytest.raises(DatasetError, match="test split .* is empty"):
        make_dm(tmp_path, test_sentences=(30, 40)).setup("test")


def test_a_subject_without_sequences_is_named_not_left_out(tmp_path):
    write_miniature(tmp_path, SUBJECTS)
    with pytest.raises(DatasetError, match="data.train_subjects names 'FaceTalk_B_AT', which has no sequences in "
                       ".*; did you mean 'FaceTalk_B_TA'\\? its subjects are FaceTalk_A_TA, FaceTalk_B_TA"):  # fmt: skip
        make_dm(tmp_path, train_subjects=["FaceTalk_A_TA", "FaceTalk_B_AT"]).setup("fit")


def test_templates_pickled_by_python2_with_latin1_bytes_load(tmp_path):
    write_miniature(tmp_path, SUBJECTS)
    # Python 2 pickles numpy arrays with str (bytes) payloads; encoding='latin1' is what makes them load.
    templates = pickle.load(open(tmp_path / "templates.pkl", "rb"))
    data = pickle.dumps({k: v.astype(np.float64) for k, v in templates.items()}, protocol=2)
    (tmp_path / "templates.pkl").write_bytes(data)
    dm = make_dm(tmp_path)
    assert set(dm.templates()) == set(SUBJECTS)
    assert dm.templates()["FaceTalk_A_TA"].dtype == np.float32
