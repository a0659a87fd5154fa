"""`talk animate --portrait`: a real photo fitted, animated by a motion model, warped and completed by the
portrait generator, written at the photo's size with the speech; one-line errors for what is missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.talk.clitools import talk

PHOTO = Path(__import__("matplotlib").get_data_path()) / "sample_data" / "grace_hopper.jpg"  # test-only asset


@pytest.fixture(scope="module")
def generator_ckpt(tmp_path_factory) -> Path:
    """A randomly initialised small generator in the layout `talk fit` writes (its last layer non-zero, so that
    it changes the warped portrait)."""
    from render.generator import PortraitGenerator

    torch.manual_seed(0)
    net = PortraitGenerator(channels=(8, 16))
    torch.nn.init.normal_(net.head[-1].weight, std=0.05)
    path = tmp_path_factory.mktemp("portrait") / "generator.ckpt"
    torch.save(
        {
            "state_dict": {f"generator.{k}": v for k, v in net.state_dict().items()},
            "hyper_parameters": {"generator": {"class_path": "render.generator.PortraitGenerator",
                                               "init_args": {"channels": [8, 16]}}},
            "datamodule_hyper_parameters": {"size": 64},
        },
        path,
    )  # fmt: skip
    return path


def test_load_portrait_generator_rebuilds_the_trained_network(generator_ckpt):
    from talk.pipeline.portrait import load_portrait_generator

    net, size = load_portrait_generator(generator_ckpt)
    assert size == 64 and net.channels == (8, 16) and not net.training
    saved = torch.load(generator_ckpt, weights_only=True)["state_dict"]
    torch.testing.assert_close(net.head[-1].weight, saved["generator.head.2.weight"])


def test_animate_portrait_writes_the_photo_talking(lm_ckpt, generator_ckpt, synth_root, tmp_path):
    from PIL import Image

    from render.probe import probe_video

    wav, sr = sf.read(synth_root / "wav" / "SYN_10_M_sentence01.wav", dtype="float32")
    sf.write(tmp_path / "speech.wav", wav[:sr], sr)  # one second
    out = tmp_path / "portrait.mp4"
    result = talk("animate", "--audio", str(tmp_path / "speech.wav"), "--checkpoint", str(lm_ckpt), "--output",
                  str(out), "--portrait", str(PHOTO), "--portrait-generator", str(generator_ckpt), cwd=tmp_path)  # fmt: skip
    assert "wrote" in result.stdout
    info = probe_video(out)
    w, h = Image.open(PHOTO).size
    assert (info.width, info.height) == (w // 2 * 2, h // 2 * 2) and info.n_frames == 30
    assert info.audio_codec == "aac" and info.audio_duration == pytest.approx(1.0, abs=0.05)
    talk("animate", "--audio", str(tmp_path / "speech.wav"), "--checkpoint", str(lm_ckpt), "--output", str(out),
         "--portrait", str(PHOTO), "--portrait-generator", str(generator_ckpt), "--side-by-side", "true",
         "--overwrite", "true", cwd=tmp_path)  # fmt: skip
    wide = probe_video(out)
    assert (wide.width, wide.height) == ((w + h) // 2 * 2, h // 2 * 2) and wide.n_frames == 30


def test_portrait_frames_change_the_face_and_keep_the_background(lm_ckpt, generator_ckpt, synth_root):
    from talk.pipeline import Pipeline
    from talk.pipeline.portrait import PortraitAnimator, load_portrait_generator

    net, size = load_portrait_generator(generator_ckpt)
    animator = PortraitAnimator.from_photo(PHOTO, net, size)
    x0, y0, side = animator.fit.box
    assert side > 100 and animator.fit.residual_px < 5.0  # a face-sized crop around a well-fitted head
    model = Pipeline.from_checkpoint(lm_ckpt)
    wav = torch.from_numpy(sf.read(synth_root / "wav" / "SYN_10_M_sentence01.wav", dtype="float32")[0][:8000])
    frames = list(animator.frames(model.generate_pieces(wav, template=animator.fit.neutral)))
    assert len(frames) == 15 and frames[0].shape == animator.fit.photo.shape
    photo = animator.fit.photo.astype(np.int16)
    outside = np.ones(photo.shape[:2], bool)
    outside[max(y0, 0) : y0 + side, max(x0, 0) : x0 + side] = False
    assert (
        np.abs(frames[5].astype(np.int16) - photo)[outside].max() == 0
    )  # the photo, untouched, outside the crop
    inside = np.abs(frames[5].astype(np.int16) - photo)[~outside]
    assert inside.mean() > 0.5  # the generator (and the mouth) changed the face
    # no motion gives the photo back, at its own resolution (the fitted face is the template; the crop is warped
    # at the photo's resolution and only the generator's correction is upsampled)
    from render.portrait_inputs import portrait_inputs

    fit = animator.fit
    x = portrait_inputs(fit.reference, fit.source, animator.posed(fit.neutral[None])[0], animator.faces,
                        animator.mouth_faces, fit.camera)  # fmt: skip
    assert x["flow"].abs().max() < 1e-3  # the fitted face posed is the fitted mesh: the identity warp
    crop = animator.full_resolution(x["warped"], x["warped"], x["flow"])  # a generator that adds nothing
    assert crop.shape[-1] == side and (crop - animator._crop).abs().max() < 2e-3  # the photo's own pixels
    wide = PortraitAnimator(animator.fit, net, animator.mouth, animator.faces, animator.mouth_faces, side_by_side=True)
    mesh = animator.posed(model.generate(wav[:1600], template=animator.fit.neutral).vertices[0, :1])[0]
    frame = wide.frame(mesh)
    h, w = photo.shape[:2]
    assert frame.shape == (h, w + h, 3) and np.array_equal(frame[:, :w], animator.frame(mesh))
    panel = frame[:, w:].astype(np.int16)
    assert (panel < 250).any(axis=2).mean() > 0.1  # the shaded head fills part of the panel


def test_portrait_errors_are_one_line(lm_ckpt, generator_ckpt, tmp_path):
    base = ["animate", "--audio", "x.wav", "--checkpoint", str(lm_ckpt), "--output", str(tmp_path / "o.mp4")]
    sf.write(tmp_path / "x.wav", np.zeros(1600, np.float32), 16000)
    for extra, message in (
        (["--portrait", str(PHOTO)], "--portrait needs --portrait-generator"),
        (
            ["--portrait", "nope.jpg", "--portrait-generator", str(generator_ckpt)],
            "--portrait nope.jpg not found",
        ),
        (["--portrait-generator", str(generator_ckpt)], "--portrait-generator needs --portrait"),
        (["--side-by-side", "true"], "--side-by-side needs --portrait"),
    ):
        proc = talk(*base, *extra, cwd=tmp_path, check=False)
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr
