"""Generic jsonl manifests: vertex and FLAME-parameter motion, fps handling, and every per-line error."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch

from talk.data import ManifestDataModule
from talk.data.formats.manifest import FlameSample, ManifestError, read_manifest, resample_frames
from tests.talk.miniature import LIPS, SR, UPPER, V

SUBJECTS = ("spk1", "spk2", "spk3")


def write_wav(path, seconds=0.3, freq=200.0):
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR, subtype="PCM_16")


def write_jsonl(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


@pytest.fixture
def vertex_set(tmp_path):
    """Three subjects of vertex motion at 30, 60 and 25 fps, ``[T, V*3]`` and ``[T, V, 3]`` files."""
    rng = np.random.default_rng(0)
    (tmp_path / "wav").mkdir()
    (tmp_path / "motion").mkdir()
    templates = {s: (rng.normal(size=(V, 3)) * 0.05).astype(np.float32) for s in SUBJECTS}
    with open(tmp_path / "templates.pkl", "wb") as f:
        pickle.dump(templates, f, protocol=2)
    with open(tmp_path / "FLAME_masks.pkl", "wb") as f:
        pickle.dump({"lips": LIPS, "forehead": UPPER[:2], "eye_region": UPPER[2:]}, f, protocol=2)
    lines, motion = [], {}
    spec = [("spk1", "a1", 30, "train", 9), ("spk2", "b1", 60, "train", 18), ("spk1", "a2", 30, "val", 9),
            ("spk3", "c1", 25, "test", 8), ("spk2", "b2", 30, "test", 9)]  # fmt: skip
    for subject, name, fps, split, frames in spec:
        verts = templates[subject] + rng.normal(size=(frames, V, 3)).astype(np.float32) * 0.003
        motion[name] = verts
        arr = verts if name == "b1" else verts.reshape(frames, V * 3)  # both accepted layouts
        np.save(tmp_path / "motion" / f"{name}.npy", arr)
        write_wav(tmp_path / "wav" / f"{name}.wav")
        line = {"audio": f"wav/{name}.wav", "motion": f"motion/{name}.npy", "subject": subject, "fps": fps,
                "split": split}  # fmt: skip
        if name == "c1":
            line["dataset"] = "other"
        lines.append(line)
    lines.insert(2, "")  # blank lines are allowed
    manifest = write_jsonl(tmp_path / "data.jsonl", lines)
    return manifest, motion, templates


def make(manifest, **kw):
    kw.setdefault("templates", str(manifest.parent / "templates.pkl"))
    return ManifestDataModule(manifest=str(manifest), cache=False, **kw)


def test_resample_frames_hand_computed():
    x = np.arange(6, dtype=np.float64)[:, None]
    np.testing.assert_allclose(resample_frames(x, 25, 30)[:, 0], [0, 5 / 6, 10 / 6, 2.5, 20 / 6, 25 / 6, 5.0])
    np.testing.assert_array_equal(resample_frames(x, 60, 30)[:, 0], [0, 2, 4])  # integer ratio: exact stride
    np.testing.assert_allclose(resample_frames(x, 30, 20)[:, 0], [0, 1.5, 3, 4.5])
    assert resample_frames(x, 30, 30) is x


def test_vertex_manifest_splits_fps_and_samples(vertex_set):
    manifest, motion, templates = vertex_set
    dm = make(manifest)
    assert dm.motion_dim == V * 3 and dm.train_subjects == ["spk1", "spk2"] and dm.num_styles == 2
    assert [e.line for e in dm.entries] == [1, 2, 4, 5, 6]
    dm.setup("fit")
    dm.setup("test")
    assert dm.datasets["train"].names == ["a1", "b1"] and dm.datasets["val"].names == ["a2"]
    assert dm.datasets["test"].names == ["c1", "b2"]
    b1 = dm.datasets["train"][1]
    assert b1.subject == "spk2" and b1.style == 1 and b1.dataset == "manifest"
    np.testing.assert_array_equal(b1.motion.numpy(), motion["b1"][::2])  # 60 -> 30 fps
    np.testing.assert_array_equal(b1.template.numpy(), templates["spk2"])
    c1 = dm.datasets["test"][0]
    assert (
        c1.style == -1 and c1.dataset == "other" and c1.motion.shape == (9, V, 3)
    )  # 8 frames at 25 -> 9 at 30
    t = 7 * 25 / 30  # frame 7 at 30 fps sits between source frames 5 and 6
    expected = motion["c1"][5] * (6 - t) + motion["c1"][6] * (t - 5)
    np.testing.assert_allclose(c1.motion[7].numpy(), expected, rtol=1e-5, atol=1e-7)
    assert c1.audio.shape == (int(0.3 * SR),)
    batch = next(iter(dm.test_dataloader()))
    assert batch.datasets == ["other"] and batch.motion.shape == (1, 9, V, 3)
    regions = dm.regions()
    assert regions["lips"].tolist() == LIPS.tolist() and regions["upper_face"].tolist() == UPPER.tolist()
    assert dm.faces() is None and set(dm.templates()) == set(SUBJECTS)


def test_resample_false_rejects_other_fps(vertex_set):
    manifest, _, _ = vertex_set
    with pytest.raises(
        ManifestError, match=r"data.jsonl:2: fps 60 differs from data.fps=30; set data.resample"
    ):
        make(manifest, resample=False).setup("fit")


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    from motion.face.procedural.face import write_procedural_face

    return write_procedural_face(tmp_path_factory.mktemp("face"))


def test_flame_parameter_manifest(face, tmp_path):
    from motion.face.flame import FLAME, FLAMEParams

    rng = np.random.default_rng(1)
    frames = 6
    expression = (rng.normal(size=(frames, 11)) * 0.3).astype(np.float32)
    jaw = np.zeros((frames, 3), np.float32)
    jaw[:, 0] = np.linspace(0, 0.2, frames)
    shape = (rng.normal(size=20) * 0.5).astype(np.float32)
    np.savez(tmp_path / "talk.npz", expression=expression, jaw=jaw, shape=shape,
             eyes=np.zeros((frames, 6), np.float32))  # fmt: skip
    np.savez(
        tmp_path / "still.npz", expression=np.zeros((4, 11), np.float32), jaw=np.zeros((4, 3), np.float32)
    )
    write_wav(tmp_path / "a.wav")
    manifest = write_jsonl(tmp_path / "flame.jsonl", [
        {"audio": "a.wav", "motion": "talk.npz", "subject": "s1", "fps": 30, "split": "train"},
        {"audio": str(tmp_path / "a.wav"), "motion": "still.npz", "subject": "s2", "fps": 30, "split": "test"},
    ])  # fmt: skip
    dm = ManifestDataModule(manifest=str(manifest), flame_model=str(face.model))
    assert dm.regions_path == str(face.masks)  # FLAME_masks.pkl beside the FLAME model
    flame = FLAME(str(face.model), n_shape=300, n_expression=100)
    assert dm.motion_dim == flame.num_vertices * 3
    dm.setup("test")  # builds every split
    sample = dm.datasets["train"][0]
    assert isinstance(sample, FlameSample) and sample.params_fps == 30
    np.testing.assert_array_equal(sample.params["expression"].numpy(), expression)
    with torch.no_grad():
        want = flame(FLAMEParams(shape=torch.from_numpy(shape)[None], expression=torch.from_numpy(expression)[None],
                                 jaw_pose=torch.from_numpy(jaw)[None])).vertices[0]  # fmt: skip
        neutral = flame(FLAMEParams(shape=torch.from_numpy(shape)[None])).vertices[0, 0]
    np.testing.assert_allclose(sample.motion.numpy(), want.numpy(), atol=1e-6)
    np.testing.assert_allclose(sample.template.numpy(), neutral.numpy(), atol=1e-6)
    assert (sample.motion[-1] - sample.template).abs().max() > 1e-3  # it really moves
    still = dm.datasets["test"][0]  # zero parameters, no shape: every frame is the mean face
    np.testing.assert_array_equal(
        still.motion.numpy(), np.broadcast_to(still.template.numpy(), still.motion.shape)
    )
    np.testing.assert_allclose(still.template.numpy(), flame.v_template.numpy(), atol=1e-7)
    np.testing.assert_allclose(dm.templates()["s1"], neutral.numpy(), atol=1e-6)
    assert dm.faces().shape == tuple(flame.faces.shape)
    assert len(dm.regions()["lips"]) > 0
    # the motion-rate parameters travel in the batch, for models that work on FLAME motion
    from talk.data.batch import collate

    np.testing.assert_array_equal(sample.expression.numpy(), expression)
    batch = collate([sample, still])
    assert batch.expression.shape == (2, frames, 11) and batch.jaw.shape == (2, frames, 3)
    assert batch.expression[1].abs().max() == 0 and batch.jaw[0, :, 0].max() > 0.19
    motion = batch.flame_motion(12)  # one more coefficient than the files: zero padded, then the jaw
    torch.testing.assert_close(motion[0, :, :11], torch.from_numpy(expression))
    assert motion[..., 11].abs().max() == 0
    torch.testing.assert_close(motion[0, :, 12:], torch.from_numpy(jaw))
    assert batch.flame_motion(5).shape == (2, frames, 8)


def test_flame_lines_need_a_model_and_fitting_sizes(face, tmp_path):
    write_wav(tmp_path / "a.wav")
    np.savez(tmp_path / "m.npz", expression=np.zeros((3, 101), np.float32), jaw=np.zeros((3, 3), np.float32))
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [{"audio": "a.wav", "motion": "m.npz", "subject": "s", "fps": 30, "split": "test"}],
    )
    with pytest.raises(ManifestError, match=r"m.jsonl:1: FLAME-parameter motion needs a face model"):
        ManifestDataModule(manifest=str(manifest)).setup("test")
    with pytest.raises(
        ManifestError, match=r"m.jsonl:1: .*m.npz has 101 expression coefficients but .* holds 100"
    ):
        ManifestDataModule(manifest=str(manifest), flame_model=str(face.model)).setup("test")
    with pytest.raises(ManifestError, match="data.flame_model: FLAME model file not found"):
        ManifestDataModule(manifest=str(manifest), flame_model=str(tmp_path / "no.pkl")).setup("test")


GOOD = {"audio": "a.wav", "motion": "m.npy", "subject": "spk1", "fps": 30, "split": "test"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
        ({k: v for k, v in GOOD.items() if k != "fps"}, r"missing key\(s\) \['fps'\]"),
        ({**GOOD, "speaker": "x"}, r"unknown key\(s\) \['speaker'\]; allowed are"),
        ({**GOOD, "fps": 0}, "'fps' must be a positive number, got 0"),
        ({**GOOD, "fps": "30"}, "'fps' must be a positive number, got '30'"),
        ({**GOOD, "fps": True}, "'fps' must be a positive number"),
        ({**GOOD, "subject": ""}, "'subject' must be a non-empty string"),
        ({**GOOD, "split": "dev"}, "'split' is 'dev'; use one of"),
        ({**GOOD, "audio": "none.wav"}, "audio file none.wav not found"),
        ({**GOOD, "motion": "none.npy"}, "motion file none.npy not found"),
        ({**GOOD, "motion": "a.wav"}, r"must be \.npy \(vertices\), \.npz .*\.csv / \.json .*\.mat"),
        ({**GOOD, "motion": "bad_width.npy"}, r"has shape \(4, 10\).*\[T, V\*3\] or \[T, V, 3\]"),
        ({**GOOD, "motion": "objects.npy"}, "holds pickled Python objects"),
        ({**GOOD, "motion": "nojaw.npz"}, r"lacks \['jaw'\]; FLAME motion needs"),
        ({**GOOD, "motion": "badjaw.npz"}, r"key 'jaw' has shape \(4, 2\); expected \[4, 3\]"),
        ({**GOOD, "motion": "extra.npz"}, r"unknown key\(s\) \['exp'\]"),
        ({**GOOD, "motion": "nan.npz"}, "key 'expression' is not a finite numeric array"),
        (
            {**GOOD, "motion": "wide.npy"},
            r"wide.npy has 13 vertices but the template of 'spk1' in .*templates.pkl has 12",
        ),
        ({**GOOD, "subject": "nobody", "name": "x"}, "subject 'nobody' has no template in"),
        ({**GOOD, "name": "m"}, "sequence name 'm' is already used on line 1"),
    ],
)
def test_bad_lines_name_the_manifest_and_line(vertex_set, line, message):
    manifest, _, _ = vertex_set
    root = manifest.parent
    write_wav(root / "a.wav")
    np.save(root / "m.npy", np.zeros((4, V * 3), np.float32))
    np.save(root / "bad_width.npy", np.zeros((4, 10), np.float32))
    np.save(root / "wide.npy", np.zeros((4, 13, 3), np.float32))
    np.save(root / "objects.npy", np.array([{"expression": 1}], dtype=object), allow_pickle=True)
    z = np.zeros((4, 3), np.float32)
    np.savez(root / "nojaw.npz", expression=np.zeros((4, 5), np.float32))
    np.savez(root / "badjaw.npz", expression=np.zeros((4, 5), np.float32), jaw=np.zeros((4, 2), np.float32))
    np.savez(root / "extra.npz", expression=np.zeros((4, 5), np.float32), jaw=z, exp=z)
    np.savez(root / "nan.npz", expression=np.full((4, 5), np.nan, np.float32), jaw=z)
    bad = write_jsonl(root / "bad.jsonl", [GOOD, line])
    with pytest.raises(ManifestError, match=message) as info:
        make(bad).setup("test")
    assert str(info.value).startswith(f"{bad}:2: ")


def test_manifest_level_errors(vertex_set, tmp_path):
    manifest, _, _ = vertex_set
    with pytest.raises(ManifestError, match="manifest .*nope.jsonl not found; pass data.manifest"):
        make(tmp_path / "nope.jsonl").setup("fit")
    empty = write_jsonl(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(ManifestError, match="has no lines"):
        read_manifest(empty)
    with pytest.raises(ManifestError, match=r"data.jsonl:1: vertex motion needs .* pass data.templates"):
        ManifestDataModule(manifest=str(manifest)).setup("fit")
    only_test = write_jsonl(
        manifest.parent / "t.jsonl", [GOOD | {"audio": "wav/a1.wav", "motion": "motion/a1.npy"}]
    )
    with pytest.raises(ManifestError, match='no line with "split": "train", which `fit` needs'):
        make(only_test).setup("fit")
    wrong = manifest.parent / "wrong_templates.pkl"
    with open(wrong, "wb") as f:
        pickle.dump({s: np.zeros((V + 1, 3), np.float32) for s in SUBJECTS}, f, protocol=2)
    with pytest.raises(
        ManifestError, match=r"data.jsonl:1: .*a1.npy has 12 vertices but the template of 'spk1'"
    ):
        make(manifest, templates=str(wrong)).setup("fit")
    mixed = manifest.parent / "mixed_templates.pkl"
    with open(mixed, "wb") as f:
        pickle.dump({"spk1": np.zeros((V, 3), np.float32), "big": np.zeros((V + 1, 3), np.float32)}, f)
    np.save(manifest.parent / "big.npy", np.zeros((4, V + 1, 3), np.float32))
    two = write_jsonl(manifest.parent / "two.jsonl", [
        {"audio": "wav/a1.wav", "motion": "motion/a1.npy", "subject": "spk1", "fps": 30, "split": "train"},
        {"audio": "wav/a1.wav", "motion": "big.npy", "subject": "big", "fps": 30, "split": "train"},
    ])  # fmt: skip
    with pytest.raises(
        ManifestError, match=r"two.jsonl:2: .*big.npy has 13 vertices but line 1 has 12; all seq"
    ):
        make(two, templates=str(mixed)).setup("fit")
