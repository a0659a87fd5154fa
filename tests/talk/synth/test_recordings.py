"""Real recordings added to a TTS speech set (talk data speech --recordings): labelled and force-aligned ones become
training pairs whose lips close on their bilabials; resumable; one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.talk.clitools import ROOT

SPEECH = ROOT / "assets" / "speech"


@pytest.fixture(scope="module")
def speech_set(tmp_path_factory) -> Path:
    from talk.synth.speech_set import write_speech_set

    root = tmp_path_factory.mktemp("speech")
    write_speech_set(root, speakers=6, sentences=1, seed=0, workers=1, progress=False, augment=False)
    return root


def _recordings(folder: Path) -> Path:
    """ARCTIC a0009 with its published labels, a CMU Sphinx recording with only its transcript."""
    folder.mkdir()
    shutil.copy(SPEECH / "arctic_a0009.wav", folder / "a0009.wav")
    shutil.copy(SPEECH / "arctic_a0009_phone.lab", folder / "a0009.lab")
    shutil.copy(SPEECH / "eval" / "sphinx_goforward.wav", folder / "goforward.wav")
    (folder / "goforward.txt").write_text("go forward ten meters\n")
    return folder


def test_recordings_join_the_training_speakers_with_closing_lips(speech_set, tmp_path):
    from talk.lipsync import evaluate_utterance
    from talk.synth.face import lip_pairs
    from talk.synth.phones import read_lab
    from talk.synth.recordings import add_recordings
    from tests.talk.cli.test_cli import talk

    folder = _recordings(tmp_path / "rec")
    out = talk("data", "speech", "--out", str(speech_set), "--speakers", "6", "--sentences", "1", "--no-augment",
               "--recordings", str(folder), cwd=tmp_path)  # fmt: skip
    assert "(2 written now)" in out.stdout
    meta = json.loads((speech_set / "speech_meta.json").read_text())
    added = [r for r in meta["sequences"] if r.get("source")]
    assert [(r["name"], Path(r["source"]).name, r["labels"]) for r in added] == [
        ("SYN_01_F_sentence02", "a0009.wav", "labels"),
        ("SYN_02_M_sentence02", "goforward.wav", "aligned transcript"),
    ]
    manifest = (speech_set / "flame_manifest.jsonl").read_text().splitlines()
    assert len(manifest) == 8 and json.loads(manifest[-1])["split"] == "train"
    upper, lower = lip_pairs(speech_set / "FLAME_masks.pkl")
    for r in added:
        name = r["name"]
        phones = read_lab(speech_set / "phones" / f"{name}.lab")
        vertices = np.load(speech_set / "vertices_npy" / f"{name}.npy").reshape(r["frames"], -1, 3)
        assert abs(phones[-1].end - r["samples"] / 16000) < 1e-3 and r["frames"] == round(r["samples"] / 16000 * 60)
        report = evaluate_utterance(vertices, 60.0, [(p.label, p.start, p.end) for p in phones], upper, lower, name)
        assert len(report.bilabial_closed) >= 1 and all(report.bilabial_closed)  # "sharply", "table"; "meters"
    assert [p.label for p in read_lab(speech_set / "phones" / "SYN_02_M_sentence02.lab") if p.label != "sil"][:4] == [
        "G", "OW", "F", "AO"]  # fmt: skip
    # resumable: nothing rewritten; a TTS-only re-run keeps the recordings in the manifest
    assert add_recordings(speech_set, folder, progress=False) == 0
    talk("data", "speech", "--out", str(speech_set), "--speakers", "6", "--sentences", "1", "--no-augment", cwd=tmp_path)
    assert (speech_set / "flame_manifest.jsonl").read_text().splitlines() == manifest


def test_recording_errors_are_one_line(speech_set, tmp_path):
    from tests.talk.cli.test_cli import talk

    folder = tmp_path / "bad"
    folder.mkdir()
    shutil.copy(SPEECH / "arctic_a0009.wav", folder / "x.wav")
    out = talk("data", "speech", "--out", str(speech_set), "--speakers", "6", "--sentences", "1", "--no-augment",
               "--recordings", str(folder), cwd=tmp_path, check=False)  # fmt: skip
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "x.wav has neither x.lab (phone labels) nor x.txt" in out.stderr
    from talk.synth.recordings import RecordingsError, add_recordings

    with pytest.raises(RecordingsError, match="holds no speech set"):
        add_recordings(tmp_path, folder, progress=False)
    with pytest.raises(RecordingsError, match="is not a folder"):
        add_recordings(speech_set, tmp_path / "missing", progress=False)
