"""The flagship over ARKit-52 weights and over BFM expression coefficients: configs train, checkpoints are
self-contained, generated parameters decode through the face model (ARKit weights within [0, 1]), and `talk
animate --export-blendshapes` writes an ARKit model's own weights."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.talk.clitools import talk


def _generate(ckpt, synth_root):
    from talk.pipeline import Pipeline

    model = Pipeline.from_checkpoint(
        ckpt
    )  # refuses a config that names a file: the checkpoint holds the model
    wav, _ = sf.read(synth_root / "wav" / "SYN_10_M_sentence01.wav", dtype="float32")
    with torch.inference_mode():
        return model, model.generate(torch.from_numpy(wav))


@pytest.mark.parametrize(
    ("checkpoint", "kind", "width"), [("arkit_lm_ckpt", "arkit", 52), ("bfm_lm_ckpt", "bfm", 64)]
)
def test_generated_parameters_decode_through_the_face_model(checkpoint, kind, width, synth_root, request):
    from talk.pipeline.config import file_references

    ckpt = request.getfixturevalue(checkpoint)
    stored = torch.load(ckpt, weights_only=True, map_location="cpu")["talk_pipeline"]
    assert file_references(stored) == []  # sizes only: the rig / BFM buffers are in the state dict
    model, motion = _generate(ckpt, synth_root)
    assert model.face_model.motion_kind == kind
    params, vertices = motion.params, motion.vertices
    assert params.shape == (1, vertices.shape[1], width)
    template = model.require_assets().template(None)[None]
    expected = template[:, None] + model.face_model.motion_offsets(params, template)
    torch.testing.assert_close(vertices, expected, atol=1e-6, rtol=0)
    if kind == "arkit":  # clipped to the weights' range, as documented
        assert params.min() >= 0 and params.max() <= 1
        raw = model.generator.generate(
            model.features(torch.from_numpy(sf.read(synth_root / "wav" / "SYN_10_M_sentence01.wav",
                                                    dtype="float32")[0])[None], None),
            torch.tensor([vertices.shape[1]]), model.style_weights(None)[None], model.sampling, model.fps,
        )  # fmt: skip
        torch.testing.assert_close(params, raw.clamp(0, 1))


def test_an_arkit_model_exports_its_own_weights(arkit_lm_ckpt, synth_root, tmp_path):
    from motion.face.blendshapes.weights_io import read_live_link_csv

    wav = synth_root / "wav" / "SYN_10_M_sentence01.wav"
    talk("animate", "--audio", str(wav), "--checkpoint", str(arkit_lm_ckpt), "--output", str(tmp_path / "a.mp4"),
         "--size", "16", "--export-blendshapes", str(tmp_path / "w.csv"), cwd=tmp_path)  # fmt: skip
    model, motion = _generate(arkit_lm_ckpt, synth_root)
    written = read_live_link_csv(tmp_path / "w.csv", fps=model.fps).weights
    np.testing.assert_allclose(written, motion.params[0].numpy(), atol=1e-5)  # not re-solved from vertices


def test_export_glb_animates_an_avatar_with_an_arkit_models_own_weights(arkit_lm_ckpt, synth_root, tmp_path):
    from motion.face.blendshapes import ARKIT_NAMES
    from motion.face.blendshapes.gltf_animation import read_animation
    from tests.motion.face.blendshapes.gltf_builder import GltfBuilder

    b = GltfBuilder()  # a one-triangle avatar with three ARKit targets in other spellings
    position = b.accessor(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32))
    targets = [{"POSITION": b.accessor(np.full((3, 3), 0.01 * (k + 1), np.float32))} for k in range(3)]
    b.node(mesh=b.mesh("Face", [{"attributes": {"POSITION": position}, "targets": targets}],
                       ["JawOpen", "eyeBlink_L", "mouthSmile_R"]))  # fmt: skip
    avatar = b.write_glb(tmp_path / "avatar.glb")
    wav = synth_root / "wav" / "SYN_10_M_sentence01.wav"
    talk("export-glb", "--rig", str(avatar), "--audio", str(wav), "--checkpoint", str(arkit_lm_ckpt),
         "--output", str(tmp_path / "animated.glb"), cwd=tmp_path)  # fmt: skip
    (weights,) = read_animation(tmp_path / "animated.glb")[1].values()
    _, motion = _generate(arkit_lm_ckpt, synth_root)
    columns = [ARKIT_NAMES.index(n) for n in ("jawOpen", "eyeBlinkLeft", "mouthSmileRight")]
    np.testing.assert_allclose(weights, motion.params[0][:, columns].numpy(), atol=1e-6)
