"""Tests of the synthetic talking-face dataset generator (talk.synth)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from talk.synth.articulation import build_trajectory, lip_aperture
from talk.synth.phonemes import BILABIAL_CLOSURES, CHANNELS, INVENTORY, generate_utterance
from talk.synth.speakers import make_speaker
from talk.synth.voice import (
    _resonator_sos,
    formant_tracks,
    synthesize_voice,
    time_varying_resonator,
)

OPEN_VOWELS = ("AA", "AE", "AO")


def _utterances(n: int, seed: int = 0, speaker_index: int = 0):
    spk = make_speaker(seed, speaker_index)
    for k in range(n):
        utt = generate_utterance(np.random.default_rng([seed, k]), rate=spk.rate)
        yield spk, utt


def _closure_centres(utt, symbols=BILABIAL_CLOSURES) -> list[float]:
    return [0.5 * (s.start + s.release) for s in utt.segments if s.symbol in symbols]


def _vowel_centres(utt, symbols=OPEN_VOWELS) -> list[float]:
    return [0.5 * (s.start + s.end) for s in utt.segments if s.symbol in symbols]


def _rms(audio: np.ndarray, sr: int, t: float, half: float = 0.01) -> float:
    i0, i1 = int((t - half) * sr), int((t + half) * sr)
    return float(np.sqrt(np.mean(audio[i0:i1].astype(np.float64) ** 2)))


# ----------------------------------------------------------------------------------------------------------------
# Phonemes, articulation, voice (no face model needed)


def test_utterances_are_contiguous_and_in_range():
    for _, utt in _utterances(30):
        assert 1.5 - 1e-9 <= utt.duration <= 3.5 + 1e-9
        assert abs(utt.duration * 60 - round(utt.duration * 60)) < 1e-9  # whole number of 60 fps frames
        segs = utt.segments
        assert segs[0].symbol == "sil" and segs[-1].symbol == "sil"
        assert 0.15 - 1e-9 <= segs[0].end <= 0.4 + 1e-9
        assert 0.15 - 1e-9 <= segs[-1].end - segs[-1].start <= 0.4 + 1e-9
        assert segs[0].start == 0.0 and abs(segs[-1].end - utt.duration) < 1e-9
        for a, b in zip(segs[:-1], segs[1:], strict=True):
            assert abs(a.end - b.start) < 1e-12 and b.end > b.start
        assert all(s.symbol in INVENTORY for s in segs)
        assert sum(s.symbol in INVENTORY and INVENTORY[s.symbol].kind == "vowel" for s in segs) >= 3


def test_same_seed_same_utterance_and_speaker():
    a = generate_utterance(np.random.default_rng(7))
    b = generate_utterance(np.random.default_rng(7))
    c = generate_utterance(np.random.default_rng(8))
    assert a == b and a != c
    assert make_speaker(3, 1) == make_speaker(3, 1) and make_speaker(3, 1) != make_speaker(4, 1)
    female, male = make_speaker(0, 0), make_speaker(0, 1)
    assert (female.sex, male.sex) == ("F", "M") and female.name == "SYN_01_F" and male.name == "SYN_02_M"
    assert 180 <= female.f0 <= 230 and 100 <= male.f0 <= 130
    assert female.vocal_tract_scale < male.vocal_tract_scale


def test_bilabials_close_the_lips_and_open_vowels_open_the_jaw():
    n_closures = 0
    for spk, utt in _utterances(20):
        traj = build_trajectory(utt, spk)
        centres = _closure_centres(utt)
        n_closures += len(centres)
        if centres:
            v = traj(np.asarray(centres))
            assert np.all(traj.channel(v, "lip_closure") > 0.95)
            assert np.all(
                traj.channel(v, "jaw") < 0.07
            )  # the face keeps lips shut under press up to 0.08 rad
            assert np.all(lip_aperture(v) < 1e-3)
        vowels = _vowel_centres(utt)
        if vowels:
            v = traj(np.asarray(vowels))
            assert np.all(traj.channel(v, "jaw") > 0.1)
            assert np.all(lip_aperture(v) > 0.08)
        # Pauses at both ends: relaxed closed mouth.
        v = traj(np.asarray([0.05, utt.duration - 0.05]))
        assert np.all(np.abs(v[:, CHANNELS.index("jaw")]) < 0.01) and np.all(lip_aperture(v) < 0.01)
    assert n_closures >= 20  # the generator really produces bilabials


def test_trajectory_is_smooth():
    spk, utt = next(_utterances(1, seed=3))
    traj = build_trajectory(utt, spk)
    t = np.arange(0, utt.duration, 0.001)
    v = traj(t)
    jaw_speed = np.abs(np.diff(traj.channel(v, "jaw"))) / 0.001
    assert jaw_speed.max() < 5.0  # rad/s: no jumps
    assert np.abs(np.diff(traj.channel(v, "lip_closure"))).max() < 0.15  # per ms


def test_idle_motion_blinks_and_stays_in_range():
    from talk.synth.articulation import draw_idle_motion

    spk = make_speaker(0, 0)
    counts = [len(draw_idle_motion(np.random.default_rng(k), spk, 30.0).blink_times) for k in range(10)]
    assert 0.5 * spk.blink_rate < np.mean(counts) / 30.0 < 1.1 * spk.blink_rate  # Poisson-ish at the set rate
    idle = draw_idle_motion(np.random.default_rng(1), spk, 30.0)
    t = np.arange(0, 30.0, 1 / 600)
    v = idle(t)
    closed = v["blink_left"] > 0.5
    runs = np.diff(np.flatnonzero(np.diff(closed.astype(int))))[::2] / 600  # durations of lid-closed spans
    assert v["blink_left"].max() > 0.85 and 0.03 < np.median(runs) < 0.15
    for name in ("blink_left", "blink_right", "brow_raise", "brow_furrow", "smile"):
        assert -0.5 <= v[name].min() and v[name].max() <= 1.5


def test_time_varying_resonator_matches_lti_filter_when_constant():
    x = np.random.default_rng(0).standard_normal(4000)
    y = time_varying_resonator(x, np.full(50, 700.0), np.full(50, 80.0), 80, 16000)
    ref = signal.sosfilt(_resonator_sos(np.asarray([700.0]), np.asarray([80.0]), 16000), x)
    np.testing.assert_allclose(y, ref, atol=1e-9 * np.abs(ref).max())


def test_formants_follow_articulation():
    spk, utt = next(_utterances(1, seed=1))
    traj = build_trajectory(utt, spk)
    t = np.linspace(0, utt.duration, 400)
    v = traj(t)
    freqs, _ = formant_tracks(v, 1.0)
    assert np.corrcoef(traj.channel(v, "jaw"), freqs[:, 0])[0, 1] > 0.95  # jaw opening raises F1
    iy, uw = (np.asarray([[INVENTORY[s].target(c) for c in CHANNELS]]) for s in ("IY", "UW"))
    f_iy, f_uw = formant_tracks(iy, 1.0)[0][0], formant_tracks(uw, 1.0)[0][0]
    assert f_iy[1] > 2000 and f_uw[1] < 1000 and f_iy[2] > f_uw[2]  # spread front vs rounded back
    assert np.all(formant_tracks(iy, 0.85)[0] > f_iy)  # shorter tract -> higher formants


def test_voice_is_silent_at_p_b_closures_and_loud_on_open_vowels():
    for spk, utt in _utterances(6, seed=2, speaker_index=1):
        voice = synthesize_voice(utt, build_trajectory(utt, spk), spk, np.random.default_rng(0))
        sr, audio = voice.sample_rate, voice.audio
        assert len(audio) == round(utt.duration * sr) and audio.dtype == np.float32
        assert 0.45 < np.abs(audio).max() < 0.55
        loud = [_rms(audio, sr, t) for t in _vowel_centres(utt)]
        quiet = [_rms(audio, sr, t, 0.008) for t in _closure_centres(utt, ("P", "B"))]
        if loud:
            assert min(loud) > 0.03
        if quiet:
            assert max(quiet) < 3e-3  # < -40 dB re the vowels: only the recording noise floor
        assert _rms(audio, sr, 0.07, 0.05) < 1e-3  # leading silence


def test_fricatives_are_noisy_and_high():
    spk = make_speaker(0, 1)
    for k in range(40):
        utt = generate_utterance(np.random.default_rng([9, k]), rate=spk.rate)
        s_segs = [s for s in utt.segments if s.symbol == "S" and s.end - s.start > 0.06]
        vowels = [s for s in utt.segments if s.symbol in OPEN_VOWELS]
        if s_segs and vowels:
            break
    else:
        pytest.fail("no sentence with both /s/ and an open vowel")
    voice = synthesize_voice(utt, build_trajectory(utt, spk), spk, np.random.default_rng(0))

    def centroid(seg):
        mid = 0.5 * (seg.start + seg.end)
        x = voice.audio[int((mid - 0.02) * 16000) : int((mid + 0.02) * 16000)] * np.hanning(640)
        mag = np.abs(np.fft.rfft(x))
        return float((mag * np.fft.rfftfreq(640, 1 / 16000)).sum() / mag.sum())

    assert centroid(s_segs[0]) > 3500 and centroid(vowels[0]) < 2000


# ----------------------------------------------------------------------------------------------------------------
# Whole dataset (2 speakers x 2 sentences) through the face model


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from talk.synth import synthesize_dataset

    root = tmp_path_factory.mktemp("synth") / "a"
    summary = synthesize_dataset(root, speakers=2, sentences=2, seed=5, workers=1, progress=False)
    meta = json.loads((root / "synth_meta.json").read_text())
    with open(root / "templates.pkl", "rb") as fh:
        templates = pickle.load(fh, encoding="latin1")
    return root, summary, meta, templates


def _sequence(root: Path, rec: dict):
    audio, sr = sf.read(root / "wav" / f"{rec['name']}.wav", dtype="float32")
    verts = np.load(root / "vertices_npy" / f"{rec['name']}.npy")
    return audio, sr, verts


def test_dataset_layout_and_shapes(dataset):
    root, summary, meta, templates = dataset
    assert summary.subjects == ("SYN_01_F", "SYN_02_M") and summary.n_sequences == 4
    names = sorted(p.stem for p in (root / "wav").glob("*.wav"))
    assert names == [
        "SYN_01_F_sentence01",
        "SYN_01_F_sentence02",
        "SYN_02_M_sentence01",
        "SYN_02_M_sentence02",
    ]
    assert sorted(p.stem for p in (root / "vertices_npy").glob("*.npy")) == names
    for name in ("face_model.pkl", "FLAME_masks.pkl", "templates.pkl", "synth_meta.json"):
        assert (root / name).is_file()
    assert all(Path(f).is_file() for f in summary.files)
    assert summary.total_bytes == sum(Path(f).stat().st_size for f in summary.files)
    assert abs(summary.total_seconds - sum(r["duration"] for r in meta["sequences"])) < 1e-6
    assert meta["seed"] == 5 and [s["name"] for s in meta["speakers"]] == list(summary.subjects)
    n_vertices = next(iter(templates.values())).shape[0]
    for rec in meta["sequences"]:
        info = sf.info(str(root / "wav" / f"{rec['name']}.wav"))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        audio, sr, verts = _sequence(root, rec)
        assert verts.dtype == np.float32 and verts.shape == (round(rec["duration"] * 60), n_vertices * 3)
        assert 1.5 <= rec["duration"] <= 3.5
        assert abs(len(audio) / sr - len(verts) / 60) < 1 / 60  # audio and motion cover the same time
        assert np.abs(verts).max() < 0.3  # metres, a head-sized object
        assert rec["segments"][0][0] == "sil" and rec["phonemes"].startswith("sil ")


def test_subject_is_file_name_without_last_part(dataset):
    root, summary, _, templates = dataset
    for path in list((root / "wav").glob("*.wav")) + list((root / "vertices_npy").glob("*.npy")):
        subject, sentence = path.stem.rsplit("_", 1)
        assert subject in templates and subject in summary.subjects and sentence.startswith("sentence")
    assert set(templates) == set(summary.subjects)
    assert all(t.shape[1] == 3 and t.dtype in (np.float32, np.float64) for t in templates.values())


def test_jaw_only_face_matches_flame_forward(dataset):
    import torch

    from motion.face.flame import FLAME, FLAMEParams
    from talk.synth.face import JawFace

    flame = FLAME(str(dataset[0] / "face_model.pkl"), n_shape=20, n_expression=11)
    face = JawFace.from_flame(flame)
    rng = np.random.default_rng(0)
    shape, expr = rng.standard_normal(20), rng.uniform(-0.5, 1.5, (6, 11))
    jaw = np.concatenate([rng.uniform(0, 0.3, (6, 1)), rng.uniform(-0.05, 0.05, (6, 2))], axis=1)
    with torch.no_grad():
        ref = (
            flame(
                FLAMEParams(
                    shape=torch.tensor(shape, dtype=torch.float32)[None],
                    expression=torch.tensor(expr, dtype=torch.float32)[None],
                    jaw_pose=torch.tensor(jaw, dtype=torch.float32)[None],
                )
            )
            .vertices[0]
            .numpy()
        )
    ours = face(shape, expr, jaw)
    assert ours.shape == ref.shape and np.abs(ref - ref[0]).max() > 5e-3  # the frames really differ
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_templates_are_the_neutral_meshes(dataset):
    from motion.face.flame import FLAME, FLAMEParams

    root, _, meta, templates = dataset
    flame = FLAME(str(root / "face_model.pkl"), n_shape=20, n_expression=11)
    import torch

    for spk in meta["speakers"]:
        with torch.no_grad():
            neutral = flame(FLAMEParams(shape=torch.tensor([spk["shape"]], dtype=torch.float32))).vertices[
                0, 0
            ]
        np.testing.assert_allclose(templates[spk["name"]], neutral.numpy(), atol=1e-6)
    # Speakers differ in head shape; the first frame (leading silence, mouth at rest) stays near the template.
    a, b = templates["SYN_01_F"], templates["SYN_02_M"]
    assert np.abs(a - b).max() > 2e-3
    for rec in meta["sequences"]:
        first = _sequence(root, rec)[2][0].reshape(-1, 3)
        assert np.abs(first - templates[rec["subject"]]).max() < 6e-3


def test_mesh_lips_close_on_bilabials_and_open_on_vowels_in_sync_with_audio(dataset):
    from motion.face.flame_io import load_flame_masks

    root, _, meta, _ = dataset
    masks = load_flame_masks(root / "FLAME_masks.pkl")
    upper, lower = np.asarray(masks["lip_upper_edge"]), np.asarray(masks["lip_lower_edge"])
    mid = slice(len(upper) // 4, len(upper) - len(upper) // 4)
    closures = opens = 0
    for rec in meta["sequences"]:
        audio, sr, verts = _sequence(root, rec)
        v = verts.reshape(len(verts), -1, 3)
        gap = v[:, upper[mid], 1] - v[:, lower[mid], 1]  # vertical lip opening along the middle of the mouth
        assert np.abs(gap[0]).max() < 5e-4  # leading silence: lips together
        for symbol, start, end in rec["segments"]:
            if symbol in BILABIAL_CLOSURES:
                t = start + 0.35 * (end - start) if symbol in ("P", "B") else 0.5 * (start + end)
                assert np.abs(gap[int(round(t * 60))]).max() < 5e-4  # within 0.5 mm: touching, no overlap
                if symbol != "M":  # p/b closures are silent; m is hummed through the nose
                    assert _rms(audio, sr, t, 0.008) < 3e-3
                closures += 1
            if (
                symbol in INVENTORY
                and INVENTORY[symbol].kind == "vowel"
                and INVENTORY[symbol].target("jaw") > 0.15
            ):
                t = 0.5 * (start + end)
                assert gap[int(round(t * 60))].mean() > 5e-3 and _rms(audio, sr, t) > 0.03
                opens += 1
    assert closures >= 2 and opens >= 2


def test_same_seed_gives_identical_bytes_with_any_worker_count(dataset, tmp_path):
    from talk.synth.__main__ import main

    root = dataset[0]
    main([str(tmp_path / "b"), "--speakers", "2", "--sentences", "2", "--seed", "5", "--workers", "2"])
    other = tmp_path / "b"
    for sub, pattern in (("wav", "*.wav"), ("vertices_npy", "*.npy")):
        for path in (root / sub).glob(pattern):
            assert path.read_bytes() == (other / sub / path.name).read_bytes(), path.name
    assert (root / "templates.pkl").read_bytes() == (other / "templates.pkl").read_bytes()
    assert (root / "synth_meta.json").read_bytes() == (other / "synth_meta.json").read_bytes()


def test_different_seed_differs_and_bad_arguments_are_clear(dataset, tmp_path):
    from talk.synth import SynthesisError, synthesize_dataset

    s = synthesize_dataset(tmp_path / "c", speakers=1, sentences=1, seed=6, workers=1, progress=False)
    assert s.n_sequences == 1
    for sub in ("wav/SYN_01_F_sentence01.wav", "vertices_npy/SYN_01_F_sentence01.npy"):
        assert (tmp_path / "c" / sub).read_bytes() != (dataset[0] / sub).read_bytes()
    with pytest.raises(SynthesisError, match="sentences"):
        synthesize_dataset(tmp_path / "d", sentences=0, progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="out_dir"):
        synthesize_dataset(tmp_path / "file", progress=False)


def test_flame_parameter_files_decode_to_the_vertices_and_the_manifest_reads_them(dataset):
    import torch

    from motion.face.flame import FLAME, FLAMEParams
    from talk.data import ManifestDataModule

    root, summary, meta, _ = dataset
    flame = FLAME(str(root / "face_model.pkl"), n_shape=20, n_expression=11)
    rec = meta["sequences"][1]
    params = np.load(root / "flame" / f"{rec['name']}.npz")
    as_torch = {k: torch.from_numpy(params[k])[None] for k in ("shape", "expression", "jaw")}
    with torch.no_grad():
        decoded = flame(FLAMEParams(shape=as_torch["shape"], expression=as_torch["expression"],
                                    jaw_pose=as_torch["jaw"])).vertices[0]  # fmt: skip
    stored = np.load(root / "vertices_npy" / f"{rec['name']}.npy").reshape(decoded.shape)
    np.testing.assert_allclose(decoded.numpy(), stored, atol=1e-6)
    lines = [json.loads(line) for line in (root / "flame_manifest.jsonl").read_text().splitlines()]
    assert len(lines) == summary.n_sequences and {ln["fps"] for ln in lines} == {60}
    # 2 speakers: both are test speakers (the last two), none val or train
    assert {ln["split"] for ln in lines} == {"test"}
    dm = ManifestDataModule(str(root / "flame_manifest.jsonl"), fps=30, flame_model=str(root / "face_model.pkl"),
                            train_subjects=list(summary.subjects))  # fmt: skip
    dm.setup("test")
    sample = dm.datasets["test"][0]
    frames = sample.motion.shape[0]
    assert sample.expression.shape == (frames, 11) and sample.jaw.shape == (frames, 3)


def test_flame_manifest_splits_speakers_as_the_synthetic_configs_do():
    from talk.synth.writer import flame_manifest

    subjects = [f"SYN_{i:02d}" for i in range(1, 11)]
    records = [{"name": f"{s}_sentence01", "subject": s} for s in subjects]
    lines = [json.loads(line) for line in flame_manifest(records, subjects).splitlines()]
    split = {ln["subject"]: ln["split"] for ln in lines}
    assert [split[s] for s in subjects] == ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    assert lines[0]["audio"] == "wav/SYN_01_sentence01.wav"
    assert lines[0]["motion"] == "flame/SYN_01_sentence01.npz"


def test_arkit_and_bfm_files_decode_to_the_vertices_within_the_stated_tolerance(dataset):
    from scipy.io import loadmat

    from motion.face.bfm_io import load_bfm_mat
    from motion.face.blendshapes import ARKIT_NAMES
    from talk.data import ManifestDataModule

    root, summary, meta, templates = dataset
    assert meta["arkit_error_mm"]["mean"] < 0.1 and meta["arkit_error_mm"]["max"] < 5.0
    assert meta["bfm_error_mm"]["mean"] < 0.01 and meta["bfm_error_mm"]["max"] < 1.0
    raw = loadmat(root / "BFM_model_front.mat")  # the Deep3DFaceRecon layout: rows, 1-based indices
    n_v = next(iter(templates.values())).shape[0]
    assert raw["meanshape"].shape == (1, 3 * n_v) and raw["idBase"].shape == (3 * n_v, 80)
    assert raw["exBase"].shape == (3 * n_v, 64) and raw["texBase"].shape == (3 * n_v, 80)
    assert raw["tri"].min() == 1 and raw["keypoints"].shape == (1, 68)
    arrays = load_bfm_mat(root / "BFM_model_front.mat")
    with open(root / "face_model.pkl", "rb") as fh:
        v_template = np.asarray(pickle.load(fh, encoding="latin1")["v_template"])
    np.testing.assert_allclose(arrays.meanshape / 10.0, v_template, atol=1e-6)  # decimetres
    for kind, extra in (("arkit", {"rig": str(root / "arkit_rig.npz"), "templates": str(root / "templates.pkl")}),
                        ("bfm", {"bfm_model": str(root / "BFM_model_front.mat")})):  # fmt: skip
        lines = [json.loads(line) for line in (root / f"{kind}_manifest.jsonl").read_text().splitlines()]
        assert [ln["motion"] for ln in lines] == [f"{kind}/{r['name']}.npz" for r in meta["sequences"]]
        dm = ManifestDataModule(str(root / f"{kind}_manifest.jsonl"), fps=60, train_subjects=list(summary.subjects),
                                face_model_path=str(root / "face_model.pkl"), **extra)  # fmt: skip
        dm.setup("test")
        for sample in dm.datasets["test"]:
            stored = np.load(root / "vertices_npy" / f"{sample.name}.npy").reshape(-1, n_v, 3)
            offsets = (sample.motion - sample.template).numpy()
            err = np.linalg.norm(offsets - (stored - templates[sample.subject]), axis=-1) * 1000.0
            assert err.mean() < (0.1 if kind == "arkit" else 0.01) and err.max() < (
                5.0 if kind == "arkit" else 1.0
            )
            if kind == "arkit":
                assert sample.coefficients.min() >= 0 and sample.coefficients.max() <= 1
                jaw_open = sample.coefficients[:, ARKIT_NAMES.index("jawOpen")]
                assert jaw_open.max() > 0.05  # speech opens the jaw
