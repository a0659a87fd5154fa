"""The TalkDataModule interface, the same for every format: assets, templates, faces, regions, rates, loaders."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

import talk.data
from talk.data import BiwiDataModule, ManifestDataModule, TalkDataModule, VocasetDataModule
from talk.data.formats.manifest import ManifestError
from talk.data.formats.vocaset_raw import VocasetConversionError
from talk.errors import DatasetError, UserError
from talk.pipeline.assets import Assets
from tests.talk.miniature import (
    BIWI_LIPS,
    BIWI_UPPER,
    LIPS,
    UPPER,
    write_biwi_miniature,
    write_fan_ply,
    write_miniature,
)

VOCASET_SUBJECTS = {"FaceTalk_A_TA": 2, "FaceTalk_B_TA": 2, "FaceTalk_C_TA": 2}


def vocaset(root, **kw):
    write_miniature(root, VOCASET_SUBJECTS)
    templates = pickle.load(open(root / "templates.pkl", "rb"))
    faces = write_fan_ply(root / "mesh.ply", templates["FaceTalk_A_TA"])
    dm = VocasetDataModule(
        root=str(root), train_subjects=["FaceTalk_B_TA", "FaceTalk_A_TA"], val_subjects=["FaceTalk_C_TA"],
        test_subjects=["FaceTalk_C_TA"], train_sentences=(1, 2), val_sentences=(1, 1), test_sentences=(2, 2),
        face_model_path=str(root / "mesh.ply"), **kw,
    )  # fmt: skip
    return dm, templates, faces, (LIPS, UPPER), 30.0


def biwi(root, **kw):
    write_biwi_miniature(root, ["F1", "F2", "F3"], [1, 33, 37])
    templates = pickle.load(open(root / "templates.pkl", "rb"), encoding="latin1")
    faces = np.array([(0, i, i + 1) for i in range(1, len(templates["F1"]) - 1)])
    dm = BiwiDataModule(root=str(root), train_subjects=["F3", "F2"], all_subjects=["F1", "F2", "F3"], **kw)
    return dm, templates, faces, (BIWI_LIPS, BIWI_UPPER), 25.0


def manifest(root, **kw):
    """The VOCASET miniature described by a manifest instead (its FLAME_masks.pkl lies beside the manifest)."""
    write_miniature(root, VOCASET_SUBJECTS)
    templates = pickle.load(open(root / "templates.pkl", "rb"))
    splits = {"FaceTalk_A_TA": "train", "FaceTalk_B_TA": "train", "FaceTalk_C_TA": "val"}
    lines = [
        {"audio": f"wav/{s}_sentence{k:02d}.wav", "motion": f"vertices_npy/{s}_sentence{k:02d}.npy",
         "subject": s, "fps": 60, "split": "test" if (s, k) == ("FaceTalk_C_TA", 2) else splits[s]}
        for s in VOCASET_SUBJECTS for k in (1, 2)
    ]  # fmt: skip
    (root / "data.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    dm = ManifestDataModule(manifest=str(root / "data.jsonl"), templates=str(root / "templates.pkl"), **kw)
    return dm, templates, None, (LIPS, UPPER), 30.0


BUILDERS = {"vocaset": vocaset, "biwi": biwi, "manifest": manifest}


@pytest.mark.parametrize("fmt", sorted(BUILDERS))
def test_assets_carry_the_dataset_facts(fmt, tmp_path):
    dm, templates, faces, (lips, upper), fps = BUILDERS[fmt](tmp_path, sample_rate=8000)
    assert isinstance(dm, TalkDataModule)
    assets = dm.assets()
    assert isinstance(assets, Assets)
    assert list(assets.train_subjects) == dm.train_subjects and dm.num_styles == len(dm.train_subjects)
    assert set(assets.templates) == set(templates) == set(dm.templates())
    for subject, template in templates.items():
        torch.testing.assert_close(
            assets.templates[subject], torch.as_tensor(np.asarray(template, np.float32))
        )
        assert dm.templates()[subject].dtype == np.float32
    if faces is None:
        assert assets.faces is None and dm.faces() is None
    else:
        assert assets.faces.tolist() == faces.tolist() == dm.faces().tolist()
    assert assets.regions["lips"].tolist() == lips.tolist() == dm.regions()["lips"].tolist()
    assert assets.regions["upper_face"].tolist() == upper.tolist() == dm.regions()["upper_face"].tolist()
    assert assets.fps == dm.fps == fps and assets.sample_rate == dm.sample_rate == 8000
    assert dm.motion_dim == 3 * len(next(iter(templates.values())))


@pytest.mark.parametrize("fmt", sorted(BUILDERS))
def test_missing_region_file_is_a_one_line_error_and_no_regions_in_assets(fmt, tmp_path):
    missing = tmp_path / "elsewhere" / "FLAME_masks.pkl"
    dm = BUILDERS[fmt](tmp_path, regions_path=str(missing))[0]
    with pytest.raises(DatasetError) as info:
        dm.regions()
    message = str(info.value)
    assert "\n" not in message and str(missing) in message and "data.regions_path" in message
    assets = dm.assets()
    assert assets.regions is None and assets.templates  # the rest is still there


@pytest.mark.parametrize("fmt", sorted(BUILDERS))
def test_style_order_splits_and_loaders(fmt, tmp_path):
    dm = BUILDERS[fmt](tmp_path, batch_size=2)[0]
    dm.setup("fit")
    dm.setup("test")
    assert set(dm.datasets) == {"train", "val", "test"}
    train = [dm.datasets["train"][i] for i in range(len(dm.datasets["train"]))]
    assert {s.style for s in train} == set(range(dm.num_styles))
    assert all(dm.train_subjects[s.style] == s.subject for s in train)
    assert all(s.motion.shape[1] * 3 == dm.motion_dim for s in train)
    batch = next(iter(dm.val_dataloader()))
    assert batch.motion.shape[-2:] == (dm.motion_dim // 3, 3)
    assert len(next(iter(dm.predict_dataloader())).names) == min(2, len(dm.datasets["test"]))


def test_a_manifest_reads_the_same_samples_as_the_processed_layout(tmp_path):
    layout = vocaset(tmp_path / "a")[0]
    listed = manifest(tmp_path / "b", train_subjects=["FaceTalk_B_TA", "FaceTalk_A_TA"])[0]
    for dm in (layout, listed):
        dm.setup("fit")
    a, b = layout.datasets["train"], listed.datasets["train"]
    assert sorted(a.names) == sorted(b.names)
    for name in a.names:
        x, y = a[a.names.index(name)], b[b.names.index(name)]
        assert (x.subject, x.style) == (y.subject, y.style)
        torch.testing.assert_close(x.motion, y.motion, rtol=0, atol=0)
        torch.testing.assert_close(x.audio, y.audio, rtol=0, atol=0)


def test_public_constructors_keep_the_configured_names():
    """The YAML configs and the CLI links (data.motion_dim, data.num_styles, data.fps) rely on these."""
    shared = ["fps", "sample_rate", "batch_size", "num_workers", "cache", "max_audio_seconds", "face_model_path",
              "regions_path", "lip_region", "upper_face_regions", "dataset_name"]  # fmt: skip
    expected = {
        VocasetDataModule: ["root", "train_subjects", "val_subjects", "test_subjects", "train_sentences",
                            "val_sentences", "test_sentences", "source_fps", *shared],
        BiwiDataModule: ["root", "train_subjects", "test_split", "all_subjects", "train_sentences",
                         "val_sentences", "test_sentences", "per_condition", "source_fps", *shared],
        ManifestDataModule: ["manifest", "fps", "resample", "flame_model", "templates", "rig", "bfm_model",
                             "train_subjects",
                             *[s for s in shared if s != "fps"]],
    }  # fmt: skip
    from jsonargparse import ArgumentParser

    for cls, names in expected.items():  # as the CLI sees them: shared ones reach the base through **kwargs
        parser = ArgumentParser()
        parser.add_class_arguments(cls, "data")
        params = [action.dest.split(".", 1)[1] for action in parser._actions if action.dest.startswith("data.")]
        assert sorted(params) == sorted(names), cls.__name__
        for name in ("motion_dim", "num_styles", "fps", "sample_rate", "train_subjects"):
            assert hasattr(cls, name) or name in params, (cls.__name__, name)


def test_package_exports_and_user_errors():
    for name in ("VocasetDataModule", "BiwiDataModule", "ManifestDataModule", "TalkDataModule", "Batch", "Sample",
                 "collate", "convert_vocaset", "ConversionSummary"):  # fmt: skip
        assert name in talk.data.__all__ and getattr(talk.data, name) is not None
    for error in (DatasetError, ManifestError, VocasetConversionError):
        assert issubclass(error, UserError)
