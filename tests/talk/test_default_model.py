"""The model that ships with talk (talk/pretrained/default.pt): loads without Lightning or the training data,
closes the lips on real speech it never heard, and drives `talk animate --audio X` with no other argument."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.talk.clitools import ROOT, talk

SPEECH = ROOT / "assets" / "speech" / "arctic_a0009.wav"


def test_default_model_is_small_self_contained_and_lightning_free(tmp_path):
    from talk.pretrained import DEFAULT_MODEL

    assert DEFAULT_MODEL.is_file() and DEFAULT_MODEL.stat().st_size < 30e6
    code = (
        "import sys, torch; from talk.pipeline import Pipeline; from talk.pretrained import DEFAULT_MODEL; "
        "from talk.pipeline.config import file_references; "
        "m = Pipeline.from_checkpoint(DEFAULT_MODEL); "
        "assert not any(k.startswith(('lightning', 'pytorch_lightning')) for k in sys.modules); "
        "assert file_references(m.config) == [], file_references(m.config); "
        "print(type(m.generator).__name__, m.fps)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["PhoneticGenerator", "30.0"]


def test_default_model_closes_the_lips_on_the_bundled_real_speech(tmp_path):
    """The README's figure: at least 90% of the 59 bilabials of assets/speech/eval (real recordings, never in
    training) closed, the mouth still in pauses, the gap following the phones."""
    from talk.pretrained import DEFAULT_MODEL

    talk("lipsync", "--checkpoint", str(DEFAULT_MODEL), "--out", str(tmp_path), cwd=tmp_path)
    pooled = json.loads((tmp_path / "lipsync.json").read_text())["pooled"]
    assert pooled["bilabials_judged"] == 59
    assert pooled["bilabial_closure_rate"] >= 0.9
    assert pooled["gap_phone_corr"] > 0.55
    assert pooled["silence_lip_speed_mm_s"] < 0.3 * pooled["speech_lip_speed_mm_s"]


def test_talk_animate_with_only_the_audio_uses_the_default_model(tmp_path):
    from render.probe import probe_video

    out = talk("animate", "--audio", str(SPEECH), "--size", "96", cwd=tmp_path)
    video = tmp_path / "arctic_a0009.mp4"
    assert video.is_file() and "arctic_a0009.mp4" in out.stdout
    info = probe_video(video)
    assert (info.video_codec, info.audio_codec, info.width, info.height) == ("h264", "aac", 96, 96)
    assert abs(info.n_frames - 93) <= 1 and info.fps == 30  # 3.1 s at 30 fps
    again = talk("animate", "--audio", str(SPEECH), cwd=tmp_path, check=False)
    assert again.returncode != 0 and "exists; pass --overwrite" in again.stderr and "Traceback" not in again.stderr


def test_export_glb_with_only_rig_audio_and_output_uses_the_default_model(tmp_path):
    """`talk export-glb` animates an ARKit avatar from real speech with the shipped model (its jaw opens and
    closes) when no --checkpoint is given."""
    import numpy as np

    from motion.face.blendshapes.gltf_animation import read_animation
    from tests.motion.face.blendshapes.gltf_builder import GltfBuilder

    b = GltfBuilder()  # a one-triangle avatar with two ARKit targets
    position = b.accessor(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32))
    targets = [{"POSITION": b.accessor(np.full((3, 3), 0.01 * (k + 1), np.float32))} for k in range(2)]
    b.node(mesh=b.mesh("Face", [{"attributes": {"POSITION": position}, "targets": targets}], ["jawOpen", "mouthClose"]))
    avatar = b.write_glb(tmp_path / "avatar.glb")
    out = tmp_path / "animated.glb"
    talk("export-glb", "--rig", str(avatar), "--audio", str(SPEECH), "--output", str(out), cwd=tmp_path)
    times, weights = read_animation(out)
    (w,) = weights.values()
    assert len(times) == 93 and w.shape == (93, 2)
    assert w[:, 0].max() > 0.1 and np.ptp(w[:, 0]) > 0.1  # the jaw opens and closes
