"""The `talk` CLI end to end on tiny data: fit (fast_dev_run on every config), test, animate, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.talk.clitools import (
    ROOT,
    coefficient_overrides,
    flame_overrides,
    phonetic_overrides,
    portrait_overrides,
    small_overrides,
    talk,
)

# experiments/trainer/default.yaml is the trainer every config shares (read by `talk` itself), not a config to run
CONFIGS = sorted(p for p in (ROOT / "experiments").rglob("*.yaml") if p.parent.name != "trainer")


@pytest.fixture(scope="session")
def tiny_wav2vec2(tmp_path_factory) -> Path:
    """A randomly initialised tiny wav2vec2 saved like a hub snapshot (the hub is never reached in tests)."""
    import torch
    import transformers

    path = tmp_path_factory.mktemp("wav2vec2")
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=64, conv_dim=(32,) * 7)  # fmt: skip
    transformers.Wav2Vec2Model(config).save_pretrained(path)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(path)
    return path


def _dataset_overrides(config: Path, tmp: Path) -> list[str]:
    """Miniature copies of the dataset a config names (VOCASET or BIWI layouts), with one sentence per split."""
    from talk.data.formats.biwi import BIWI_SUBJECTS, BIWI_TRAIN
    from talk.data.formats.vocaset import VOCASET_TEST, VOCASET_TRAIN, VOCASET_VAL
    from tests.talk.miniature import write_biwi_miniature, write_miniature

    dataset = config.parent.name
    root = tmp / f"data_{dataset}"
    if dataset == "vocaset":
        if not root.exists():
            write_miniature(root, {s: 1 for s in VOCASET_TRAIN + VOCASET_VAL + VOCASET_TEST}, seconds=0.5)
        return [f"--data.init_args.root={root}", "--data.init_args.face_model_path=null",
                f"--data.init_args.regions_path={root / 'FLAME_masks.pkl'}", "--data.init_args.train_sentences=[1,1]",
                "--data.init_args.val_sentences=[1,1]", "--data.init_args.test_sentences=[1,1]"]  # fmt: skip
    if not root.exists():
        write_biwi_miniature(root, BIWI_SUBJECTS, sentences=[1, 2, 3], seconds=0.5)
    assert set(BIWI_TRAIN) < set(BIWI_SUBJECTS)
    return [f"--data.init_args.root={root}", "--data.init_args.train_sentences=[1,1]",
            "--data.init_args.val_sentences=[2,2]", "--data.init_args.test_sentences=[3,3]"]  # fmt: skip


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(ROOT)) for c in CONFIGS])
def test_fast_dev_run_every_config(config, synth_root, tmp_path, request):
    text = config.read_text()
    flame = config.name.startswith("flame_")  # the synthetic dataset read as FLAME parameters (its manifest)
    kind = next((k for k in ("arkit", "bfm") if config.name.startswith(f"{k}_")), None)  # ARKit weights, BFM
    if flame:
        data = flame_overrides(synth_root, tmp_path, face_model="face_model:" in text)
    elif kind is not None:
        data = coefficient_overrides(kind, synth_root, tmp_path, face_model="face_model:" in text)
    elif config.name.startswith("portrait"):  # the image-space generator: a tiny synthetic portrait set
        data = portrait_overrides(request.getfixturevalue("portrait_root"), tmp_path)
    elif "PhoneticModule" in text:  # trains on phone labels
        data = phonetic_overrides(synth_root, tmp_path)
    elif config.parent.name in ("synthetic", "speech"):  # the speech set has the synthetic set's layout
        data = small_overrides(synth_root, tmp_path)
    else:  # real-dataset configs: miniature replicas of their layouts, a local tiny model for the hub name
        data = [*_dataset_overrides(config, tmp_path), f"--trainer.default_root_dir={tmp_path}"]
    extra = []
    if "HFSpeechEncoder" in text:
        extra.append(
            f"--model.init_args.audio_encoder.init_args.name_or_path={request.getfixturevalue('tiny_wav2vec2')}"
        )
    if "tokenizer_checkpoint" in text:
        if config.parent.name in ("synthetic", "speech") and kind is None:
            tokenizer = request.getfixturevalue("flame_tokenizer_ckpt" if flame else "tokenizer_ckpt")
        else:  # a tokenizer of the same dataset: its motion size must match
            stage1 = config.parent / ("tokenizer.yaml" if kind is None else f"{kind}_tokenizer.yaml")
            stage1_run = tmp_path / "tokenizer"
            stage1_data = (
                data if kind is None else coefficient_overrides(kind, synth_root, tmp_path, face_model=True)
            )
            talk("fit", "-c", str(stage1), *stage1_data, f"--trainer.default_root_dir={stage1_run}", "--trainer.max_epochs=1",
                 "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1", "--trainer.logger=false",
                 cwd=tmp_path)  # fmt: skip
            tokenizer = stage1_run / "checkpoints" / "last.ckpt"
        extra.append(f"--model.init_args.tokenizer_checkpoint={tokenizer}")
    talk("fit", "-c", str(config), "--trainer.fast_dev_run=true", *data, *extra, cwd=tmp_path)


@pytest.fixture(scope="module")
def trained(synth_root, tmp_path_factory):
    """Two real epochs of the synthetic baseline, then `talk test`."""
    run = tmp_path_factory.mktemp("run")
    config = ROOT / "experiments" / "synthetic" / "faceformer.yaml"
    talk("fit", "-c", str(config), *small_overrides(synth_root, run), "--trainer.max_epochs=2",
         "--trainer.logger=false", cwd=run)  # fmt: skip
    return run, config


def ckpt_dir(run: Path) -> Path:
    # the checkpoints follow --trainer.default_root_dir (the run directory)
    return run / "checkpoints"


def test_fit_writes_checkpoints_and_test_writes_metrics(trained, synth_root):
    run, config = trained
    ckpts = sorted(p.name for p in ckpt_dir(run).glob("*.ckpt"))
    assert "last.ckpt" in ckpts
    out = talk("test", "-c", str(config), *small_overrides(synth_root, run), "--trainer.logger=false",
               f"--ckpt_path={ckpt_dir(run) / 'last.ckpt'}", cwd=run)  # fmt: skip
    report = json.loads((run / "metrics.json").read_text())
    assert set(report["metrics"]) == {"model", "static_template"}
    for method in report["metrics"].values():
        assert {"lve", "lve_mm", "fdd", "abs_fdd", "mve"} <= set(method)
        assert method["sequences"] == 2
    assert report["regions"]["lips"] == "lips" and len(report["regions"]["sha256"]) == 64
    assert "metrics.json" in out.stdout and "static_template" in out.stdout
    assert (run / "metrics_per_sequence.csv").read_text().count("\n") == 5


def test_validate_reports_the_generated_motion_metrics(trained, synth_root):
    run, config = trained
    out = talk("validate", "-c", str(config), *small_overrides(synth_root, run), "--trainer.logger=false",
               f"--ckpt_path={ckpt_dir(run) / 'last.ckpt'}", cwd=run)  # fmt: skip
    for name in ("val/loss", "val/lve", "val/fdd", "val/abs_fdd", "val/mve"):
        assert f"{name} " in out.stdout, name


def test_explicit_model_flags_override_checkpoint_hyperparameters(trained, synth_root):
    """`talk test --ckpt_path X --model.init_args.K=V` runs with V, not with the value stored in X."""
    run, config = trained
    common = ["test", "-c", str(config), *small_overrides(synth_root, run), "--trainer.logger=false",
              f"--ckpt_path={ckpt_dir(run) / 'last.ckpt'}"]  # fmt: skip
    talk(*common, cwd=run)
    averaged = json.loads((run / "metrics.json").read_text())["metrics"]["model"]
    talk(*common, "--model.init_args.test_condition", "SYN_01_F", cwd=run)
    conditioned = json.loads((run / "metrics.json").read_text())["metrics"]["model"]
    assert conditioned["mve"] != averaged["mve"]  # unseen test subjects now speak in SYN_01_F's style


def test_test_time_comparison_videos_callback(trained, synth_root):
    from render import probe_video

    run, config = trained
    talk("test", "-c", str(config), *small_overrides(synth_root, run), "--trainer.logger=false",
         f"--ckpt_path={ckpt_dir(run) / 'last.ckpt'}", "--trainer.callbacks+=talk.training.callbacks.ComparisonVideos",
         "--trainer.callbacks.num_sequences=1", "--trainer.callbacks.size=48", cwd=run)  # fmt: skip
    videos = sorted((run / "videos").glob("*.mp4"))
    assert len(videos) == 1
    info = probe_video(videos[0])
    assert info.height == 48 and info.width > 3 * 48 and info.audio_codec == "aac"


def test_explicit_model_flags_parser():
    from talk.cli.lightning_cli import _explicit_model_flags

    argv = ["test", "-c", "x.yaml", "--model.init_args.sampling.temperature=0.7", "--trainer.max_epochs=3",
            "--model.init_args.lm.init_args.top_k", "5", "--model.class_path=foo", "--model.init_args.seed=3"]  # fmt: skip
    assert _explicit_model_flags(argv) == {
        "init_args": {"sampling": {"temperature": 0.7}, "lm": {"init_args": {"top_k": 5}}, "seed": 3}
    }


def test_resume_from_last_checkpoint(trained, synth_root):
    run, config = trained
    last = ckpt_dir(run) / "last.ckpt"
    talk("fit", "-c", str(config), *small_overrides(synth_root, run), "--trainer.max_epochs=3",
         "--trainer.logger=false", f"--ckpt_path={last}", cwd=run)  # fmt: skip
    import torch

    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 2


def test_refit_replaces_the_run_checkpoints(synth_root, tmp_path):
    """A second `talk fit` into the same run replaces best.ckpt / last.ckpt instead of writing best-v1.ckpt,
    which `--ckpt_path .../best.ckpt` (and `make demo`) would silently miss."""
    config = ROOT / "experiments" / "synthetic" / "faceformer.yaml"
    args = ["fit", "-c", str(config), *small_overrides(synth_root, tmp_path), "--trainer.logger=false",
            "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"]  # fmt: skip
    talk(*args, "--trainer.max_epochs=1", cwd=tmp_path)
    talk(*args, "--trainer.max_epochs=2", cwd=tmp_path)
    import torch

    assert sorted(p.name for p in ckpt_dir(tmp_path).glob("*.ckpt")) == ["best.ckpt", "last.ckpt"]
    # last.ckpt follows every epoch, whether or not best.ckpt improved (the resume point loses nothing)
    assert torch.load(ckpt_dir(tmp_path) / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 1


def test_animate_writes_mp4_with_synced_h264_and_aac(trained, synth_root, tmp_path):
    from render import probe_video

    run, _ = trained
    wav = synth_root / "wav" / "SYN_09_F_sentence01.wav"
    out = tmp_path / "out.mp4"
    talk("animate", "--audio", str(wav), "--checkpoint", str(ckpt_dir(run) / "last.ckpt"),
         "--output", str(out), "--size", "96", "--subject", "SYN_09_F",
         "--export-blendshapes", str(tmp_path / "arkit.csv"), cwd=tmp_path)  # fmt: skip
    info = probe_video(out)
    from motion.face.blendshapes.weights_io import read_live_link_csv

    weights = read_live_link_csv(tmp_path / "arkit.csv", fps=30).weights  # one row per video frame, in [0, 1]
    assert weights.shape == (info.n_frames, 52) and weights.min() >= 0 and weights.max() <= 1
    assert weights[:, 17].max() > 0.05  # jawOpen: the synthetic speaker opens the mouth
    duration = sf.info(str(wav)).duration
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert info.fps == pytest.approx(30.0)
    assert abs(info.n_frames / 30.0 - duration) <= 1 / 30
    assert info.n_frames / 30.0 >= duration  # the whole utterance is shown
    assert abs(info.audio_duration - duration) < 0.25 / 30


def test_animate_against_ground_truth_writes_a_comparison_video(trained, synth_root, tmp_path):
    import trimesh

    from render import probe_video

    run, _ = trained
    wav = synth_root / "wav" / "SYN_09_F_sentence01.wav"
    truth = synth_root / "vertices_npy" / "SYN_09_F_sentence01.npy"  # 60 fps, VOCASET layout
    out = tmp_path / "cmp.mp4"
    proc = talk("animate", "--audio", str(wav), "--checkpoint", str(ckpt_dir(run) / "last.ckpt"), "--output", str(out),
                "--size", "64", "--subject", "SYN_09_F", "--ground-truth", str(truth), "--ground-truth-fps", "60",
                "--export-meshes", str(tmp_path / "m"), "--mesh-format", "ply", "--background", "0,0,0",
                cwd=tmp_path)  # fmt: skip
    assert "LVE-mm against the ground truth" in proc.stdout
    info = probe_video(out)
    assert info.height == 64 and info.width > 3 * 64  # prediction | ground truth | heat map | colour bar
    frames = sorted((tmp_path / "m").glob("*.ply"))
    assert len(frames) == info.n_frames
    mesh = trimesh.load(frames[0], process=False)
    assert mesh.vertices.shape[0] == np.load(truth).shape[1] // 3
    again = talk("animate", "--audio", str(wav), "--checkpoint", str(ckpt_dir(run) / "last.ckpt"), "--output",
                 str(tmp_path / "again.mp4"), "--size", "64", "--export-meshes", str(tmp_path / "m"), cwd=tmp_path,
                 check=False)  # fmt: skip
    assert (
        again.returncode == 1 and "Traceback" not in again.stderr and "--overwrite" in again.stderr
    )  # existing meshes are never overwritten silently


@pytest.mark.parametrize("kind", ["missing", "empty", "not_audio", "nan"])
def test_animate_bad_audio_is_one_clear_line(kind, trained, tmp_path):
    run, _ = trained
    wav = tmp_path / "in.wav"
    if kind == "empty":
        sf.write(wav, np.zeros(0, np.float32), 16000)
    elif kind == "not_audio":
        wav.write_text("this is not audio\n" * 50)
    elif kind == "nan":
        sf.write(wav, np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    proc = talk("animate", "--audio", str(wav), "--checkpoint", str(ckpt_dir(run) / "last.ckpt"),
                "--output", str(tmp_path / "o.mp4"), cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(wav.name) in lines[0]
    assert not (tmp_path / "o.mp4").exists()


def test_animate_missing_checkpoint_is_one_clear_line(tmp_path):
    wav = tmp_path / "in.wav"
    sf.write(wav, np.zeros(16000, np.float32), 16000)
    proc = talk("animate", "--audio", str(wav), "--checkpoint", str(tmp_path / "none.ckpt"),
                "--output", str(tmp_path / "o.mp4"), cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode != 0 and "none.ckpt not found" in proc.stderr and "Traceback" not in proc.stderr


def test_help_lists_commands():
    out = talk("--help", cwd=ROOT).stdout
    for command in ("fit", "test", "data", "animate"):
        assert command in out
    fit_help = talk("fit", "--help", cwd=ROOT).stdout
    assert "--trainer" in fit_help and "--model" in fit_help


@pytest.mark.parametrize("background", ["2,0,0", "white"])
def test_animate_bad_background_is_one_clear_line(background, trained, synth_root, tmp_path):
    run, _ = trained
    wav = synth_root / "wav" / "SYN_09_F_sentence01.wav"
    proc = talk("animate", "--audio", str(wav), "--checkpoint", str(ckpt_dir(run) / "last.ckpt"), "--output",
                str(tmp_path / "o.mp4"), "--background", background, cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 1 and "--background" in proc.stderr and "Traceback" not in proc.stderr


def test_export_glb_animates_an_arkit_avatar_with_the_speech_beside_it(trained, synth_root, tmp_path):
    from motion.face.blendshapes.gltf_animation import read_animation
    from tests.motion.face.blendshapes.gltf_builder import GltfBuilder

    run, _ = trained
    b = GltfBuilder()  # a one-triangle avatar with three ARKit targets in other spellings
    position = b.accessor(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32))
    targets = [{"POSITION": b.accessor(np.full((3, 3), 0.01 * (k + 1), np.float32))} for k in range(3)]
    prim = {"attributes": {"POSITION": position}, "targets": targets}
    b.node(mesh=b.mesh("Face", [prim], ["JawOpen", "eyeBlink_L", "mouthSmile_R"]))
    avatar = b.write_glb(tmp_path / "avatar.glb")
    wav = synth_root / "wav" / "SYN_09_F_sentence01.wav"
    out = tmp_path / "animated.glb"
    result = talk("export-glb", "--rig", str(avatar), "--audio", str(wav), "--checkpoint",
                  str(ckpt_dir(run) / "last.ckpt"), "--output", str(out), cwd=tmp_path)  # fmt: skip
    assert "49 ARKit target" in result.stdout  # the avatar lacks the other targets: said, not fatal
    times, weights = read_animation(out)
    frames = int(np.ceil(sf.info(str(wav)).duration * 30 - 1e-6))
    assert len(times) == frames and times[1] == np.float32(1 / 30)
    (node_weights,) = weights.values()
    assert node_weights.shape == (frames, 3) and node_weights[:, 0].max() > 0.05  # JawOpen moves
    assert sf.info(str(out.with_suffix(".wav"))).duration == pytest.approx(
        sf.info(str(wav)).duration, abs=1e-3
    )
    again = talk("export-glb", "--rig", str(avatar), "--audio", str(wav), "--checkpoint",
                 str(ckpt_dir(run) / "last.ckpt"), "--output", str(out), cwd=tmp_path, check=False)  # fmt: skip
    assert again.returncode == 1 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
