"""The Lightning-free pipeline: loading without Lightning, equal to `talk animate`, exports, safe configs, old files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.talk.clitools import ENV, ROOT, talk


def test_importing_the_pipeline_imports_no_lightning():
    code = (
        "import sys, talk.pipeline, talk.cli.animate; "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('lightning', 'pytorch_lightning', 'transformers', 'wandb', 'torchmetrics')); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=ENV)


def test_animate_help_imports_no_torch():
    code = (
        "import sys; from talk.cli.main import main; sys.argv = ['talk', 'animate', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "--chunk_seconds" in proc.stdout and "--export_meshes" in proc.stdout


@pytest.mark.parametrize("checkpoint", ["lm_ckpt", "flame_lm_ckpt"])
def test_from_checkpoint_generates_what_talk_animate_renders(checkpoint, synth_root, tmp_path, request):
    from talk.cli.animate import animate  # what `talk animate` runs (its flags are this function's arguments)
    from talk.pipeline import Pipeline

    ckpt = request.getfixturevalue(checkpoint)
    wav_path = synth_root / "wav" / "SYN_10_M_sentence01.wav"
    animate(wav_path, ckpt, tmp_path / "a.mp4", size=16, export_meshes=tmp_path / "meshes", mesh_format="npz")
    rendered = np.load(tmp_path / "meshes" / "meshes.npz")["vertices"]
    model = Pipeline.from_checkpoint(ckpt)
    wav, _ = sf.read(wav_path, dtype="float32")
    with torch.inference_mode():
        motion = model.generate(torch.from_numpy(wav))
    np.testing.assert_array_equal(motion.vertices[0].numpy(), rendered)
    if checkpoint == "flame_lm_ckpt":  # parametric motion comes with its parameters
        assert motion.params is not None and motion.params.shape[:2] == motion.vertices.shape[:2]
    else:
        assert motion.params is None


def test_export_writes_a_small_file_that_loads_to_the_same_model(lm_ckpt, synth_root, tmp_path):
    from talk.cli.main import main
    from talk.pipeline import Pipeline

    out = tmp_path / "model.pt"
    main(["export", "--checkpoint", str(lm_ckpt), "--output", str(out)])  # `talk export`, in this process
    assert out.stat().st_size < lm_ckpt.stat().st_size  # no optimizer state
    payload = torch.load(out, weights_only=True)
    assert payload["format"] == "talk.pipeline" and payload["class_path"].endswith("AudioToMotion")
    wav = torch.from_numpy(
        sf.read(synth_root / "wav" / "SYN_09_F_sentence01.wav", dtype="float32")[0][:20000]
    )
    exported, original = Pipeline.from_checkpoint(out), Pipeline.from_checkpoint(lm_ckpt)
    assert torch.equal(exported.generate(wav).vertices, original.generate(wav).vertices)
    assert exported.assets.train_subjects == original.assets.train_subjects


def _legacy(ckpt_path, out_path):  # noqa: ANN202
    """The same checkpoint as written before the pipeline layout: old keys, old class paths, no pipeline config."""
    ckpt = torch.load(ckpt_path, weights_only=True)
    renames = {"model.generator.tokenizer.": "tokenizer.", "model.generator.lm.": "lm.",
               "model.audio_encoder.": "audio_encoder."}  # fmt: skip
    state = {}
    for key, value in ckpt["state_dict"].items():
        for new, old in renames.items():
            if key.startswith(new):
                key = old + key[len(new) :]
        state[key] = value
    ckpt["state_dict"] = state
    del ckpt["talk_pipeline"]
    hp = ckpt["hyper_parameters"]
    hp["_class_path"] = "talk.models.audio_to_motion.AudioToMotionModule"
    hp["tokenizer_config"]["class_path"] = "motion.tokenizer.MotionTokenizer"
    torch.save(ckpt, out_path)
    return out_path


def test_an_old_checkpoint_says_how_to_convert_it_and_talk_export_converts_it(lm_ckpt, synth_root, tmp_path):
    from talk.cli.export import export
    from talk.errors import CheckpointError
    from talk.pipeline import Pipeline

    old = _legacy(lm_ckpt, tmp_path / "old.ckpt")
    with pytest.raises(CheckpointError, match="talk export"):
        Pipeline.from_checkpoint(old)
    proc = talk("animate", "--audio", str(synth_root / "wav" / "SYN_10_M_sentence01.wav"), "--checkpoint",
                str(old), "--output", str(tmp_path / "x.mp4"), cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 1 and "talk export" in proc.stderr and "Traceback" not in proc.stderr
    export(old, tmp_path / "new.pt")  # what `talk export` runs
    wav = torch.from_numpy(
        sf.read(synth_root / "wav" / "SYN_09_F_sentence01.wav", dtype="float32")[0][:20000]
    )
    converted, current = Pipeline.from_checkpoint(tmp_path / "new.pt"), Pipeline.from_checkpoint(lm_ckpt)
    assert torch.equal(converted.generate(wav).vertices, current.generate(wav).vertices)


def test_configs_may_only_build_talk_modules():
    from talk.errors import CheckpointError
    from talk.pipeline.config import instantiate

    with pytest.raises(CheckpointError, match="outside talk's packages"):
        instantiate({"class_path": "os.system", "init_args": {"command": "echo pwned"}})
    with pytest.raises(CheckpointError, match="not a torch module"):
        instantiate({"class_path": "talk.pipeline.load.export", "init_args": {}})
    with pytest.raises(CheckpointError, match="does not exist"):
        instantiate({"class_path": "motion.lm.NoSuchModel"})


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None])
def test_unreadable_checkpoints_are_one_clear_line(content, lm_ckpt, tmp_path):
    from talk.errors import CheckpointError
    from talk.pipeline import Pipeline

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(lm_ckpt.read_bytes()[:5000] if content is None else content)  # None: truncated
    with pytest.raises(CheckpointError, match="bad.ckpt"):
        Pipeline.from_checkpoint(bad)


def test_output_that_cannot_be_written_fails_before_any_work(lm_ckpt, synth_root, tmp_path, monkeypatch):
    from talk.cli import animate as command
    from talk.errors import UserError

    wav = synth_root / "wav" / "SYN_10_M_sentence01.wav"
    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr("talk.pipeline.load.from_checkpoint", lambda *a: pytest.fail("the model was loaded"))
    for output, says in [(tmp_path, "is a directory"), (tmp_path / "afile" / "out.mp4", "is a file")]:
        with pytest.raises(UserError, match=says):
            command.animate(wav, lm_ckpt, output)
