"""The phonetic generator: viseme decode, articulation that closes the lips, a real recording end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from talk.pipeline.phone_decode import decode_phones, viseme_groups, viterbi_segments

PHONES = ("SIL", "AA", "B", "M", "V", "IY")
# the order of the acoustic model's phones (audio.PhonePosteriors().phones)
SPHINX_PHONES = ("+NSN+", "+SPN+", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G",
                 "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "SIL", "T", "TH",
                 "UH", "UW", "V", "W", "Y", "Z", "ZH")  # fmt: skip


def _log_probs(rows: list[dict[str, float]]) -> np.ndarray:
    """Per-frame distributions over PHONES (unlisted phones share what is left)."""
    out = np.zeros((len(rows), len(PHONES)))
    for t, row in enumerate(rows):
        rest = (1.0 - sum(row.values())) / (len(PHONES) - len(row))
        out[t] = [row.get(p, rest) for p in PHONES]
    return np.log(out)


def test_viseme_groups_put_bilabials_together_and_keep_the_others_alone():
    groups = [[PHONES[i] for i in g] for g in viseme_groups(PHONES)]
    assert ["B", "M"] in groups and ["SIL"] in groups and ["AA"] in groups and ["V"] in groups


def test_decode_sums_a_viseme_split_between_its_phones():
    """/b/ and /m/ at 0.3 each lose to /v/ at 0.35 phone by phone, but together the lips close: a bilabial,
    named by the phone with the larger mass over the segment (B)."""
    rows = [{"SIL": 0.9}] * 3 + [{"AA": 0.9}] * 4 + [{"B": 0.32, "M": 0.28, "V": 0.35}] * 3 + [{"AA": 0.9}] * 4
    phones = decode_phones(_log_probs(rows), PHONES, frame_rate=100.0)
    assert phones == [("sil", 0.0, 0.03), ("AA", 0.03, 0.07), ("B", 0.07, 0.1), ("AA", 0.1, 0.14)]
    frame_wise = [PHONES[i] for i in _log_probs(rows).argmax(axis=1)]
    assert frame_wise[7:10] == ["V"] * 3  # what a per-phone decision would have said


def test_viterbi_minimum_duration_and_switch_penalty():
    scores = np.log(np.array([[0.9, 0.1]] * 4 + [[0.2, 0.8]] + [[0.9, 0.1]] * 4))
    np.testing.assert_array_equal(viterbi_segments(scores, 1, 0.0), [0, 0, 0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(viterbi_segments(scores, 2, 0.0), [0] * 9)  # a 1-frame visit is too short
    np.testing.assert_array_equal(viterbi_segments(scores, 1, 5.0), [0] * 9)  # not worth two switches
    assert viterbi_segments(scores[:0], 3, 0.0).shape == (0,)
    np.testing.assert_array_equal(viterbi_segments(scores[4:5], 3, 0.0), [1])  # shorter than min_frames


def _face(synth_root):
    from motion.face.flame import FLAME
    from talk.synth.face import lip_pairs
    from talk.synth.writer import N_SHAPE

    face = FLAME(str(synth_root / "face_model.pkl"), n_shape=N_SHAPE, n_expression=11).eval()
    upper, lower = lip_pairs(synth_root / "FLAME_masks.pkl")
    return face, upper, lower


def _generator(face, blinks: bool = False):
    from talk.pipeline.phonetic import PhoneClassifier, PhoneticGenerator

    torch.manual_seed(0)
    return PhoneticGenerator(PhoneClassifier(42, hidden_dim=8, num_layers=1), SPHINX_PHONES,
                             n_expression=face.n_expression, blinks=blinks)  # fmt: skip


def test_articulated_bilabial_closes_the_lips_the_vowel_opens_them(synth_root):
    """Phones -> FLAME motion through the articulatory model and the calibrated contact: the lips meet on /b/
    and /m/ (lip-sync metric of talk.lipsync) and part on /aa/; a pause keeps the mouth still."""
    from talk.lipsync import evaluate_utterance
    from talk.synth.articulation import LipContact
    from talk.training.phonetic import calibrate_contact

    face, upper, lower = _face(synth_root)
    import pickle

    template = torch.from_numpy(pickle.load(open(synth_root / "templates.pkl", "rb"))["SYN_01_F"]).float()
    generator = _generator(face)
    press = calibrate_contact(face, template, upper, lower)
    assert press[0] == 0 and (press[1:] > 0).all()
    phones = [("sil", 0.0, 0.4), ("AA", 0.4, 0.6), ("B", 0.6, 0.68), ("AA", 0.68, 0.9), ("M", 0.9, 0.98),
              ("AA", 0.98, 1.2), ("sil", 1.2, 1.8)]  # fmt: skip
    from talk.pipeline.phonetic import CONTACT_JAW

    motion = generator.articulate(phones, 54, 30.0, LipContact(np.asarray(CONTACT_JAW), press.double().numpy()))
    assert motion.shape == (54, face.num_motion_params)
    vertices = (face.motion_offsets(motion.float()[None], template[None])[0] + template).numpy()
    report = evaluate_utterance(vertices, 30.0, phones, upper, lower, "constructed")
    assert report.bilabial_closed == (True, True)
    assert report.open_vowel_gap_mm > 5.0
    assert report.silence_gap_speed_mm_s < 0.5


def test_generator_batch_rows_follow_their_own_audio_and_calibrated_contact(synth_root):
    """generate() on features: each row decoded alone (padding changes nothing), zero motion past its frames,
    style ids pick each speaker's contact."""
    from audio.features import AudioFeatures
    from motion.lm import Sampling

    face, _, _ = _face(synth_root)
    generator = _generator(face).eval()
    generator.set_contact(torch.tensor([[0.0, 0.1, 0.2, 0.3, 0.4, 0.5]]))
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(2, 80, 43)).astype(np.float32))
    mask = torch.ones(2, 80, dtype=torch.bool)
    mask[1, 50:] = False
    x[1, 50:] = 0
    features = AudioFeatures(x=x, mask=mask, frame_rate=100.0)
    out = generator.generate(features, torch.tensor([24, 15]), torch.tensor([0, 0]), Sampling(temperature=0.0), 30.0)
    alone = generator.generate(AudioFeatures(x=x[1:, :50], mask=mask[1:, :50], frame_rate=100.0), torch.tensor([15]),
                               torch.tensor([0]), Sampling(temperature=0.0), 30.0)  # fmt: skip
    assert out.shape == (2, 24, face.num_motion_params)
    torch.testing.assert_close(out[1, :15], alone[0])
    assert out[1, 15:].abs().max() == 0
    with pytest.raises(ValueError, match="PhonePosteriors"):
        generator.logits(AudioFeatures(x=x[..., :10], mask=mask, frame_rate=100.0))


def test_phone_labels_to_frames(tmp_path):
    from talk.training.phonetic import PhoneLabelError, frame_labels

    lab = tmp_path / "a.lab"
    lab.write_text("0.00 0.05 sil\n0.05 0.08 B\n0.08 0.10 AA1\n")
    phones = ("SIL", "AA", "B")
    np.testing.assert_array_equal(frame_labels(lab, phones, 12).numpy(), [0] * 5 + [2] * 3 + [1] * 2 + [0] * 2)
    lab.write_text("0.00 0.05 sil\n0.05 0.08 ZH\n")
    with pytest.raises(PhoneLabelError, match="ZH"):
        frame_labels(lab, phones, 10)


def test_real_recording_closes_its_bilabials_with_the_untrained_classifier(synth_root):
    """CMU ARCTIC a0009 ("... sharply ... table"): the acoustic model's posteriors alone (an untrained classifier
    is the identity on them), decoded and articulated, close the lips on both labelled bilabials; the features are
    PhoneEncoder's frozen 100 Hz part."""
    import pickle

    from audio.io import load_audio
    from audio.phone_encoder import PhoneEncoder, PhonePosteriors
    from motion.lm import Sampling
    from talk.lipsync import evaluate_utterance
    from talk.synth.phones import read_lab
    from talk.training.phonetic import calibrate_contact
    from tests.talk.clitools import ROOT

    wav = torch.from_numpy(load_audio(ROOT / "assets" / "speech" / "arctic_a0009.wav", 16000))
    encoder = PhonePosteriors(memo=0)
    assert encoder.phones == SPHINX_PHONES
    features = encoder(wav[None])
    assert features.x.shape == (1, len(wav) // 160, 43) and features.frame_rate == 100.0
    n = len(wav) // 320
    torch.testing.assert_close(features.x[0, : 2 * n], PhoneEncoder(memo=0).frame_features(wav))

    face, upper, lower = _face(synth_root)
    template = torch.from_numpy(pickle.load(open(synth_root / "templates.pkl", "rb"))["SYN_01_F"]).float()
    generator = _generator(face).eval()
    generator.set_contact(calibrate_contact(face, template, upper, lower)[None])
    frames = round(len(wav) / 16000 * 30)
    motion = generator.generate(features, torch.tensor([frames]), torch.tensor([0]), Sampling(temperature=0.0), 30.0)
    vertices = (face.motion_offsets(motion.float(), template[None])[0] + template).numpy()
    labels = [(p.label, p.start, p.end) for p in read_lab(ROOT / "assets" / "speech" / "arctic_a0009_phone.lab")]
    report = evaluate_utterance(vertices, 30.0, labels, upper, lower, "arctic_a0009")
    assert report.bilabials == ("P", "B") and report.bilabial_closed == (True, True)
    assert report.gap_phone_corr > 0.4


def test_articulation_in_windows_equals_the_whole_utterance(synth_root):
    """Long audio is articulated in 10 s windows with the phones within 2 s: the same motion as one pass over
    all phones (frames x phones memory otherwise)."""
    from motion.face.procedural.face import EXPRESSION_NAMES
    from talk.synth.articulation import build_trajectory, draw_idle_motion, face_controls
    from talk.synth.phones import Phone, to_utterance

    face, _, _ = _face(synth_root)
    generator = _generator(face, blinks=True)
    rng = np.random.default_rng(0)
    labels = ["sil", "AA", "B", "IY", "M", "OW", "P", "S", "UW", "F"]
    phones, t = [], 0.0
    while t < 24.0:
        d = float(rng.uniform(0.05, 0.25))
        phones.append((labels[int(rng.integers(len(labels)))], t, t + d))
        t += d
    frames = int(t * 30)
    motion = generator.articulate(phones, frames, 30.0)
    utterance = to_utterance([Phone(*p) for p in phones], max(frames / 30, phones[-1][2]))
    trajectory = build_trajectory(utterance, generator.profile)
    idle = draw_idle_motion(np.random.default_rng(generator.idle_seed), generator.profile, utterance.duration)
    whole = face_controls(trajectory, idle, np.arange(frames) / 30.0, EXPRESSION_NAMES, face.n_expression)
    expected = np.concatenate([whole.expression, whole.jaw_pose], axis=1)
    assert motion.shape == expected.shape
    np.testing.assert_allclose(motion.numpy(), expected, atol=1e-12)
