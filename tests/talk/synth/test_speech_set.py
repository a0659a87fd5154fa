"""Tests of the TTS speech set (talk.synth.speech_set, `talk data speech`)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from talk.synth import tts
from talk.synth.augment import Augmentation, apply_augmentation, draw_augmentation
from talk.synth.phones import covers, read_lab
from talk.synth.speakers import make_speaker
from talk.synth.speech_set import (
    FEMALE_VARIANTS,
    MALE_VARIANTS,
    PEAK,
    SpeechSetError,
    load_sentences,
    speaker_voice,
    write_speech_set,
)

SEED = 4
SEQUENCE_DIRS = ("wav", "vertices_npy", "flame", "phones")
OPEN_VOWELS = ("AA", "AE", "AO", "AY", "AW")


@pytest.fixture(scope="module")
def speech_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("speech") / "a"
    summary = write_speech_set(root, speakers=2, sentences=2, seed=SEED, workers=1, progress=False)
    assert summary.written == summary.n_sequences == 4 and summary.subjects == ("SYN_01_F", "SYN_02_M")
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {
        f"{sub}/{p.name}": p.read_bytes() for sub in SEQUENCE_DIRS for p in sorted((root / sub).iterdir())
    }


def _meta(root: Path) -> dict:
    return json.loads((root / "speech_meta.json").read_text())


def _lip_gap(root: Path, name: str) -> np.ndarray:
    """``[T, M]`` vertical lip opening along the middle of the mouth (as in test_synth)."""
    from motion.face.flame_io import load_flame_masks

    masks = load_flame_masks(root / "FLAME_masks.pkl")
    upper, lower = np.asarray(masks["lip_upper_edge"]), np.asarray(masks["lip_lower_edge"])
    mid = slice(len(upper) // 4, len(upper) - len(upper) // 4)
    v = np.load(root / "vertices_npy" / f"{name}.npy")
    v = v.reshape(len(v), -1, 3)
    return v[:, upper[mid], 1] - v[:, lower[mid], 1]


def test_layout_is_what_the_vocaset_loader_reads(speech_root: Path):
    from talk.data import VocasetDataModule

    root = speech_root
    names = ["SYN_01_F_sentence01", "SYN_01_F_sentence02", "SYN_02_M_sentence01", "SYN_02_M_sentence02"]
    exts = {"wav": "wav", "vertices_npy": "npy", "flame": "npz", "phones": "lab"}
    for sub in SEQUENCE_DIRS:
        assert sorted(p.name for p in (root / sub).iterdir()) == [f"{n}.{exts[sub]}" for n in names]
    for name in ("face_model.pkl", "FLAME_masks.pkl", "templates.pkl", "flame_manifest.jsonl"):
        assert (root / name).is_file()
    meta = _meta(root)
    for rec in meta["sequences"]:
        info = sf.info(str(root / "wav" / f"{rec['name']}.wav"))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        frames = np.load(root / "vertices_npy" / f"{rec['name']}.npy").shape[0]
        assert frames == rec["frames"] and 1.0 < frames / 60 < 5.0
        assert info.frames == round(frames / 60 * 16000)  # audio and motion cover the same time
        phones = read_lab(root / "phones" / f"{rec['name']}.lab", stress=True)
        assert covers(phones, info.frames / 16000, tol=1e-5) and phones[0].label == phones[-1].label == "sil"
        assert rec["text"] in load_sentences()
    voices = [s["tts"] for s in meta["speakers"]]
    assert voices[0]["variant"] in FEMALE_VARIANTS and voices[1]["variant"] in MALE_VARIANTS
    # the synthetic configs' loader, with their subject names and 60 -> 30 fps
    dm = VocasetDataModule(str(root), ["SYN_01_F"], ["SYN_02_M"], ["SYN_02_M"], (1, 2), (1, 1), (2, 2))
    dm.setup("fit")
    sample = dm.datasets["train"][1]
    assert sample.name == "SYN_01_F_sentence02" and sample.motion.shape[1:] == (
        dm.templates()["SYN_01_F"].shape
    )
    assert abs(len(sample.audio) / 16000 - len(sample.motion) / 30) < 1 / 30
    lines = [json.loads(ln) for ln in (root / "flame_manifest.jsonl").read_text().splitlines()]
    assert [ln["motion"] for ln in lines] == [f"flame/{n}.npz" for n in names]


def test_bilabials_in_the_phone_files_close_the_lips(speech_root: Path):
    closures = opens = 0
    for rec in _meta(speech_root)["sequences"]:
        gap = _lip_gap(speech_root, rec["name"])
        assert np.abs(gap[0]).max() < 5e-4  # leading silence: lips together
        for p in read_lab(speech_root / "phones" / f"{rec['name']}.lab"):
            if p.label in (
                "P",
                "B",
                "M",
            ):  # the closure of a stop is its first 70 %, a nasal closes throughout
                t = p.start + (0.35 if p.label != "M" else 0.5) * (p.end - p.start)
                assert np.abs(gap[int(round(t * 60))]).max() < 5e-4, (rec["name"], p)
                closures += 1
            if p.label in OPEN_VOWELS and p.end - p.start > 0.06:
                assert gap[int(round(0.5 * (p.start + p.end) * 60))].mean() > 2e-3, (rec["name"], p)
                opens += 1
    assert closures >= 3 and opens >= 2


def test_same_seed_gives_identical_bytes_whatever_the_workers_and_history(speech_root: Path, tmp_path: Path):
    # Speak something else first: espeak-ng's state from earlier calls must not leak into the set.
    tts.synthesize("Something quite different comes first.", voice="en-us+f3", rate=300)
    other = tmp_path / "b"
    write_speech_set(other, speakers=2, sentences=2, seed=SEED, workers=2, progress=False)
    assert _files(other) == _files(speech_root)
    for name in ("speech_meta.json", "templates.pkl", "flame_manifest.jsonl", "speech_config.json"):
        assert (other / name).read_bytes() == (speech_root / name).read_bytes(), name
    write_speech_set(tmp_path / "c", speakers=1, sentences=1, seed=SEED + 1, workers=1, progress=False)
    for sub in ("wav/SYN_01_F_sentence01.wav", "vertices_npy/SYN_01_F_sentence01.npy"):
        assert (tmp_path / "c" / sub).read_bytes() != (speech_root / sub).read_bytes()


def test_resume_writes_nothing_new_and_refuses_other_settings(speech_root: Path, tmp_path: Path):
    root = tmp_path / "a"
    shutil.copytree(speech_root, root)
    before = {p: p.stat().st_mtime_ns for sub in SEQUENCE_DIRS for p in (root / sub).iterdir()}
    summary = write_speech_set(root, speakers=2, sentences=2, seed=SEED, workers=1, progress=False)
    assert summary.written == 0 and summary.n_sequences == 4
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert (root / "speech_meta.json").read_bytes() == (speech_root / "speech_meta.json").read_bytes()
    (root / "wav" / "SYN_02_M_sentence01.wav").unlink()  # an interrupted sequence is made again, identically
    assert write_speech_set(root, speakers=2, sentences=2, seed=SEED, workers=1, progress=False).written == 1
    assert _files(root) == _files(speech_root)
    with pytest.raises(SpeechSetError, match=r"seed=4 \(not 5\)"):
        write_speech_set(root, speakers=2, sentences=2, seed=SEED + 1, progress=False)
    with pytest.raises(SpeechSetError, match="augment=True"):
        write_speech_set(root, speakers=2, sentences=2, seed=SEED, augment=False, progress=False)
    (tmp_path / "synth" / "wav").mkdir(parents=True)
    (tmp_path / "synth" / "wav" / "SYN_01_F_sentence01.wav").write_bytes(b"")
    with pytest.raises(SpeechSetError, match="did not write"):
        write_speech_set(tmp_path / "synth", progress=False)
    with pytest.raises(SpeechSetError, match="sentences=0"):
        write_speech_set(tmp_path / "d", sentences=0, progress=False)


def test_augmentation_changes_the_audio_but_not_the_motion(speech_root: Path, tmp_path: Path):
    clean = tmp_path / "clean"
    write_speech_set(clean, speakers=2, sentences=2, seed=SEED, workers=1, augment=False, progress=False)
    meta = _meta(speech_root)
    assert any(rec["augmentation"] for rec in meta["sequences"])
    for rec in meta["sequences"]:
        for sub, ext in (("vertices_npy", "npy"), ("flame", "npz"), ("phones", "lab")):
            path = f"{sub}/{rec['name']}.{ext}"
            assert (clean / path).read_bytes() == (speech_root / path).read_bytes()
        a, _ = sf.read(clean / "wav" / f"{rec['name']}.wav", dtype="float32")
        b, _ = sf.read(speech_root / "wav" / f"{rec['name']}.wav", dtype="float32")
        assert len(a) == len(b) and abs(np.abs(a).max() - PEAK) < 1e-3
        assert (np.abs(a - b).max() > 1e-3) == bool(rec["augmentation"])
    assert all(not rec["augmentation"] for rec in _meta(clean)["sequences"])


def _tone_bursts(sr: int = 16000) -> np.ndarray:
    t = np.arange(sr) / sr
    x = 0.5 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 1500 * t)  # energy at 1280 and 1720 Hz
    x[: sr // 4] = 0.0
    x[3 * sr // 4 :] = 0.0
    return x.astype(np.float32)


def test_each_degradation_keeps_length_and_timing():
    sr, x = 16000, _tone_bursts()
    cases = {
        "reverb": Augmentation(rt60=0.4, drr_db=0.0),
        "noise": Augmentation(snr_db=20.0, noise_color="pink"),
        "telephone": Augmentation(band=(300.0, 3400.0)),
        "lowpass": Augmentation(band=(0.0, 1000.0)),
        "level": Augmentation(gain_db=-12.0),
    }
    for name, aug in cases.items():
        y = apply_augmentation(x, sr, aug, np.random.default_rng(0))
        assert y.shape == x.shape and y.dtype == np.float32 and np.abs(y).max() <= 0.99, name
        assert np.abs(y - x).max() > 1e-3, name
        np.testing.assert_array_equal(y, apply_augmentation(x, sr, aug, np.random.default_rng(0)))
        if name != "noise":  # direct path at lag 0, zero-phase filters: an impulse stays where it was
            impulse = np.zeros(sr, dtype=np.float32)
            impulse[4000] = 0.5
            assert (
                int(np.argmax(np.abs(apply_augmentation(impulse, sr, aug, np.random.default_rng(0))))) == 4000
            )
    noisy = apply_augmentation(x, sr, cases["noise"], np.random.default_rng(0)) - x
    speech = x[sr // 4 : 3 * sr // 4]
    assert 10 * np.log10(np.mean(speech**2) / np.mean(noisy**2)) == pytest.approx(20.0, abs=0.5)
    level = apply_augmentation(x, sr, cases["level"], np.random.default_rng(0))
    assert np.abs(level).max() == pytest.approx(np.abs(x).max() * 10 ** (-12 / 20), rel=1e-4)
    assert np.abs(apply_augmentation(x, sr, cases["lowpass"], np.random.default_rng(0))).max() < 0.05
    drawn = [draw_augmentation(np.random.default_rng(k), sr) for k in range(200)]
    assert 0.05 < np.mean([a == Augmentation() for a in drawn]) < 0.3  # a random subset, sometimes none
    assert all(15 <= a.snr_db <= 40 for a in drawn if a.snr_db is not None)
    assert all(0.1 <= a.rt60 <= 0.5 for a in drawn if a.rt60 is not None)


def test_speaker_voices_follow_the_speakers_sex_and_seed():
    accents, variants = tts.voices(), tts.variants()
    for i in range(6):
        spk = make_speaker(0, i)
        voice = speaker_voice(0, spk, accents, variants)
        assert voice == speaker_voice(0, spk, accents, variants) and voice.voice in accents
        assert voice.variant in (FEMALE_VARIANTS if spk.sex == "F" else MALE_VARIANTS)
        assert 140 <= voice.rate <= 200
    assert len({speaker_voice(s, make_speaker(s, 0), accents, variants) for s in range(8)}) > 4
    sentences = load_sentences()
    assert len(sentences) >= 150 and len(set(sentences)) == len(sentences)
    assert sum(any(c in s.lower() for c in "pbm") for s in sentences) > 0.75 * len(sentences)


def test_missing_espeak_is_a_one_line_error(monkeypatch, tmp_path: Path, capsys):
    from talk.cli.main import main

    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # import fails as if not installed
    monkeypatch.setattr(tts, "_ENGINE", None)
    with pytest.raises(SpeechSetError, match="espeakng-loader"):
        write_speech_set(tmp_path / "x", progress=False)
    with pytest.raises(SystemExit) as exit_:
        main(["data", "speech", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 1 and "\n" not in err and "pip install" in err
