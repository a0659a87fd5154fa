"""Lip-sync metrics on phone-labelled speech: every figure against a hand computation on constructed lip gaps."""

from __future__ import annotations

import json
import math
from typing import NamedTuple

import numpy as np
import pytest

from talk.errors import UserError
from talk.lipsync import (
    LipSyncError,
    LipSyncSettings,
    LipSyncWarning,
    aperture_target,
    evaluate_utterance,
    lip_gap,
)
from talk.lipsync_report import pool


class Phone(NamedTuple):
    label: str
    start: float
    end: float


def mouth(gap, pairs: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices ``[T, 2 * pairs, 3]`` whose every upper lip vertex sits ``gap[t]`` above its lower partner."""
    gap = np.asarray(gap, dtype=np.float64)
    v = np.zeros((len(gap), 2 * pairs, 3))
    v[:, :pairs, 0] = v[:, pairs:, 0] = np.arange(pairs)  # along the slit
    v[:, :pairs, 1] = gap[:, None]
    return v, np.arange(pairs), np.arange(pairs, 2 * pairs)


def score(gap, phones, fps: float = 10.0, name: str = "utt", **settings):
    v, up, lo = mouth(gap)
    return evaluate_utterance(
        v, fps, phones, up, lo, name, scale_to_mm=1.0, settings=LipSyncSettings(**settings)
    )


# fps 10: frame t covers [0.1 t, 0.1 t + 0.1). Open vowels peak at 10, 8, 12 mm -> reference (median) 10 mm,
# closure threshold 2.5 mm. P closes (1 mm), B stays at 5 mm, M reaches 3 mm in its own frame and 2 mm one frame
# later: closed only with the window widened by a frame.
PHONES = [
    Phone("sil", 0.0, 0.5),  # frames 0-4
    Phone("AA", 0.5, 0.8),  # 5-7
    Phone("P", 0.8, 1.0),  # 8-9
    Phone("AE", 1.0, 1.3),  # 10-12
    Phone("B", 1.3, 1.5),  # 13-14
    Phone("AO", 1.5, 1.8),  # 15-17
    Phone("M", 1.8, 1.9),  # 18
    Phone("sil", 1.9, 2.0),  # 19
]
GAP = [0, 0, 0, 0, 0, 6, 10, 6, 1, 1, 6, 8, 6, 5, 5, 6, 12, 6, 3, 2]


def test_lip_gap_is_the_mean_vertical_distance_over_the_middle_half_of_the_slit():
    v = np.zeros((2, 16, 3))
    v[:, :8, 1] = np.arange(8) + 1.0  # pair k opens by k + 1; the corners (k < 2, k > 5) are left out
    v[1, :8, 2] = 50.0  # depth does not count, only the vertical distance
    up, lo = np.arange(8), np.arange(8, 16)
    np.testing.assert_allclose(lip_gap(v, up, lo), [4.5, 4.5])  # mean of 3, 4, 5, 6
    np.testing.assert_allclose(lip_gap(v, up, lo, middle=1.0), [4.5, 4.5])  # mean of 1..8
    v[:, 0, 1] = 100.0
    np.testing.assert_allclose(lip_gap(v, up, lo), [4.5, 4.5])
    v[:, lo, 1] = 7.0  # lower lip above the upper one: pressed together, negative
    assert lip_gap(v, up, lo)[0] == pytest.approx(4.5 - 7.0)


def test_bilabial_closure_rate_and_per_bilabial_minimum():
    u = score(GAP, PHONES)
    assert u.bilabials == ("P", "B", "M")
    assert u.bilabial_min_gaps_mm == (1.0, 5.0, 2.0)  # P over frames 7-10, B 12-15, M 17-19
    assert u.open_vowel_gaps_mm == (10.0, 8.0, 12.0) and u.open_vowel_gap_mm == 10.0
    assert u.bilabial_closed == (True, False, True)
    assert u.bilabial_closure_rate == pytest.approx(2 / 3)
    narrow = score(GAP, PHONES, widen_frames=0)
    assert narrow.bilabial_min_gaps_mm == (1.0, 5.0, 3.0) and narrow.bilabial_closure_rate == pytest.approx(
        1 / 3
    )
    assert score(GAP, PHONES, closure_fraction=0.55).bilabial_closure_rate == 1.0  # threshold 5.5 mm


def test_a_phone_overlaps_every_frame_its_interval_intersects():
    gap = [5.0, 5.0, 1.0, 5.0, 5.0]  # the closure is in frame 2, [0.2, 0.3)
    phones = [Phone("AA", 0.0, 0.1), Phone("P", 0.15, 0.21), Phone("AA", 0.4, 0.5)]
    assert score(gap, phones, widen_frames=0).bilabial_min_gaps_mm == (1.0,)  # frames 1 and 2
    phones[1] = Phone("P", 0.1, 0.2)  # exactly frame 1: frame 2 is not touched
    assert score(gap, phones, widen_frames=0).bilabial_min_gaps_mm == (5.0,)


def test_gap_ratio_with_its_floor():
    u = score(GAP, PHONES)
    assert u.gap_ratio == pytest.approx(np.mean([10, 8, 12]) / np.mean([1, 5, 2]))
    closed = np.asarray(GAP, dtype=float)
    closed[[8, 9, 13, 14, 18]] = 0.0
    closed[[7, 10, 12, 15, 17, 19]] = 0.0  # every bilabial window reaches 0: the 0.5 mm floor applies
    assert score(closed, PHONES).gap_ratio == pytest.approx(10.0 / 0.5)
    assert score(closed, PHONES, gap_floor_mm=2.0).gap_ratio == pytest.approx(10.0 / 2.0)


def test_aperture_target_by_hand():
    phones = [Phone("sil", 0.0, 0.2), Phone("AA", 0.2, 0.4), Phone("IY", 0.5, 0.6), Phone("F", 0.6, 0.7)]
    raw = aperture_target(phones, 8, 10.0, smooth_s=0.0)
    np.testing.assert_allclose(raw, [0, 0, 1, 1, 0, 0.35, 0.1, 0])  # 0.4-0.5 and past 0.7 are uncovered
    smooth = aperture_target(phones, 8, 10.0, smooth_s=0.3)  # 3 frames: weights 1/4, 1/2, 1/4
    padded = np.concatenate([[0.0], raw, [0.0]])
    np.testing.assert_allclose(smooth, 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:])
    # the default 0.1 s window at 30 fps is the same three taps
    at30 = [Phone("sil", 0.0, 0.1), Phone("AA", 0.1, 0.2)]
    np.testing.assert_allclose(aperture_target(at30, 6, 30.0), [0, 0, 0.25, 0.75, 1, 1])


def test_gap_phone_correlation_is_pearson_over_the_labelled_frames():
    gap = np.asarray(GAP, dtype=float) + np.sin(np.arange(20))
    target = aperture_target(PHONES, 20, 10.0, smooth_s=0.3)
    u = score(gap, PHONES, aperture_smooth_s=0.3)
    dx, dy = gap - gap.mean(), target - target.mean()
    assert u.gap_phone_corr == pytest.approx((dx * dy).sum() / np.sqrt((dx * dx).sum() * (dy * dy).sum()))
    # frames whose centre lies outside the labelled span (here the last five) are left out
    late = PHONES[:4]  # labels up to 1.3 s: frames 0-12
    gap25 = np.concatenate([gap, np.full(5, 100.0)])
    target = aperture_target(late, 25, 10.0)[:13]
    assert score(gap25, late).gap_phone_corr == pytest.approx(np.corrcoef(gap25[:13], target)[0, 1])
    assert math.isnan(score(np.ones(20), PHONES).gap_phone_corr)  # a still mouth has no correlation


def test_still_silence_and_a_sinusoid_have_their_analytic_speeds():
    fps, amp, freq = 1000.0, 3.0, 2.5
    frame = np.arange(2000)
    gap = amp * np.cos(2 * np.pi * freq * (frame - 100) / fps)  # extremes at frames 100, 300, ..., 1900
    phones = [Phone("sil", 0.0, 2.001)]  # trimmed to [0.1, 1.901): frames 100..1900, nine half-periods
    u = score(gap, phones, fps=fps)
    assert u.silence_steps == 1800
    assert u.silence_gap_speed_mm_s == pytest.approx(4 * amp * freq, rel=1e-12)  # mean |A w sin(w t)| = 4 A f
    assert u.silence_lip_speed_mm_s == pytest.approx(2 * amp * freq, rel=1e-12)  # the lower lip is still
    assert math.isnan(u.speech_gap_speed_mm_s) and u.speech_steps == 0
    still = score(np.full(2000, 4.0), phones, fps=fps)
    assert still.silence_gap_speed_mm_s == 0.0 and still.silence_lip_speed_mm_s == 0.0


def test_silence_transitions_and_short_pauses_are_left_out():
    fps = 100.0
    gap = np.zeros(200)
    gap[:10] = np.arange(10)  # moves only in the first 100 ms of the pause: a transition
    gap[150:] = np.linspace(0, 10, 50)  # speech opens the mouth at 0.2 mm per frame = 20 mm/s
    phones = [Phone("sil", 0.0, 0.4), Phone("AA", 0.4, 1.2), Phone("sil", 1.2, 1.5), Phone("AA", 1.5, 2.0)]
    u = score(gap, phones, fps=fps)
    assert (
        u.silence_steps == 19 and u.silence_gap_speed_mm_s == 0.0
    )  # frames 10..29; the 0.3 s pause is too short
    assert u.speech_steps == 79 + 49  # the two speech runs are not joined across the pause
    assert u.speech_gap_speed_mm_s == pytest.approx(10 / 49 * fps * 49 / 128)  # 49 of 128 steps at 10/49 mm
    speed = np.abs(np.diff(gap)) * fps
    inside = np.r_[np.arange(40, 119), np.arange(150, 199)]
    assert u.speech_gap_speed_mm_s == pytest.approx(speed[inside].mean())
    assert u.gap_speed_ratio == 0.0


def test_pooled_rates_weight_each_bilabial_and_speeds_weight_time():
    a = score(GAP, PHONES, name="a")  # 2 of 3 closed
    b_phones = [Phone("AA", 0.0, 0.3), Phone("M", 0.3, 0.4), Phone("AA", 0.4, 0.6)]
    b = score([8, 8, 8, 8, 8, 8], b_phones, name="b")  # 0 of 1 closed
    report = pool([a, b])
    assert (report.bilabials, report.bilabials_judged, report.bilabials_closed) == (4, 4, 2)
    assert report.bilabial_closure_rate == 0.5  # not the mean of 2/3 and 0
    vowels, mins = [10, 8, 12, 8, 8], [1, 5, 2, 8]
    assert report.open_vowel_gap_mm == pytest.approx(np.mean(vowels))
    assert report.gap_ratio == pytest.approx(np.mean(vowels) / np.mean(mins))
    assert report.gap_phone_corr == pytest.approx(a.gap_phone_corr)  # b's constant gap has no correlation
    assert report.gap_phone_corr_utterances == 1

    fast = score(np.r_[np.zeros(2), np.arange(10.0) % 2], [Phone("sil", 0.0, 1.2)], name="c")
    slow = score(np.zeros(30), [Phone("sil", 0.0, 3.0)], name="d")
    both = pool([fast, slow])
    assert both.silence_s == pytest.approx((fast.silence_steps + slow.silence_steps) / 10)
    assert both.silence_gap_speed_mm_s == pytest.approx(
        fast.silence_gap_speed_mm_s * fast.silence_steps / (fast.silence_steps + slow.silence_steps)
    )


def test_an_utterance_without_open_vowels_warns_and_is_not_judged():
    phones = [Phone("IY", 0.0, 0.3), Phone("M", 0.3, 0.4), Phone("IY", 0.4, 0.6)]
    with pytest.warns(LipSyncWarning, match="no open vowel"):
        u = score([4, 4, 4, 0, 4, 4], phones)
    assert math.isnan(u.bilabial_closure_rate) and math.isnan(u.gap_ratio) and u.bilabial_closed == ()
    assert u.bilabial_min_gaps_mm == (0.0,)
    report = pool([u, score(GAP, PHONES)])
    assert (report.bilabials, report.bilabials_judged) == (4, 3)
    assert report.bilabial_closure_rate == pytest.approx(2 / 3)
    assert report.bilabial_min_gap_mm == pytest.approx(np.mean([0, 1, 5, 2]))


def test_report_as_dict_is_json_with_units_in_the_keys():
    d = pool([score(np.ones(20), PHONES)]).as_dict()
    for key in ("bilabial_closure_rate", "gap_ratio", "gap_phone_corr", "silence_gap_speed_mm_s",
                "silence_speech_lip_speed_ratio", "open_vowel_gap_mm", "closure_fraction", "gap_floor_mm"):  # fmt: skip
        assert key in d
    assert (
        d["gap_phone_corr"] is None and d["silence_gap_speed_mm_s"] == 0.0
    )  # NaN (still mouth) becomes null
    assert json.loads(json.dumps(d, allow_nan=False)) == d


def test_metres_are_reported_in_millimetres():
    v, up, lo = mouth(np.asarray(GAP) / 1000.0)
    u = evaluate_utterance(v, 10.0, PHONES, up, lo, "m")
    assert u.bilabial_min_gaps_mm == pytest.approx((1.0, 5.0, 2.0))
    assert u.bilabial_closure_rate == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("phones", "match"),
    [
        ([], "empty"),
        ([Phone("AA", 0.0, 2.11)], "more than a frame after"),  # 20 frames at 10 fps: 2.1 s allowed
        ([Phone("AA1", 0.0, 1.0)], "stress"),
        ([Phone("sp", 0.0, 1.0)], "'sil'"),
        ([Phone("AA", 0.5, 0.2)], "start <= end"),
        ([Phone("AA", -0.1, 0.2)], "start <= end"),
    ],
)
def test_bad_phones_are_one_line_user_errors(phones, match):
    with pytest.raises(LipSyncError, match=match) as err:
        score(GAP, phones)
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)


def test_phones_may_end_within_a_frame_of_the_animation():
    assert score(GAP, [*PHONES[:-1], Phone("sil", 1.9, 2.1)]).bilabial_closure_rate == pytest.approx(2 / 3)


def test_other_bad_inputs_are_user_errors():
    v, up, lo = mouth(GAP)
    for call in (
        lambda: evaluate_utterance(v[0], 10.0, PHONES, up, lo, "x"),
        lambda: evaluate_utterance(v, 0.0, PHONES, up, lo, "x"),
        lambda: evaluate_utterance(v, 10.0, PHONES, up, lo[:1], "x"),
        lambda: evaluate_utterance(v, 10.0, PHONES, up, lo + 10, "x"),
        lambda: pool([]),
        lambda: pool([score(GAP, PHONES), score(GAP, PHONES, closure_fraction=0.5)]),
        lambda: LipSyncSettings(gap_middle=0.0),
        lambda: LipSyncSettings(silence_margin_s=0.2),
        lambda: LipSyncSettings(gap_floor_mm=0.0),
    ):
        with pytest.raises(UserError) as err:
            call()
        assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def procedural(tmp_path_factory):
    from motion.face.procedural.face import write_procedural_face
    from talk.synth.face import lip_pairs, load_face

    paths = write_procedural_face(tmp_path_factory.mktemp("face"), seed=0)
    return load_face(paths.model, n_shape=40), lip_pairs(paths.masks)


def test_procedural_face_closed_mouth_has_zero_gap_and_closes_every_bilabial(procedural):
    face, (upper, lower) = procedural
    jaw = np.zeros((20, 3))
    jaw[[5, 6, 7, 10, 11, 12, 15, 16, 17], 0] = 0.2  # open on the vowels, at rest elsewhere
    verts = face(np.zeros(40), np.zeros((20, face.n_expression)), jaw)
    gap = lip_gap(verts, upper, lower)
    np.testing.assert_allclose(gap[jaw[:, 0] == 0], 0.0, atol=1e-7)
    assert gap.max() > 0.005  # metres: a jaw of 0.2 rad opens the lips by several millimetres
    u = evaluate_utterance(verts, 10.0, PHONES, upper, lower, "procedural")
    assert u.bilabial_closure_rate == 1.0 and max(u.bilabial_min_gaps_mm) < 1e-4
    assert u.gap_ratio == pytest.approx(gap.max() * 1000 / 0.5, rel=1e-6)
    assert u.gap_phone_corr > 0.8
