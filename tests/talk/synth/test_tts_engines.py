"""Tests of the Festival and Flite speech engines (talk.synth.tts_festival, tts_flite, festival_phones,
speech_engines) and of `talk data speech --engines`.

The engines are Debian packages (`make speech-engines`); tests that run them skip where they are missing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from talk.errors import UserError
from talk.synth import speech_engines, tts_festival, tts_flite
from talk.synth.festival_phones import Segment, radio_to_arpabet, segments_to_phones, transfer_stress
from talk.synth.phones import PHONE_SET, boundary_errors, check_order, covers, strip_stress
from talk.synth.tts import TTSError
from talk.synth.tts_festival import EngineMissingError, EngineVoiceInfo

TEXT = "He turned sharply and faced Gregson across the table."
SPOKEN = "HH IY T ER N D SH AA R P L IY".split()  # the first words, as both engines' lexicon says them
HAVE_FESTIVAL = shutil.which("festival") is not None
HAVE_FLITE = shutil.which("flite") is not None and shutil.which("t2p") is not None
needs_festival = pytest.mark.skipif(not HAVE_FESTIVAL, reason="festival not installed (make speech-engines)")
needs_flite = pytest.mark.skipif(not HAVE_FLITE, reason="flite not installed (make speech-engines)")
ROUTES = [
    *[pytest.param(tts_festival, v, marks=needs_festival, id=f"festival-{v}") for v in tts_festival.VOICES],
    *[pytest.param(tts_flite, v, marks=needs_flite, id=f"flite-{v}") for v in tts_flite.VOICES],
]


def _speech(phones) -> list[str]:
    out = []
    for p in phones:
        label = strip_stress(p.label)
        if label != "sil" and not (label == "R" and out[-1:] == ["ER"]):  # ked_diphone's "er r"
            out.append(label)
    return out


def _f0(audio: np.ndarray, sr: int, phones) -> float:
    """Median autocorrelation pitch over the longer vowels (60-400 Hz)."""
    estimates = []
    for p in phones:
        if strip_stress(p.label) in ("IY", "ER", "AA", "AE", "EY", "EH", "AO") and p.end - p.start > 0.05:
            x = audio[int(p.start * sr) : int(p.end * sr)].astype(np.float64)
            x -= x.mean()
            ac = np.correlate(x, x, "full")[len(x) - 1 :]
            lo, hi = int(sr / 400), int(sr / 60)
            estimates.append(sr / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(estimates))


def _installed(module, voice: str) -> None:
    if voice not in module.voices():
        pytest.skip(f"{module.__name__} voice {voice} not installed (make speech-engines)")


@pytest.mark.parametrize(("module", "voice"), ROUTES)
def test_audio_and_phone_timings_cover_each_other(module, voice: str):
    _installed(module, voice)
    result = module.synthesize(TEXT, voice, stress=True)
    sr = result.sample_rate
    assert sr == 16000 and result.audio.dtype == np.float32 and result.audio.ndim == 1
    assert np.all(np.isfinite(result.audio)) and 0.05 < np.abs(result.audio).max() <= 1.0
    phones = result.phones
    assert phones[0].start == 0.0 and abs(phones[-1].end - result.duration) < 0.05
    assert covers(phones, result.duration, tol=1e-9)
    check_order(phones)  # monotone, no overlaps
    assert all(strip_stress(p.label) in PHONE_SET for p in phones)
    assert _speech(phones)[: len(SPOKEN)] == SPOKEN
    assert "AA1" in [p.label for p in phones]  # "sharply", stressed
    # The time line marks silence where the audio is silent and speech where it is not.
    lead = result.audio[: int(phones[0].end * sr)]
    vowel = next(p for p in phones if p.label == "AA1")
    assert phones[0].label == "sil" and np.sqrt(np.mean(lead**2)) < 0.01
    assert np.sqrt(np.mean(result.audio[int(vowel.start * sr) : int(vowel.end * sr)] ** 2)) > 0.03


@pytest.mark.parametrize(
    ("module", "voice"),
    [
        pytest.param(tts_festival, "kal_diphone", marks=needs_festival, id="festival"),
        pytest.param(tts_flite, "slt", marks=needs_flite, id="flite"),
    ],
)
def test_same_arguments_same_output_and_speed_pitch_rate_options(module, voice: str):
    _installed(module, voice)
    a, b = module.synthesize(TEXT, voice, 1.1, 150.0), module.synthesize(TEXT, voice, 1.1, 150.0)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.phones == b.phones
    slow, fast = module.synthesize(TEXT, voice, stretch=1.4), module.synthesize(TEXT, voice, stretch=0.8)
    assert _speech(slow.phones) == _speech(fast.phones)
    speech = [sum(p.end - p.start for p in r.phones if p.label != "sil") for r in (slow, fast)]
    assert 1.4 < speech[0] / speech[1] < 2.1  # 1.75 asked
    low, high = module.synthesize(TEXT, voice, pitch=90.0), module.synthesize(TEXT, voice, pitch=180.0)
    assert _f0(high.audio, 16000, high.phones) > 1.5 * _f0(low.audio, 16000, low.phones)
    native = module.synthesize(TEXT, voice, sample_rate=22050)
    assert native.sample_rate == 22050 and native.duration == pytest.approx(
        module.synthesize(TEXT, voice).duration, abs=1e-3
    )


@needs_festival
def test_festival_hts_voice_speaks_faster_on_request_but_keeps_its_pitch():
    _installed(tts_festival, "cmu_us_slt_arctic_hts")
    slow = tts_festival.synthesize(TEXT, "cmu_us_slt_arctic_hts", stretch=1.3)
    fast = tts_festival.synthesize(TEXT, "cmu_us_slt_arctic_hts", stretch=0.8)
    assert 1.4 < slow.duration / fast.duration < 1.9
    with pytest.raises(TTSError, match="cannot change its pitch"):
        tts_festival.synthesize(TEXT, "cmu_us_slt_arctic_hts", pitch=150.0)


@pytest.mark.parametrize(
    ("module", "voice"),
    [
        pytest.param(tts_festival, "kal_diphone", marks=needs_festival, id="festival"),
        pytest.param(tts_flite, "slt", marks=needs_flite, id="flite"),
    ],
)
def test_forced_alignment_agrees_with_the_engine_timings(module, voice: str):
    """The engines' boundaries are where an acoustic model hears them: pocketsphinx (10 ms frames) agrees with
    them to a median of 5-11 ms on every voice (measured over 10 Harvard sentences each); 30 ms is the bound."""
    pytest.importorskip("pocketsphinx")
    from talk.synth.aligner import align
    from talk.synth.speech_set import load_sentences

    _installed(module, voice)
    errors = []
    for text in (TEXT, *load_sentences()[:2]):
        result = module.synthesize(text, voice)
        errors.append(boundary_errors(result.phones, align(result.audio, result.sample_rate, text)))
    errors = np.concatenate(errors)
    assert len(errors) > 60 and np.median(errors) < 0.03, np.median(errors)


# ------------------------------------------------------------------------------------------------- pure parts
def test_radio_phones_map_to_cmudict():
    assert radio_to_arpabet("ax", "0") == ("AH0",) and radio_to_arpabet("AXR") == ("ER",)
    assert radio_to_arpabet("el", "1") == ("AH1", "L") and radio_to_arpabet("dx") == ("T",)
    assert radio_to_arpabet("pau") == radio_to_arpabet("h#") == radio_to_arpabet("brth") == ("sil",)
    assert all(
        strip_stress(p) in PHONE_SET for n in ("aa", "hv", "nx", "em", "zh") for p in radio_to_arpabet(n)
    )
    with pytest.raises(UserError, match="'qq'"):
        radio_to_arpabet("qq")
    segs = [Segment("pau", 0.2), Segment("hh", 0.3), Segment("el", 0.55, "1"), Segment("pau", 0.9)]
    phones = segments_to_phones(segs, 0.8, stress=True)  # the last pause runs past the audio: clamped
    assert [p.label for p in phones] == ["sil", "HH", "AH1", "L", "sil"]
    assert phones[2].end - phones[2].start == pytest.approx(0.6 * 0.25) and covers(phones, 0.8, tol=1e-12)
    assert [p.label for p in segments_to_phones(segs[:2], 0.5)] == [
        "sil",
        "HH",
        "sil",
    ]  # audio after: a pause
    plain = [Segment("pau", 0.1), Segment("iy", 0.2), Segment("t", 0.3)]
    assert [s.stress for s in transfer_stress(plain, ["pau", "iy1", "t"])] == ["", "1", ""]
    assert [s.stress for s in transfer_stress(plain, ["pau", "ih1", "t"])] == ["", "", ""]  # mismatch: none


def test_missing_engines_and_voices_are_one_line_errors_naming_the_fix(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    for module in (tts_festival, tts_flite):
        monkeypatch.setattr(module, "_installed", module._installed.__wrapped__)  # (no cached listing)
        with pytest.raises(EngineMissingError) as err:
            module.synthesize(TEXT, next(iter(module.VOICES)))
        message = str(err.value)
        assert isinstance(err.value, UserError) and "\n" not in message
        assert "apt-get install" in message and "make speech-engines" in message
    monkeypatch.setattr(tts_festival, "_installed", lambda: ("kal_diphone",))
    with pytest.raises(EngineMissingError, match="festvox-us-slt-hts"):
        tts_festival.synthesize(TEXT, "cmu_us_slt_arctic_hts")
    with pytest.raises(TTSError, match="'nobody'"):
        tts_festival.synthesize(TEXT, "nobody")
    with pytest.raises(TTSError, match="stretch"):
        tts_festival.synthesize(TEXT, "kal_diphone", stretch=3.0)
    with pytest.raises(TTSError, match="empty"):
        tts_flite.synthesize(" ", "slt")


def test_engines_take_turns_and_voices_follow_the_speakers_sex():
    assert speech_engines.parse_engines("flite, espeak") == ("espeak", "flite")
    with pytest.raises(ValueError, match="mbrola"):
        speech_engines.parse_engines("espeak,mbrola")
    engines = ("espeak", "festival", "flite")
    for speaker in range(4):
        turns = [speech_engines.sentence_engine([0, speaker, 3], j, engines) for j in range(6)]
        assert sorted(turns) == sorted(engines * 2)  # every engine, evenly
    voices = {"a": EngineVoiceInfo("a", "M", "p", 100.0), "b": EngineVoiceInfo("b", "F", "p", None)}
    for seed in range(5):
        female = speech_engines.speaker_voices([seed, 0, 3], "F", {"flite": voices})["flite"]
        male = speech_engines.speaker_voices([seed, 1, 3], "M", {"flite": voices})["flite"]
        assert (female.voice, female.pitch, male.voice) == ("b", None, "a") and 85 <= male.pitch <= 120
        assert speech_engines.STRETCH[0] <= male.stretch <= speech_engines.STRETCH[1]


# ------------------------------------------------------------------------------------------- talk data speech
def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@needs_festival
@needs_flite
def test_speech_set_with_festival_and_flite_is_deterministic(tmp_path: Path, capsys):
    from talk.cli.main import main
    from talk.synth.phones import read_lab

    args = ["data", "speech", "--speakers", "2", "--sentences", "2", "--seed", "3", "--workers", "1"]
    main([*args, "--out", str(tmp_path / "a"), "--engines", "festival,flite"])
    main([*args, "--out", str(tmp_path / "b"), "--engines", "flite,festival", "--workers", "2"])
    assert "4 sequences" in capsys.readouterr().out
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b and len([n for n in a if n.startswith("wav/")]) == 4
    meta = json.loads(a["speech_meta.json"])
    assert meta["engines"] == "festival,flite" and "espeakng_loader" not in meta
    assert sorted(r["engine"] for r in meta["sequences"]) == ["festival", "festival", "flite", "flite"]
    assert meta["speakers"][0]["voices"]["festival"]["voice"] == "cmu_us_slt_arctic_hts"  # SYN_01_F
    for rec in meta["sequences"]:
        phones = read_lab(tmp_path / "a" / "phones" / f"{rec['name']}.lab", stress=True)
        assert covers(phones, rec["samples"] / 16000, tol=1e-5) and phones[0].label == "sil"
    from talk.synth.speech_set import write_speech_set

    with pytest.raises(UserError, match=r"engines='festival,flite' \(not None\)"):  # written otherwise
        write_speech_set(tmp_path / "a", speakers=2, sentences=2, seed=3, progress=False)
    summary = write_speech_set(tmp_path / "a", 2, 2, seed=3, progress=False, engines=("flite", "festival"))
    assert summary.written == 0 and _files(tmp_path / "a") == a  # resumed: nothing to do


def test_unknown_or_missing_engine_is_a_one_line_cli_error(tmp_path: Path, capsys, monkeypatch):
    from talk.cli.main import main

    for engines, expected in (("espeak,mbrola", "mbrola"), ("flite", "make speech-engines")):
        if engines == "flite":
            monkeypatch.setattr(shutil, "which", lambda name: None)
            monkeypatch.setattr(tts_flite, "_installed", tts_flite._installed.__wrapped__)
        with pytest.raises(SystemExit) as exit_:
            main(["data", "speech", "--out", str(tmp_path / "x"), "--engines", engines])
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 1 and "\n" not in err and expected in err
