"""VOCASET release -> processed layout: round trip, re-runs, overwrite refusal, atomic writes, bad inputs."""

from __future__ import annotations

import os
import pickle
from contextlib import nullcontext

import numpy as np
import pytest
import soundfile as sf

from talk.data.formats import vocaset_raw
from talk.data.formats.vocaset_raw import VocasetConversionError, VocasetConversionWarning, convert_vocaset
from tests.talk.miniature import RAW_SR, RAW_V, py2_pickle_dumps, write_vocaset_release

SUBJECTS = {"FaceTalk_A_TA": 3, "FaceTalk_B_TA": 2}
GAP = "FaceTalk_A_TA_sentence02"


@pytest.fixture
def release(tmp_path):
    raw = tmp_path / "raw"
    expected = write_vocaset_release(raw, SUBJECTS, gap=GAP)
    return raw, expected


def convert(raw, out, **kw):
    kw.setdefault("progress", False)
    with pytest.warns(VocasetConversionWarning) if kw.pop("expect_warning", True) else nullcontext():
        return convert_vocaset(raw, out, **kw)


def names_of(expected):
    return sorted(k for k in expected if not k.endswith(".wav"))


def test_replica_pickles_are_python2_style(release):
    raw, _ = release
    data = (raw / "templates.pkl").read_bytes()
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in data and b"U\x0dFaceTalk_A_TA" in data
    with pytest.raises(UnicodeDecodeError):  # what users hit without encoding="latin1"
        pickle.loads(data)
    assert np.load(raw / "data_verts.npy", mmap_mode="r").dtype == np.float32


def test_round_trip_through_the_datamodule(release, tmp_path):
    raw, expected = release
    out = tmp_path / "processed"
    with pytest.warns(VocasetConversionWarning, match=f"{GAP}: 1 frame number"):
        summary = convert_vocaset(raw, out, progress=False)
    names = names_of(expected)
    assert summary.written == len(names) == 5 and summary.skipped == 0
    assert summary.frames == sum(expected[n].shape[0] for n in names) == 21 + 21 + 23 + 21 + 22  # one gap
    assert summary.audio_seconds == pytest.approx(sum(len(expected[n + ".wav"]) / RAW_SR for n in names))
    assert len(summary.warnings) == 1 and GAP in summary.warnings[0]
    assert sorted(p.stem for p in (out / "vertices_npy").glob("*.npy")) == names
    assert sorted(p.stem for p in (out / "wav").glob("*.wav")) == names
    for name in names:
        npy = np.load(out / "vertices_npy" / f"{name}.npy")
        assert npy.dtype == np.float32 and npy.shape == (expected[name].shape[0], RAW_V * 3)
        np.testing.assert_array_equal(npy, expected[name])
        wav, rate = sf.read(out / "wav" / f"{name}.wav", dtype="int16")
        assert rate == RAW_SR and sf.info(str(out / "wav" / f"{name}.wav")).subtype == "PCM_16"
        np.testing.assert_array_equal(wav, expected[name + ".wav"])
    templates = pickle.load(open(out / "templates.pkl", "rb"), encoding="latin1")
    raw_templates = pickle.load(open(raw / "templates.pkl", "rb"), encoding="latin1")
    assert set(templates) == set(SUBJECTS)
    np.testing.assert_array_equal(templates["FaceTalk_B_TA"], raw_templates["FaceTalk_B_TA"])

    from talk.data import VocasetDataModule

    dm = VocasetDataModule(
        root=str(out), train_subjects=["FaceTalk_A_TA"], val_subjects=[], test_subjects=["FaceTalk_B_TA"],
        train_sentences=(1, 3), test_sentences=(1, 2), cache=False,
    )  # fmt: skip
    dm.setup("test")
    assert dm.datasets["train"].names == names[:3] and dm.datasets["test"].names == names[3:]
    for split in ("train", "test"):
        for i, name in enumerate(dm.datasets[split].names):
            sample = dm.datasets[split][i]
            np.testing.assert_array_equal(sample.motion.numpy(), expected[name][::2].reshape(-1, RAW_V, 3))
            assert sample.audio.shape[0] == int(np.ceil(len(expected[name + ".wav"]) * 16000 / RAW_SR))


def test_rerun_skips_finished_outputs(release, tmp_path, monkeypatch):
    raw, expected = release
    out = tmp_path / "out"
    convert(raw, out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    def no_writes(*args, **kwargs):
        raise AssertionError("a finished output was rewritten")

    monkeypatch.setattr(vocaset_raw, "_atomic_write", no_writes)
    summary = convert(raw, out)
    assert summary.written == 0 and summary.skipped == 5 and summary.frames > 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes


def test_subjects_filter_and_merged_templates(release, tmp_path):
    raw, expected = release
    out = tmp_path / "out"
    summary = convert_vocaset(raw, out, subjects=["FaceTalk_B_TA"], progress=False)
    assert summary.subjects == ("FaceTalk_B_TA",) and summary.written == 2 and not summary.warnings
    assert set(pickle.load(open(out / "templates.pkl", "rb"))) == {"FaceTalk_B_TA"}
    convert(raw, out, subjects=["FaceTalk_A_TA"])  # a second subject later: templates are merged
    assert set(pickle.load(open(out / "templates.pkl", "rb"))) == set(SUBJECTS)
    with pytest.raises(VocasetConversionError, match=r"\['FaceTalk_Z_TA'\] are not in .*subj_seq_to_idx.pkl"):
        convert_vocaset(raw, out, subjects=["FaceTalk_Z_TA"], progress=False)


@pytest.mark.parametrize("target", ["vertices_npy/FaceTalk_B_TA_sentence01.npy", "wav/FaceTalk_B_TA_sentence01.wav",
                                    "templates.pkl"])  # fmt: skip
def test_refuses_to_overwrite_different_outputs(release, tmp_path, target):
    raw, expected = release
    out = tmp_path / "out"
    convert(raw, out)
    path = out / target
    if target.endswith(".npy"):
        np.save(path, np.zeros((4, RAW_V * 3), np.float32))
    elif target.endswith(".wav"):
        sf.write(path, np.zeros(100, np.int16), RAW_SR, subtype="PCM_16")
    else:
        templates = pickle.load(open(path, "rb"))
        templates["FaceTalk_A_TA"] = templates["FaceTalk_A_TA"] + 1.0
        pickle.dump(templates, open(path, "wb"), protocol=2)
    before = path.read_bytes()
    with pytest.raises(
        VocasetConversionError, match=f"{path.name} already exists with different content.*--overwrite"
    ):
        convert(raw, out, expect_warning=target != "templates.pkl")
    assert path.read_bytes() == before  # never overwritten silently
    summary = convert(raw, out, overwrite=True)
    assert summary.written == (0 if target == "templates.pkl" else 1)
    if target.endswith(".npy"):
        np.testing.assert_array_equal(np.load(path), expected["FaceTalk_B_TA_sentence01"])
    elif target.endswith(".wav"):
        np.testing.assert_array_equal(
            sf.read(path, dtype="int16")[0], expected["FaceTalk_B_TA_sentence01.wav"]
        )
    else:
        raw_templates = pickle.load(open(raw / "templates.pkl", "rb"), encoding="latin1")
        np.testing.assert_array_equal(
            pickle.load(open(path, "rb"))["FaceTalk_A_TA"], raw_templates["FaceTalk_A_TA"]
        )


def test_killed_write_leaves_no_file_that_a_rerun_would_skip(release, tmp_path, monkeypatch):
    raw, expected = release
    out = tmp_path / "out"
    real_save = np.save
    calls = {"n": 0}

    def dying_save(f, arr):
        calls["n"] += 1
        if calls["n"] == 3:
            f.write(b"\x93NUMPY half a file")
            raise KeyboardInterrupt  # the process is killed mid-write
        real_save(f, arr)

    monkeypatch.setattr(vocaset_raw.np, "save", dying_save)
    with pytest.raises(KeyboardInterrupt), pytest.warns(VocasetConversionWarning):
        convert_vocaset(raw, out, progress=False)
    monkeypatch.setattr(vocaset_raw.np, "save", real_save)
    third = names_of(expected)[2]
    assert not (out / "vertices_npy" / f"{third}.npy").exists()
    assert not list(out.rglob("*.partial"))
    (out / "wav" / f".{third}.wav.partial").write_bytes(b"RIFF junk from a killed run")
    summary = convert(raw, out)
    assert summary.written == 3 and summary.skipped == 2
    np.testing.assert_array_equal(np.load(out / "vertices_npy" / f"{third}.npy"), expected[third])
    assert not list(out.rglob("*.partial"))


def test_data_verts_is_memory_mapped(release, tmp_path, monkeypatch):
    raw, _ = release
    seen = []
    real_load = np.load

    def spy(path, *args, **kwargs):
        seen.append((os.path.basename(str(path)), kwargs.get("mmap_mode")))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(vocaset_raw.np, "load", spy)
    convert(raw, tmp_path / "out")
    assert ("data_verts.npy", "r") in seen
    assert all(mode == "r" for name, mode in seen if name == "data_verts.npy")


def test_missing_audio_frames_and_rows_are_warnings(release, tmp_path):
    raw, expected = release
    audio = pickle.load(open(raw / "raw_audio_fixed.pkl", "rb"), encoding="latin1")
    del audio["FaceTalk_A_TA"]["sentence01"]
    audio["FaceTalk_B_TA"]["sentence09"] = {"audio": np.zeros(100, np.int16), "sample_rate": RAW_SR}
    (raw / "raw_audio_fixed.pkl").write_bytes(py2_pickle_dumps(audio))
    index = pickle.load(open(raw / "subj_seq_to_idx.pkl", "rb"), encoding="latin1")
    index["FaceTalk_A_TA"]["sentence03"][5] = 10**9  # a row past the end of data_verts.npy
    (raw / "subj_seq_to_idx.pkl").write_bytes(py2_pickle_dumps(index))
    with pytest.warns(VocasetConversionWarning):
        summary = convert_vocaset(raw, tmp_path / "out", progress=False)
    text = "\n".join(summary.warnings)
    assert "FaceTalk_A_TA_sentence01: no audio in raw_audio_fixed.pkl; skipped." in text
    assert "FaceTalk_B_TA_sentence09: audio without frames" in text
    assert "FaceTalk_A_TA_sentence03: 1 frame rows lie outside data_verts.npy" in text
    assert summary.written == 3
    assert sorted(p.stem for p in (tmp_path / "out" / "wav").glob("*.wav")) == [
        GAP, "FaceTalk_B_TA_sentence01", "FaceTalk_B_TA_sentence02",
    ]  # fmt: skip


@pytest.mark.parametrize("name", vocaset_raw.RELEASE_FILES)
def test_missing_release_file_is_named(release, tmp_path, name):
    raw, _ = release
    (raw / name).unlink()
    with pytest.raises(VocasetConversionError, match=f"{name} not found in .*raw; the VOCASET release"):
        convert_vocaset(raw, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_malformed_release_files_are_named(release, tmp_path):
    raw, _ = release
    with pytest.raises(VocasetConversionError, match="--raw folder .*nope does not exist"):
        convert_vocaset(tmp_path / "nope", tmp_path / "out", progress=False)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(VocasetConversionError, match="--raw folder .*a_file is a file, not a folder"):
        convert_vocaset(tmp_path / "a_file", tmp_path / "out", progress=False)
    (raw / "subj_seq_to_idx.pkl").write_bytes(b"not a pickle")
    with pytest.raises(VocasetConversionError, match="subj_seq_to_idx.pkl is not a readable VOCASET pickle"):
        convert_vocaset(raw, tmp_path / "out", progress=False)
    write_vocaset_release(raw, SUBJECTS)
    np.save(raw / "data_verts.npy", np.zeros((10, RAW_V * 3), np.float32))
    with pytest.raises(
        VocasetConversionError, match=r"data_verts.npy has shape \(10, 27\); expected \[frames"
    ):
        convert_vocaset(raw, tmp_path / "out", progress=False)
    np.save(raw / "data_verts.npy", np.zeros((500, RAW_V + 1, 3), np.float32))
    with pytest.raises(
        VocasetConversionError,
        match="template of 'FaceTalk_A_TA' .* has shape \\(9, 3\\) but data_verts.npy has 10",
    ):
        convert_vocaset(raw, tmp_path / "out", progress=False)


def test_cli_converts_and_reports_errors_in_one_line(release, tmp_path, capsys):
    from talk.cli.main import main

    raw, expected = release
    out = tmp_path / "out"
    main(
        [
            "data",
            "vocaset",
            "--raw",
            str(raw),
            "--out",
            str(out),
            "--subjects",
            "FaceTalk_A_TA",
            "--no-progress",
        ]
    )
    printed = capsys.readouterr()
    assert "3 sequences written, 0 skipped" in printed.out and f"warning: {GAP}" in printed.err
    assert len(list((out / "vertices_npy").glob("*.npy"))) == 3
    (raw / "templates.pkl").unlink()
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "vocaset", "--raw", str(raw), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 1 and len(err) == 1
    assert err[0].startswith("talk data: error: templates.pkl not found in")
