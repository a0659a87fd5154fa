"""Tracking talking videos: the closed-form landmark rig and its Jacobian, fit_sequence's recovery of known motion,
and `talk track` end to end on rendered clips (round trip against the truth, resume, bad input, `talk fit`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from motion.face.flame import FLAME, FLAMEParams
from motion.face.procedural.face import mediapipe_embedding_path, write_procedural_face
from talk.cli.main import main
from talk.synth.video import render_talking_video
from talk.track.embedding import surface_points
from talk.track.fit import _LandmarkRig
from talk.track.fit_video import fit_sequence
from tests.talk.clitools import ROOT, talk
from tests.talk.track.test_detect import requires_models

pytestmark = pytest.mark.usefixtures("one_thread")
FPS, SIZE = 25, 160


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    paths = write_procedural_face(tmp_path_factory.mktemp("face"))
    model = FLAME(
        str(paths.model), n_shape=20, n_expression=11, landmark_embedding_path=str(mediapipe_embedding_path())
    )
    return paths, model


def _motion(n: int, seed: int) -> dict[str, np.ndarray]:
    """Smooth known motion: jaw opening and a few expressions as slow sinusoids."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FPS
    expression = np.zeros((n, 11), np.float32)
    for k in (0, 2, 3, 8):
        expression[:, k] = 0.4 * (1 + np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * t + rng.uniform(0, 6))) / 2
    jaw = np.zeros((n, 3), np.float32)
    jaw[:, 0] = 0.12 * (1 + np.sin(2 * np.pi * 2.0 * t + rng.uniform(0, 6))) / 2
    return {"expression": expression, "jaw": jaw, "shape": (0.5 * rng.standard_normal(20)).astype(np.float32)}


def test_closed_form_rig_and_jacobian_match_the_model_and_autograd(face):
    _, model = face
    model = model.double()
    try:
        rig = _LandmarkRig(model)
        assert rig.closed_form
        g = torch.Generator().manual_seed(0)
        n, f64 = 4, torch.float64
        shape = torch.randn(1, 20, generator=g, dtype=f64)
        e, j = (
            0.3 * torch.randn(n, 11, generator=g, dtype=f64),
            0.2 * torch.randn(n, 3, generator=g, dtype=f64),
        )
        r, t = 0.4 * torch.randn(n, 3, generator=g, dtype=f64), torch.randn(n, 3, generator=g, dtype=f64)
        r[0] = 0.0  # the rotation derivative's zero-angle branch
        full = model(
            FLAMEParams(
                shape=shape, expression=e[None], jaw_pose=j[None], global_pose=r[None], translation=t[None]
            )
        )
        expected = surface_points(full.vertices[0], model.faces, model.lmk_faces_idx, model.lmk_bary_coords)
        points, jac, jac_shape = rig.landmarks_jacobian(shape, e, j, r, t, with_shape=True)
        assert torch.allclose(points, expected, atol=1e-6)
        assert torch.allclose(rig.landmarks(shape, e, j, r, t), points, atol=1e-12)
        state = torch.cat([e, j, r, t], 1)
        auto = torch.autograd.functional.jacobian(
            lambda s: rig.landmarks(shape, s[:, :11], s[:, 11:14], s[:, 14:17], s[:, 17:]),
            state,
            vectorize=True,
            strategy="forward-mode",
        )
        auto = torch.stack([auto[i, :, :, i] for i in range(n)])
        assert torch.allclose(jac, auto, atol=1e-9)
        auto_shape = torch.autograd.functional.jacobian(
            lambda s: rig.landmarks(s, e, j, r, t), shape, vectorize=True, strategy="forward-mode"
        )[:, :, :, 0]
        assert torch.allclose(jac_shape, auto_shape, atol=1e-9)
    finally:
        model.float()


def test_fit_sequence_recovers_known_motion_across_missing_frames(face):
    _, model = face
    n = 40
    p = _motion(n, seed=1)
    t = np.arange(n) / FPS
    rot = np.stack(
        [0.1 * np.sin(2 * np.pi * 0.5 * t), 0.2 * np.sin(2 * np.pi * 0.3 * t), 0.05 * np.cos(t)], 1
    )
    trans = np.stack([0.01 * np.sin(t), 0.005 * np.cos(t), -0.6 + 0.02 * np.sin(t)], 1)
    params = FLAMEParams(
        shape=torch.from_numpy(p["shape"])[None], expression=torch.from_numpy(p["expression"])[None],
        jaw_pose=torch.from_numpy(p["jaw"])[None], global_pose=torch.tensor(rot, dtype=torch.float32)[None],
        translation=torch.tensor(trans, dtype=torch.float32)[None],
    )  # fmt: skip
    with torch.no_grad():
        pts = surface_points(
            model(params).vertices[0], model.faces, model.lmk_faces_idx, model.lmk_bary_coords
        )
    f = 1.2 * 256
    uv = torch.stack([128 + f * pts[..., 0] / -pts[..., 2], 128 - f * pts[..., 1] / -pts[..., 2]], -1).numpy()
    valid = np.ones(n, bool)
    valid[10:13] = False  # no face in three frames: smoothness carries the motion across
    uv[~valid] = 0.0
    weak = {"shape_weight": 1e-9, "expression_weight": 1e-9, "jaw_weight": 1e-9, "smooth_weight": 1e-7}
    fit = fit_sequence(uv, valid, model, (256, 256), iterations=20, identity_iterations=30, **weak)
    assert fit.mean_residual_px < 0.02
    assert np.abs(fit.jaw - p["jaw"])[valid].max() < 2e-3
    assert np.abs(fit.expression - p["expression"])[valid].max() < 0.02
    assert np.abs(fit.rotation - rot)[valid].max() < 2e-3
    assert np.abs(fit.jaw - p["jaw"])[~valid].max() < 0.03  # interpolated, not lost
    assert np.isnan(fit.residual_px[~valid]).all()


@pytest.fixture(scope="module")
def clips(face, tmp_path_factory):
    """Two 1.2 s rendered talking clips with known motion (a train and a val speaker folder)."""
    paths, _ = face
    root = tmp_path_factory.mktemp("videos")
    n = 30
    speech = (0.2 * np.sin(2 * np.pi * 180 * np.arange(int(16000 * n / FPS)) / 16000)).astype(np.float32)
    sf.write(root / "speech.wav", speech, 16000)
    truths = {}
    for k, name in enumerate(("alice/a01", "bob/b01")):
        (root / "videos" / name).parent.mkdir(parents=True, exist_ok=True)
        p = _motion(n, seed=10 + k)
        truths[name.split("/")[1]] = (p, render_talking_video(
            root / "videos" / f"{name}.mp4", root / "speech.wav", p, FPS, paths.model, size=SIZE, seed=k, chunk=15
        ))  # fmt: skip
    return root, truths


@requires_models
def test_talk_track_round_trip_resume_and_fit(clips, capsys, tmp_path):
    root, truths = clips
    out = tmp_path / "tracked"
    main(
        [
            "track",
            str(root / "videos" / "alice"),
            "--out",
            str(out),
            "--split",
            "train",
            "--progress",
            "false",
        ]
    )
    main(["track", str(root / "videos"), "--out", str(out), "--split", "val", "--progress", "false"])
    printed = capsys.readouterr().out
    assert "tracked 1 videos, 1 already done" in printed  # alice was not tracked again
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [(x["name"], x["subject"], x["split"], x["fps"]) for x in lines] == [
        ("a01", "a01", "train", FPS), ("b01", "bob", "val", FPS),
    ]  # fmt: skip
    for name, (truth_params, truth) in truths.items():
        npz = dict(np.load(out / "flame" / f"{name}.npz"))
        assert set(npz) == {
            "shape",
            "expression",
            "jaw",
            "head_rotation",
            "head_translation",
            "focal",
            "image_size",
        }
        assert npz["expression"].shape == (30, 11) and npz["image_size"].tolist() == [SIZE, SIZE]
        wav, rate = sf.read(out / "wav" / f"{name}.wav")
        assert rate == 16000 and abs(len(wav) - 16000 * 30 / FPS) < 400
        assert (out / "preview" / f"{name}.mp4").stat().st_size > 1000
        record = json.loads((out / "tracks" / f"{name}.json").read_text())
        assert record["detection_rate"] == 1.0 and record["normalized_residual"] < 0.05
        # round trip: the jaw opening follows the rendered one
        jaw = truth_params["jaw"][:, 0]
        assert np.corrcoef(npz["jaw"][:, 0], jaw)[0, 1] > 0.8, name
        assert np.abs(npz["jaw"][:, 0] - jaw).mean() < 0.04
        rot_err = np.degrees(np.abs(npz["head_rotation"] - truth.global_pose).mean())
        assert rot_err < 6.0
    run = tmp_path / "run"
    talk(
        "fit", "-c", str(ROOT / "experiments" / "synthetic" / "flame_tokenizer.yaml"),
        f"--data.manifest={out / 'manifest.jsonl'}", f"--data.flame_model={out / 'face_model.pkl'}",
        f"--model.init_args.face_model.init_args.model_path={out / 'face_model.pkl'}", "--data.train_subjects=[a01]",
        "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={run}", "--trainer.logger=false", cwd=tmp_path,
    )  # fmt: skip


@requires_models
def test_talk_track_bad_input_is_one_line(clips, tmp_path, capsys):
    root, _ = clips
    silent = tmp_path / "silent.mp4"
    from render import VideoWriter

    with VideoWriter(silent, fps=FPS) as writer:
        writer.write(np.full((5, 64, 64, 3), 90, np.uint8))
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video" * 100)
    faceless = tmp_path / "faceless.mp4"
    with VideoWriter(faceless, fps=FPS, audio=root / "speech.wav") as writer:
        writer.write(np.full((8, 96, 96, 3), 120, np.uint8))
    for path, words in (
        (silent, "no audio track"),
        (corrupt, "not a readable video"),
        (faceless, "a face was found in 0 of 8"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(["track", str(path), "--out", str(tmp_path / "out"), "--progress", "false"])
        assert exc.value.code != 0
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and str(path) in err, err
