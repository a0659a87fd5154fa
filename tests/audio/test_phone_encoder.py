"""PhoneEncoder: frame contract, padding invariance, timing of its frames against real phone labels, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pocketsphinx")

from audio.io import load_audio  # noqa: E402
from audio.phone_encoder import AcousticModelMismatchError, PhoneEncoder  # noqa: E402
from talk.synth.phones import read_lab  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARCTIC = ROOT / "assets" / "speech" / "arctic_a0009.wav"
LABELS = ROOT / "assets" / "speech" / "arctic_a0009_phone.lab"


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return PhoneEncoder(output_dim=16, num_layers=2).eval()


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    return torch.as_tensor(np.asarray(load_audio(ARCTIC, 16000), np.float32)).flatten()


def test_frames_mask_and_padding_invariance(one_thread, encoder, speech):
    short = speech[:16000]
    wav = torch.zeros(2, len(speech) + 700)
    wav[0, : len(speech)] = speech
    wav[1, : len(short)] = short
    lengths = torch.tensor([len(speech), len(short)])
    out = encoder(wav, lengths)
    assert encoder.num_frames(len(speech) + 700) == (len(speech) + 700) // 320 == out.x.shape[1]
    assert out.mask.sum(1).tolist() == [len(speech) // 320, 50]
    assert out.frame_rate == 50.0 and out.x.shape[2] == 16
    assert torch.all(out.x[1, 50:] == 0)
    alone = encoder(short[None]).x[0]
    torch.testing.assert_close(out.x[1, :50], alone, atol=1e-5, rtol=0)


def test_frames_sit_on_the_phones_of_a_real_recording(one_thread, encoder, speech):
    """The 100 Hz posteriors agree with the published ARCTIC labels, best within 20 ms of the documented centring.

    Measured: 43% of labelled frames at shift 0, 49% at +20 ms (the acoustic model's own lag, or the labels'
    placement), against 1/42 by chance.
    """
    post = encoder.frame_features(speech)[:, :-1]  # [T, 42] at 100 Hz, frame j centred at 10 j + 5 ms
    phones = list(encoder.phones)
    truth = np.full(len(post), -1)
    for p in read_lab(LABELS):
        name = "SIL" if p.label == "sil" else p.label
        if name in phones:
            lo, hi = int(round(p.start * 100)), int(round(p.end * 100))
            truth[lo:hi] = phones.index(name)
    best = post.argmax(1).numpy()

    def agreement(shift: int) -> float:
        t = np.arange(len(best))
        ok = (t + shift >= 0) & (t + shift < len(best)) & (truth >= 0)
        return float((best[np.clip(t + shift, 0, len(best) - 1)][ok] == truth[ok]).mean())

    at = {s: agreement(s) for s in range(-6, 7)}
    assert at[0] > 0.4, at  # the acoustic model alone, frame by frame
    assert abs(max(at, key=at.get)) <= 2, at


def test_checkpoint_round_trip_and_a_different_acoustic_model_is_refused(encoder, speech):
    state = encoder.state_dict()
    assert not any(k.startswith("acoustic.") for k in state)  # the acoustic model comes from the wheel
    assert "acoustic_fingerprint" in state
    other = PhoneEncoder(output_dim=16, num_layers=2).eval()
    other.load_state_dict(state)
    torch.testing.assert_close(other(speech[None, :8000]).x, encoder(speech[None, :8000]).x)
    state["acoustic_fingerprint"] = state["acoustic_fingerprint"] ^ 1
    with pytest.raises(AcousticModelMismatchError, match="another Sphinx acoustic model"):
        other.load_state_dict(state)


def test_bad_arguments_are_one_line(encoder):
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        PhoneEncoder(kernel_size=2)
    with pytest.raises(ValueError, match="expects wav of shape"):
        encoder(torch.zeros(16000))
