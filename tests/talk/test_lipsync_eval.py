"""Tests of the real-speech lip-sync evaluation: the bundled set, the lip pairs of a face, and `talk lipsync`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from talk.errors import UserError
from talk.lipsync import BILABIALS, lip_gap
from talk.lipsync_eval import BUNDLED_SET, EvalSetError, read_eval_set, slit_pairs
from talk.synth.aligner import words
from talk.synth.phones import covers, read_lab
from tests.talk.clitools import talk


def _manifest() -> list[dict]:
    return [
        json.loads(line) for line in (BUNDLED_SET / "eval.jsonl").read_text().splitlines() if line.strip()
    ]


def _seconds(wav: Path) -> float:
    info = sf.info(str(wav))
    return info.frames / info.samplerate


# ---------------------------------------------------------------------------------------------- the bundled set
def test_manifest_agrees_with_the_files_and_holds_50_bilabials():
    entries = _manifest()
    assert [r.name for r in read_eval_set(BUNDLED_SET)] == [e["name"] for e in entries]
    assert sorted(p.stem for p in BUNDLED_SET.glob("*.wav")) == sorted(e["name"] for e in entries)
    for e in entries:
        wav, lab, txt = (BUNDLED_SET / f"{e['name']}{ext}" for ext in (".wav", ".lab", ".txt"))
        assert (e["wav"], e["lab"]) == (wav.name, lab.name)
        info = sf.info(str(wav))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert e["duration"] == pytest.approx(_seconds(wav), abs=1e-4)
        assert e["bilabials"] == sum(p.label in BILABIALS for p in read_lab(lab))
        assert txt.read_text().strip() == e["text"] and e["words"] == len(words(e["text"]))
        assert e["source"] and e["licence"]
    assert sum(e["bilabials"] for e in entries) >= 50
    assert sum(p.stat().st_size for p in BUNDLED_SET.iterdir()) < 3_000_000


def test_every_label_file_covers_its_wav():
    for rec in read_eval_set(BUNDLED_SET):
        assert covers(read_lab(rec.labels), _seconds(rec.audio)), rec.name


# ------------------------------------------------------------------------------------------------- lip pairs
@pytest.fixture(scope="module")
def procedural(tmp_path_factory):
    import pickle

    from motion.face.procedural.face import write_procedural_face
    from talk.synth.face import lip_pairs, load_face

    paths = write_procedural_face(tmp_path_factory.mktemp("face"), seed=0)
    with open(paths.model, "rb") as f:
        model = pickle.load(f, encoding="latin1")
    with open(paths.masks, "rb") as f:
        masks = pickle.load(f, encoding="latin1")
    return load_face(paths.model, n_shape=40), model, masks, lip_pairs(paths.masks)


def test_slit_pairs_of_the_procedural_head_are_its_lip_edges(procedural):
    face, model, masks, (upper, lower) = procedural
    up, lo = slit_pairs(model["v_template"], masks["lips"], model["f"])
    np.testing.assert_array_equal(up, upper)
    np.testing.assert_array_equal(lo, lower)
    jaw = np.zeros((2, 3))
    jaw[1, 0] = 0.2
    verts = face(np.zeros(40), np.zeros((2, face.n_expression)), jaw)
    gap = lip_gap(verts, up, lo)
    assert abs(gap[0]) < 1e-7  # metres: closed at rest
    assert gap[1] > 0.005  # a jaw of 0.2 rad opens the lips by several millimetres


def _mouth_with_a_hole() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A flat grid whose middle row is cut open (FLAME's mouth is a hole): rims 1 cm apart, shared corners."""
    xs = np.arange(-2, 12, dtype=float)
    rows = {-2: -2.0, -1: -1.0, 1: 1.0, 2: 2.0}
    verts, index = [], {}
    for r, y in rows.items():
        for x in xs:
            index[r, x] = len(verts)
            verts.append((x, y, 0.0))
    for x in xs:  # the mouth row: one vertex outside the slit, an upper and a lower rim copy inside it
        index["u", x] = len(verts)
        verts.append((x, 0.005 if 0 < x < 9 else 0.0, 0.0))
        index["l", x] = index["u", x] if not 0 < x < 9 else len(verts)
        if 0 < x < 9:
            verts.append((x, -0.005, 0.0))
    faces = []
    for top, bottom in ((2, 1), (1, "u"), ("l", -1), (-1, -2)):
        for x0, x1 in zip(xs[:-1], xs[1:], strict=True):
            a, b, c, d = index[top, x0], index[top, x1], index[bottom, x0], index[bottom, x1]
            faces += [(a, c, b), (b, c, d)]
    lips = [i for (r, x), i in index.items() if 0 <= x <= 9 and r in (-1, 1, "u", "l")]
    upper = [index["u", x] for x in xs if 0 < x < 9]
    lower = [index["l", x] for x in xs if 0 < x < 9]
    return np.asarray(verts), np.asarray(faces), np.asarray(lips), np.asarray(upper), np.asarray(lower)


def test_slit_pairs_of_a_mouth_hole_pair_its_rims():
    verts, faces, lips, upper, lower = _mouth_with_a_hole()
    up, lo = slit_pairs(verts, lips, faces)
    inner = np.isin(up, upper)
    np.testing.assert_array_equal(up[inner], upper)
    np.testing.assert_array_equal(lo[inner], lower)
    assert lip_gap(verts[None], up, lo)[0] == pytest.approx(0.01)


def test_a_lip_region_without_a_slit_is_a_one_line_error():
    verts, faces, lips, _, _ = _mouth_with_a_hole()
    with pytest.raises(EvalSetError, match="mouth slit") as err:
        slit_pairs(verts, lips[:3], faces)  # three vertices of the lower edge row: no rim
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------- the command
def _two_utterances(root: Path) -> Path:
    folder = root / "set"
    folder.mkdir()
    for name in ("arctic_a0009", "sphinx_cards_005"):
        for ext in (".wav", ".lab"):
            shutil.copy(BUNDLED_SET / f"{name}{ext}", folder / f"{name}{ext}")
    return folder


def test_talk_lipsync_writes_pooled_and_per_utterance_figures(lm_ckpt, tmp_path):
    out = tmp_path / "out"
    proc = talk("lipsync", "--checkpoint", str(lm_ckpt), "--set", str(_two_utterances(tmp_path)),
                "--out", str(out), cwd=tmp_path)  # fmt: skip
    assert "pooled (2)" in proc.stdout and "sphinx_cards_005" in proc.stdout
    result = json.loads((out / "lipsync.json").read_text())
    assert {"checkpoint", "set", "subject", "fps", "lip_pairs", "settings", "pooled", "utterances"} <= set(
        result
    )
    for key in ("bilabial_closure_rate", "gap_ratio", "gap_phone_corr", "silence_speech_lip_speed_ratio",
                "bilabials", "open_vowel_gap_mm", "bilabial_min_gap_mm"):  # fmt: skip
        assert key in result["pooled"]
    assert result["pooled"]["utterances"] == 2 and result["pooled"]["bilabials"] == 4
    assert len(result["lip_pairs"]["upper"]) == len(result["lip_pairs"]["lower"]) > 0
    names = [u["name"] for u in result["utterances"]]
    assert names == ["arctic_a0009", "sphinx_cards_005"]
    assert result["utterances"][0]["bilabial_labels"] == ["P", "B"]
    rows = (out / "lipsync_per_utterance.csv").read_text().splitlines()
    assert rows[0].startswith("name,duration_s,bilabials,") and "gap_phone_corr" in rows[0]
    assert [r.split(",")[0] for r in rows[1:]] == names


def _one_line_error(proc, match: str) -> None:
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("talk lipsync: error:") and match in lines[0], proc.stderr


def test_talk_lipsync_errors_are_one_line(tmp_path):
    _one_line_error(talk("lipsync", "--checkpoint", "missing.ckpt", cwd=tmp_path, check=False), "not found")
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ("lipsync", "--checkpoint", "missing.ckpt", "--set")
    _one_line_error(talk(*args, str(empty), cwd=tmp_path, check=False), "is empty")
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    shutil.copy(BUNDLED_SET / "arctic_a0009.wav", unlabelled)
    _one_line_error(talk(*args, str(unlabelled), cwd=tmp_path, check=False), "has no phone labels")
    _one_line_error(talk(*args, str(tmp_path / "nowhere"), cwd=tmp_path, check=False), "not found")


def test_bad_manifest_lines_are_user_errors(tmp_path):
    manifest = tmp_path / "eval.jsonl"
    for text, match in (("[1, 2]\n", "JSON object"), ('{"wav": "a.wav"}\n', "not found")):
        manifest.write_text(text)
        with pytest.raises(UserError, match=match):
            read_eval_set(tmp_path)


def test_talk_test_measures_real_speech_beside_the_test_split_and_talk_report_shows_it(
    lm_ckpt, synth_root, tmp_path
):
    from tests.talk.clitools import small_overrides

    run = tmp_path / "run"
    from tests.talk.clitools import ROOT

    talk("test", "-c", str(ROOT / "experiments/synthetic/lm.yaml"), *small_overrides(synth_root, run), "--trainer.logger=false",
         f"--ckpt_path={lm_ckpt}", f"--lipsync.set={_two_utterances(tmp_path)}", cwd=tmp_path)  # fmt: skip
    report = json.loads((run / "metrics.json").read_text())
    section = report["real_speech"]
    figures = json.loads((run / "lipsync.json").read_text())
    assert section["pooled"] == figures["pooled"] and section["pooled"]["bilabials"] == 4
    assert section["subject"] == figures["subject"] and "model" in report["metrics"]
    proc = talk("report", str(run), "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert "## Lip sync on real speech" in proc.stdout
    rate = section["pooled"]["bilabial_closure_rate"]
    assert f"{section['pooled']['bilabials_closed']}/{section['pooled']['bilabials_judged']} = {rate:.2f}" in proc.stdout
