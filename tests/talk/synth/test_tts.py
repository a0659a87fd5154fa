"""Tests of espeak-ng speech synthesis with phone timings (talk.synth.tts, talk.synth.espeak_phones)."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from talk.errors import UserError
from talk.synth.espeak_phones import ESPEAK_TO_ARPABET, espeak_to_arpabet, events_to_phones
from talk.synth.phones import PHONE_SET, covers, strip_stress, to_utterance
from talk.synth.tts import TTSError, synthesize, variants, voices

TEXT = "He turned sharply and faced Gregson across the table."


def _speech(phones) -> list[str]:
    return [p.label for p in phones if p.label != "sil"]


def _speech_seconds(phones) -> float:
    return sum(p.end - p.start for p in phones if p.label != "sil")


def _f0(audio: np.ndarray, sr: int, phones) -> float:
    """Median autocorrelation pitch over the vowels (60-400 Hz)."""
    estimates = []
    for p in phones:
        if p.label in ("IY", "ER", "AA", "AE", "EY", "EH", "AO", "AH") and p.end - p.start > 0.05:
            x = audio[int(p.start * sr) : int(p.end * sr)].astype(np.float64)
            x -= x.mean()
            ac = np.correlate(x, x, "full")[len(x) - 1 :]
            lo, hi = int(sr / 400), int(sr / 60)
            estimates.append(sr / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(estimates))


@pytest.mark.parametrize("voice", ["en-us", "en-gb+m3"])
def test_audio_and_phone_timings_cover_each_other(voice: str):
    result = synthesize(TEXT, voice=voice)
    assert result.audio.dtype == np.float32 and result.audio.ndim == 1 and result.sample_rate == 16000
    assert np.all(np.isfinite(result.audio)) and 0.05 < np.abs(result.audio).max() <= 1.0
    assert result.phones[-1].end == pytest.approx(len(result.audio) / result.sample_rate, abs=1e-9)
    assert covers(result.phones, result.duration, tol=1e-9)
    assert all(p.label in PHONE_SET for p in result.phones)
    assert _speech(result.phones)[:8] == "HH IY T ER N D SH AA".split()  # (en-gb then drops the R)
    # The time line marks silence where the audio is silent and speech where it is not.
    sr = result.sample_rate
    lead = result.audio[: int(result.phones[0].end * sr)] if result.phones[0].label == "sil" else []
    vowel = next(p for p in result.phones if p.label == "AA")
    assert np.abs(lead).max(initial=0.0) < 0.02
    assert np.sqrt(np.mean(result.audio[int(vowel.start * sr) : int(vowel.end * sr)] ** 2)) > 0.03


def test_rate_scales_the_duration():
    slow, fast = synthesize(TEXT, rate=120), synthesize(TEXT, rate=240)
    assert _speech(slow.phones) == _speech(fast.phones)
    ratio = _speech_seconds(slow.phones) / _speech_seconds(fast.phones)
    assert 1.6 < ratio < 2.4, ratio  # proportional to the rate, within espeak's own rhythm rules
    assert slow.duration > 1.5 * fast.duration


def test_pitch_and_variants_change_the_voice():
    low, high = synthesize(TEXT, pitch=10), synthesize(TEXT, pitch=90)
    assert _f0(high.audio, 16000, high.phones) > 1.3 * _f0(low.audio, 16000, low.phones)
    female, male = synthesize(TEXT, variant="f3"), synthesize(TEXT, voice="en-us+m3")
    assert female.voice == "en-us+f3" and male.voice == "en-us+m3"
    assert _f0(female.audio, 16000, female.phones) > 1.3 * _f0(male.audio, 16000, male.phones)


def test_sample_rate_and_stress_options():
    native = synthesize(TEXT, sample_rate=22050, stress=True)
    plain = synthesize(TEXT)
    assert native.sample_rate == 22050
    assert native.duration == pytest.approx(plain.duration, abs=0.01)
    labels = [p.label for p in native.phones]
    assert "ER1" in labels and "AH0" in labels
    assert [strip_stress(lb) for lb in labels] == [p.label for p in plain.phones]
    utt = to_utterance(native.phones, native.duration)
    assert any(s.stressed for s in utt.segments) and utt.segments[-1].symbol == "sil"


def test_voices_and_variants_are_listed_and_usable():
    names = voices()
    assert {"en-us", "en-gb"} <= set(names) and all(n.startswith("en") for n in names)
    assert {"f3", "m3"} <= set(variants())
    for name in names:
        result = synthesize("Hello there.", voice=name)
        # (the West Midlands voice drops the h of "hello")
        assert "L" in _speech(result.phones)[:4] and covers(result.phones, result.duration, tol=1e-9), name


def test_bad_arguments_are_one_line_user_errors():
    with pytest.raises(TTSError) as err:
        synthesize("hello", voice="xx-nowhere")
    message = str(err.value)
    assert isinstance(err.value, UserError) and "\n" not in message
    assert "'xx-nowhere'" in message and "en-us" in message
    with pytest.raises(TTSError, match="variant 'zz'"):
        synthesize("hello", variant="zz")
    with pytest.raises(TTSError, match="rate"):
        synthesize("hello", rate=20)
    with pytest.raises(TTSError, match="pitch"):
        synthesize("hello", pitch=120)
    with pytest.raises(TTSError, match="empty"):
        synthesize("  ")


def test_concurrent_calls_are_serialised():
    jobs = [
        (f"Sentence {word} is spoken now.", v)
        for word in ("one", "two", "three")
        for v in ("en-us", "en-gb+f3")
    ]
    expected = {job: _speech(synthesize(job[0], voice=job[1]).phones) for job in jobs}
    got: dict[tuple[str, str], list[list[str]]] = {job: [] for job in jobs}

    def work(job: tuple[str, str]) -> None:
        got[job].append(_speech(synthesize(job[0], voice=job[1]).phones))

    threads = [threading.Thread(target=work, args=(job,)) for job in jobs * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {job: [phones, phones] for job, phones in expected.items()}


# ----------------------------------------------------------------------------------------------------------------
# Mnemonic table


def _english_mnemonics() -> set[str]:
    """Phoneme mnemonics of the base and English tables in espeak-ng's compiled phontab."""
    import espeakng_loader

    data = (Path(espeakng_loader.get_data_path()) / "phontab").read_bytes()
    out, offset = set(), 4
    for _ in range(data[0]):
        n_phonemes = data[offset]
        name = data[offset + 4 : offset + 36].split(b"\0")[0].decode()
        offset += 36
        for k in range(n_phonemes):
            mnemonic, _flags, _program, _code, kind = struct.unpack_from("<IIHBB", data, offset + 16 * k)
            text = mnemonic.to_bytes(4, "little").rstrip(b"\0").decode("latin1")
            # kind 1 = stress marks, 9 = virtual phonemes: neither is ever spoken.
            if text and kind not in (1, 9) and (name in ("base1", "en") or name.startswith("en-")):
                out.add(text)
        offset += 16 * n_phonemes
    return out


def test_every_english_mnemonic_maps_to_arpabet():
    mnemonics = _english_mnemonics()
    assert {"i:", "3:", "A@", "aI", "tS", "@L"} <= mnemonics
    missing = sorted(mnemonics - set(ESPEAK_TO_ARPABET))
    assert not missing, missing
    for m in ESPEAK_TO_ARPABET:
        for voice in ("en-us", "en-gb"):
            assert all(strip_stress(p) in PHONE_SET for p in espeak_to_arpabet(m, voice)), (m, voice)


def test_mnemonic_stress_and_accent():
    assert espeak_to_arpabet("'A@") == ("AA1", "R")
    assert espeak_to_arpabet("'A@", "en-gb") == ("AA1",)
    assert espeak_to_arpabet(",aI3") == ("AY2", "ER0")
    assert espeak_to_arpabet("aa") == ("AE0",) and espeak_to_arpabet("aa", "en-gb") == ("AA0",)
    phones = events_to_phones([("h", 0.01), ("'A@", 0.05), ("_:", 0.3)], 0.5, stress=True)
    assert [p.label for p in phones] == ["sil", "HH", "AA1", "R", "sil"]
    assert phones[2].end - phones[2].start == pytest.approx(0.6 * 0.25)  # a vowel outweighs a consonant 3:2
    assert covers(phones, 0.5, tol=1e-12)
