"""Tests of phone time lines: label files, coverage, and the mapping onto the synthetic inventory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from talk.errors import UserError
from talk.synth.articulation import build_trajectory, lip_aperture
from talk.synth.phonemes import INVENTORY, VOWELS
from talk.synth.phones import (
    ARPABET_CONSONANTS,
    ARPABET_VOWELS,
    PHONE_SET,
    TO_INVENTORY,
    Phone,
    PhoneError,
    boundary_errors,
    covers,
    fill_silence,
    normalize_label,
    read_lab,
    to_utterance,
)
from talk.synth.speakers import make_speaker

SPEECH = Path(__file__).resolve().parents[3] / "assets" / "speech"
ARCTIC_LAB = SPEECH / "arctic_a0009_phone.lab"
ARCTIC_WAV = SPEECH / "arctic_a0009.wav"
ARCTIC_START = (
    "sil HH IY T ER N D SH AA R P L IY AE N D F EY S T G R EH G S AH N AH K R AO S DH AH T EY B AH L sil"
)


def _wav_seconds() -> float:
    info = sf.info(str(ARCTIC_WAV))
    return info.frames / info.samplerate


def _assert_tiles(utt) -> None:
    segs = utt.segments
    assert segs[0].start == 0.0 and segs[-1].end == pytest.approx(utt.duration, abs=1e-12)
    for a, b in zip(segs[:-1], segs[1:], strict=True):
        assert a.end == pytest.approx(b.start, abs=1e-12) and b.end > b.start
    assert all(s.symbol in INVENTORY for s in segs)


# ----------------------------------------------------------------------------------------------------------------
# Label files


def test_read_lab_arctic_full_context_labels_cover_the_wav():
    phones = read_lab(ARCTIC_LAB)
    assert " ".join(p.label for p in phones) == ARCTIC_START
    # The labels end 20 ms before the recording does (the last frame of the published alignment).
    assert covers(phones, _wav_seconds(), tol=0.025)
    assert not covers(phones, _wav_seconds(), tol=0.005)
    assert phones[1] == Phone("HH", 0.13, 0.205)
    assert all(p.label in PHONE_SET for p in phones)


def test_read_lab_keeps_stress_of_the_current_syllable_when_asked():
    stressed = read_lab(ARCTIC_LAB, stress=True)
    labels = [p.label for p in stressed]
    assert labels[:5] == ["sil", "HH", "IY1", "T", "ER1"]
    assert "AH0" in labels and all(lb[-1] in "01" for lb in labels if lb.rstrip("01") in ARPABET_VOWELS)
    assert [p.start for p in stressed] == [p.start for p in read_lab(ARCTIC_LAB)]


def test_read_lab_simple_mono_and_xwaves_layouts_agree(tmp_path: Path):
    seconds = tmp_path / "seconds.lab"
    seconds.write_text("0.0 0.13 pau\n0.13 0.205 hh\n0.205 0.27 iy1\n0.27 0.375 t\n")
    hts_mono = tmp_path / "mono.lab"
    hts_mono.write_text("0 1300000 sil\n1300000 2050000 hh\n2050000 2700000 iy\n2700000 3750000 t\n")
    xwaves = tmp_path / "xwaves.lab"
    xwaves.write_text("separator ;\nnfields 1\n#\n0.130 125 pau\n0.205 125 hh\n0.270 125 iy\n0.375 125 t\n")
    expected = [("sil", 0.0, 0.13), ("HH", 0.13, 0.205), ("IY", 0.205, 0.27), ("T", 0.27, 0.375)]
    for path in (seconds, hts_mono, xwaves):
        got = [(p.label, p.start, p.end) for p in read_lab(path)]
        assert [g[0] for g in got] == [e[0] for e in expected], path.name
        np.testing.assert_allclose([g[1:] for g in got], [e[1:] for e in expected], atol=1e-9)
    assert read_lab(seconds, stress=True)[2].label == "IY1"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0.0 0.1 sil\n0.1 0.2\n", "unreadable line"),
        ("0.0 0.1 sil\n0.1 abc hh\n", "unreadable times"),
        ("0.0 0.1 sil\n0.1 0.2 qq\n", "unknown phone label 'qq'"),
        ("0.0 0.3 sil\n0.2 0.4 hh\n", "before the previous phone ends"),
        ("0.0 0.1 sil\n0.3 0.2 hh\n", "invalid times"),
        ("", "no phone labels"),
    ],
)
def test_read_lab_rejects_bad_files_with_one_line(tmp_path: Path, text: str, fragment: str):
    path = tmp_path / "bad.lab"
    path.write_text(text)
    with pytest.raises(PhoneError) as err:
        read_lab(path)
    assert isinstance(err.value, UserError)
    message = str(err.value)
    assert fragment in message and str(path) in message and "\n" not in message


def test_read_lab_missing_file_is_a_user_error(tmp_path: Path):
    with pytest.raises(PhoneError, match="cannot read label file"):
        read_lab(tmp_path / "absent.lab")


def test_normalize_label_folds_festival_and_timit_spellings():
    assert normalize_label("ax") == "AH" and normalize_label("AX0", stress=True) == "AH0"
    assert normalize_label("pau") == normalize_label("h#") == normalize_label("SIL") == "sil"
    assert normalize_label("ay1") == "AY" and normalize_label("ay1", stress=True) == "AY1"
    assert normalize_label("t1", stress=True) == "T"  # consonants never carry stress
    with pytest.raises(PhoneError):
        normalize_label("xx")


# ----------------------------------------------------------------------------------------------------------------
# Coverage helpers


def test_covers_and_fill_silence():
    phones = [Phone("HH", 0.1, 0.2), Phone("IY", 0.2, 0.35), Phone("T", 0.5, 0.6)]
    assert not covers(phones, 0.8, tol=0.01)
    filled = fill_silence(phones, 0.8)
    assert [p.label for p in filled] == ["sil", "HH", "IY", "sil", "T", "sil"]
    assert covers(filled, 0.8, tol=1e-12)
    # Clamping and merging: a phone past the end is cut, pauses next to pauses merge.
    clipped = fill_silence([Phone("sil", 0.0, 0.1), Phone("HH", 0.2, 0.9)], 0.5)
    assert clipped == [Phone("sil", 0.0, 0.2), Phone("HH", 0.2, 0.5)]
    assert not covers([], 1.0)


def test_boundary_errors_match_sequences_despite_insertions():
    ref = [Phone("sil", 0, 0.1), Phone("HH", 0.1, 0.2), Phone("IY", 0.2, 0.3), Phone("T", 0.3, 0.4)]
    hyp = [Phone("HH", 0.0, 0.12), Phone("AH", 0.12, 0.15), Phone("IY1", 0.15, 0.31), Phone("T", 0.31, 0.4)]
    np.testing.assert_allclose(boundary_errors(ref, hyp), [0.1, 0.05, 0.01], atol=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# Mapping onto the synthetic inventory


def test_to_utterance_maps_every_cmudict_phone():
    assert set(TO_INVENTORY) == set(PHONE_SET)
    assert len(ARPABET_VOWELS) + len(ARPABET_CONSONANTS) == 39
    for label in ARPABET_VOWELS + ARPABET_CONSONANTS:
        phones = [Phone("sil", 0.0, 0.2), Phone(label + ("1" if label in ARPABET_VOWELS else ""), 0.2, 0.4)]
        utt = to_utterance(phones + [Phone("sil", 0.4, 0.6)], 0.6)
        _assert_tiles(utt)
        speech = [s for s in utt.segments if s.symbol != "sil"]
        assert [s.symbol for s in speech] == [sym for sym, _ in TO_INVENTORY[label]], label
        assert speech[0].start == pytest.approx(0.2) and speech[-1].end == pytest.approx(0.4)
        if label in ARPABET_VOWELS:  # stress lands on the first vowel part only
            assert [s.stressed for s in speech] == [i == 0 for i in range(len(speech))], label
        assert all(s.symbol in INVENTORY for s in speech)


def test_to_utterance_of_arctic_labels_drives_the_face():
    duration = _wav_seconds()
    utt = to_utterance(read_lab(ARCTIC_LAB, stress=True), duration)
    _assert_tiles(utt)
    assert utt.duration == pytest.approx(round(duration * 60) / 60) and round(utt.duration * 60, 9) % 1 == 0
    assert utt.segments[0].symbol == "sil" and utt.segments[-1].symbol == "sil"
    assert any(s.stressed for s in utt.segments) and all(
        s.symbol in VOWELS for s in utt.segments if s.stressed
    )
    trajectory = build_trajectory(utt, make_speaker(0, 0))
    values = trajectory(np.arange(int(round(utt.duration * 60))) / 60)
    assert np.all(np.isfinite(values))
    # Real timings keep the synthetic articulation's contracts: lips shut at P and B, open on AA and AE.
    for seg in utt.segments:
        at = trajectory(np.asarray([0.5 * (seg.start + seg.release)]))
        if seg.symbol in ("P", "B"):
            assert trajectory.channel(at, "lip_closure")[0] > 0.95 and lip_aperture(at)[0] < 0.01
        if seg.symbol in ("AA", "AE"):
            assert lip_aperture(at)[0] > 0.1


def test_to_utterance_shares_short_gaps_and_clamps():
    phones = [Phone("HH", 0.05, 0.2), Phone("IY", 0.21, 0.4), Phone("T", 0.6, 0.7), Phone("AH", 0.7, 1.5)]
    utt = to_utterance(phones, 1.0, fps=30)
    _assert_tiles(utt)
    assert [s.symbol for s in utt.segments] == ["sil", "HH", "IY", "sil", "T", "AH"]
    assert utt.segments[1].end == pytest.approx(0.205)  # a 10 ms gap is shared, not a pause
    assert utt.segments[-1].end == 1.0  # clamped to the duration
    assert to_utterance(phones, 1.01, fps=30).duration == pytest.approx(1.0)
    only_pause = to_utterance([Phone("sil", 0.0, 0.5)], 0.5)
    assert [s.symbol for s in only_pause.segments] == ["sil"]


def test_to_utterance_rejects_bad_input():
    with pytest.raises(PhoneError, match="unknown phone label"):
        to_utterance([Phone("QQ", 0.0, 0.1)], 0.2)
    with pytest.raises(PhoneError, match="time order"):
        to_utterance([Phone("HH", 0.1, 0.3), Phone("IY", 0.0, 0.2)], 0.5)
    with pytest.raises(PhoneError, match="duration"):
        to_utterance([Phone("HH", 0.0, 0.1)], 0.0)
