"""The portrait generator's training (talk.training.portrait, talk.data.formats.portraits) through the CLI as users
run it: fit + test write metrics.json with the generator and both baselines, the metric hooks skip in one line,
the optional perceptual and adversarial terms, and one-line errors for a missing set or weights file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.talk.clitools import ROOT, portrait_overrides, talk

CONFIG = str(ROOT / "experiments" / "synthetic" / "portrait.yaml")
ONE_STEP = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
            "--trainer.logger=false"]  # fmt: skip


def _one_line_error(proc, *needles: str) -> None:
    # (Lightning's own "Seed set to 0" note comes first on stderr; the error is one line after it)
    lines = [
        line for line in proc.stderr.strip().splitlines() if line.strip() and not line.startswith("Seed set")
    ]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("talk fit: error: "), proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_fit_one_step_then_test_reports_generator_and_baselines(portrait_root, tmp_path):
    run = tmp_path / "run"
    talk("fit", "-c", CONFIG, *portrait_overrides(portrait_root, run), *ONE_STEP, cwd=tmp_path)
    ckpt = run / "checkpoints" / "best.ckpt"  # best by val/psnr
    assert ckpt.is_file()
    proc = talk("test", "-c", CONFIG, *portrait_overrides(portrait_root, run), "--trainer.logger=false",
                f"--ckpt_path={ckpt}", cwd=tmp_path)  # fmt: skip
    report = json.loads((run / "metrics.json").read_text())
    assert set(report["metrics"]) == {"generator", "copy_reference", "warp_only", "ground_truth"}
    assert report["units"] == {"psnr": "dB", "ssim": "1", "mouth_sync": "1"}
    assert report["dataset"]["name"] == "portraits" and "regions" not in report
    assert report["metrics"]["copy_reference"]["mouth_sync"] is None  # frames that never change: no correlation
    assert set(report["metrics"]["ground_truth"]) == {"mouth_sync"}
    for method in ("generator", "copy_reference", "warp_only"):
        values = report["metrics"][method]
        assert values["frames"] == 3 and values["sequences"] == 1  # 4 frames, less the reference itself
        assert 0 < values["psnr"] < 100 and 0 < values["ssim"] <= 1
    rows = (run / "metrics_per_sequence.csv").read_text().splitlines()
    assert rows[0] == "method,name,frames,psnr,ssim" and len(rows) == 4
    assert {r.split(",")[1] for r in rows[1:]} == {"clip_00002"}  # the test clip's name in the manifest
    assert "PSNR (dB)" in proc.stdout and "copy_reference" in proc.stdout and "warp_only" in proc.stdout
    for name in ("LPIPS", "FID", "CSIM", "LSE-C/LSE-D"):  # no networks given: one line each, and no failure
        lines = [line for line in proc.stdout.splitlines() if line.startswith(f"{name}: skipped")]
        assert len(lines) == 1, proc.stdout


def test_adversarial_training_runs_a_step(portrait_root, tmp_path):
    run = tmp_path / "run"
    talk("fit", "-c", CONFIG, *portrait_overrides(portrait_root, run), *ONE_STEP,
         "--model.init_args.adversarial_weight=0.1", cwd=tmp_path)  # fmt: skip
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert any(k.startswith("discriminator.") for k in state["state_dict"])
    assert len(state["optimizer_states"]) == 2  # generator and discriminator


def test_perceptual_weight_without_its_file_is_one_line(portrait_root, tmp_path):
    run = tmp_path / "run"
    args = [*portrait_overrides(portrait_root, run), *ONE_STEP, "--model.init_args.perceptual_weight=0.1"]
    proc = talk("fit", "-c", CONFIG, *args, f"--model.init_args.perceptual_weights={tmp_path / 'vgg16.pth'}",
                cwd=tmp_path, check=False)  # fmt: skip
    _one_line_error(proc, "vgg16.pth does not exist")
    proc = talk("fit", "-c", CONFIG, *args, cwd=tmp_path, check=False)
    _one_line_error(proc, "perceptual_weights")


def test_missing_portrait_set_is_one_line(tmp_path):
    run = tmp_path / "run"
    proc = talk("fit", "-c", CONFIG, *portrait_overrides(tmp_path / "nothing", run), *ONE_STEP, cwd=tmp_path,
                check=False)  # fmt: skip
    _one_line_error(proc, "talk data portraits --out")


def _fake_vgg16(path: Path) -> None:
    """A torchvision-layout vgg16 state dict with random weights (the real file is the user's)."""
    from talk.training.portrait_losses import _vgg16_features

    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in _vgg16_features().state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # what the real file also holds, ignored
    torch.save(state, path)


def test_perceptual_loss_reads_torchvision_layout_and_trains(tmp_path):
    from talk.training.portrait_losses import PerceptualLoss, PerceptualWeightsError

    path = tmp_path / "vgg16.pth"
    _fake_vgg16(path)
    loss = PerceptualLoss(path)
    # the user's file stays out of checkpoints
    assert not any(k.startswith("_features") for k in loss.state_dict())
    a = torch.rand(1, 3, 32, 32, requires_grad=True)
    b = torch.rand(1, 3, 32, 32)
    value = loss(a, b)
    value.backward()
    assert float(loss(b, b)) == 0.0 and float(value) > 0 and a.grad.abs().sum() > 0
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(PerceptualWeightsError, match="not a torchvision vgg16"):
        PerceptualLoss(tmp_path / "other.pth")
