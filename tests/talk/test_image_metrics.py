"""Image metrics (talk.image_metrics, talk.image_metric_hooks): SSIM equals scikit-image's, PSNR its formula,
identical images score 1 / inf, the split accumulator, and the network hooks skip in one line without their file
and compute their formulas with one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from talk.image_metric_hooks import CSIMHook, FIDHook, LPIPSHook, SyncNetHook, frechet_distance, sync_scores
from talk.image_metrics import PSNR_CAP, ImageMetrics, psnr, ssim

pytestmark = pytest.mark.usefixtures("one_thread")


def _pair(seed: int, shape: tuple[int, ...] = (2, 3, 37, 45)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g, dtype=torch.float64)
    b = (a + 0.15 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return a, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ssim_equals_scikit_image(seed):
    metrics = pytest.importorskip("skimage.metrics")
    a, b = _pair(seed)
    mine = ssim(a, b)
    for i in range(a.shape[0]):
        ref = metrics.structural_similarity(
            a[i].numpy(), b[i].numpy(), gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=1.0, channel_axis=0,
        )  # fmt: skip
        assert float(mine[i]) == pytest.approx(ref, abs=1e-10)
    one = ssim(a[:, :1].float(), b[:, :1].float())  # one channel, float32
    ref = metrics.structural_similarity(a[0, 0].numpy(), b[0, 0].numpy(), gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, data_range=1.0)  # fmt: skip
    assert float(one[0]) == pytest.approx(ref, abs=1e-5)


def test_psnr_by_hand():
    a = torch.zeros(1, 3, 4, 4)
    b = a.clone()
    b[0, 0, 0, 0] = 0.5  # MSE = 0.25 / 48
    assert float(psnr(b, a)) == pytest.approx(10 * math.log10(48 / 0.25), rel=1e-6)
    assert float(psnr(b * 255, a * 255, data_range=255.0)) == pytest.approx(
        10 * math.log10(48 / 0.25), rel=1e-6
    )


def test_identical_images_give_ssim_one_and_psnr_inf_capped_in_means():
    a, _ = _pair(3)
    assert torch.allclose(ssim(a, a), torch.ones(2, dtype=torch.float64))
    assert torch.isinf(psnr(a, a)).all()
    m = ImageMetrics()
    m.update(a, a, ["c0", "c0"], [1, 2])
    assert m.compute()["psnr"] == PSNR_CAP and m.compute()["ssim"] == pytest.approx(1.0)


def test_ssim_is_differentiable_and_rejects_tiny_images():
    a, b = _pair(4)
    a.requires_grad_(True)
    (1 - ssim(a, b)).sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_image_metrics_per_clip_and_split_means_count_each_frame_once():
    a, b = _pair(5, (4, 3, 16, 16))
    m = ImageMetrics()
    m.update(a, b, ["x", "x", "y", "y"], [1, 2, 1, 2])
    m.update(a[:1], b[:1], ["x"], [1])  # a repeated frame (a padded distributed sampler) replaces itself
    p, s = psnr(a, b), ssim(a, b)
    clips = m.clips()
    assert [c.name for c in clips] == ["x", "y"] and [c.frames for c in clips] == [2, 2]
    assert clips[1].psnr == pytest.approx(float(p[2:].mean())) and clips[0].ssim == pytest.approx(
        float(s[:2].mean())
    )
    values = m.compute()
    assert (
        values["psnr"] == pytest.approx(float(p.mean()))
        and values["frames"] == 4
        and values["sequences"] == 2
    )
    other = ImageMetrics()
    other.merge([m.state()])
    assert other.compute() == values


# ------------------------------------------------------------------------------------------------------- hooks
@pytest.mark.parametrize("cls", [LPIPSHook, FIDHook, CSIMHook, SyncNetHook])
def test_hooks_without_their_file_skip_in_one_line(cls, tmp_path):
    hook = cls(None, "--model.init_args.x_weights")
    reason = hook.skip_reason()
    assert reason is not None and "\n" not in reason and "--model.init_args.x_weights" in reason
    missing = cls(tmp_path / "none.pt", "--model.init_args.x_weights").skip_reason()
    assert missing is not None and "none.pt" in missing and "\n" not in missing


class _Features(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)  # [B, 6]


class _Distance(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).abs().mean(dim=(1, 2, 3))


def test_hooks_with_a_torchscript_network_compute_their_formulas(tmp_path):
    features, distance = tmp_path / "features.pt", tmp_path / "distance.pt"
    torch.jit.save(torch.jit.script(_Features()), str(features))
    torch.jit.save(torch.jit.script(_Distance()), str(distance))
    a, b = _pair(6, (8, 3, 16, 16))
    a, b = a.float(), b.float()
    lpips, fid, csim = LPIPSHook(distance, "x"), FIDHook(features, "x"), CSIMHook(features, "x")
    for hook in (lpips, fid, csim):
        assert hook.skip_reason() is None
        hook.update(a, b, a, ["c"] * 8)
    assert lpips.compute()["lpips"] == pytest.approx(float((a - b).abs().mean()), rel=1e-5)
    assert csim.compute()["csim"] == pytest.approx(1.0, abs=1e-6)  # generated == reference
    same = FIDHook(features, "x")
    same.update(a, a, a, ["c"] * 8)
    assert abs(same.compute()["fid"]) < 1e-6 and fid.compute()["fid"] > 1e-4
    assert (
        SyncNetHook(features, "x").skip_reason(has_audio=False)
        == "LSE-C/LSE-D: skipped (the data has no audio)."
    )


def test_frechet_distance_of_diagonal_gaussians_by_hand():
    mu1, mu2 = np.array([0.0, 1.0]), np.array([1.0, 1.0])
    s1, s2 = np.diag([1.0, 4.0]), np.diag([4.0, 1.0])
    # ||mu1-mu2||^2 + sum (sqrt(a) - sqrt(b))^2 for commuting (diagonal) covariances
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(1.0 + 1.0 + 1.0)


def test_sync_scores_find_the_offset_of_the_audio():
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(40, 8, generator=g)
    video = torch.roll(audio, 3, dims=0)  # video frame t shows audio frame t - 3
    lse_d, lse_c = sync_scores(video, audio, max_offset=5)
    shifted = torch.nn.functional.pad(audio, (0, 0, 5, 5))[2 : 2 + 40]
    assert lse_d == pytest.approx(float((video - shifted).norm(dim=1).mean()), rel=1e-6)
    assert lse_c > 1.0
