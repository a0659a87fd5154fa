"""The portrait generator (render.generator): shapes and range, it starts as the warped portrait, a gradient step
lowers the loss on a batch, and it refuses sizes its levels cannot halve."""

from __future__ import annotations

import pytest
import torch

from render.generator import PortraitGenerator

pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(b: int = 2, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rand = lambda c: torch.rand(b, c, size, size, generator=g)  # noqa: E731
    return {
        "warped": rand(3),
        "reference": rand(3),
        "normals": rand(3) * 2 - 1,
        "depth": rand(1) - 0.5,
        "mask": (rand(1) > 0.5).float(),
        "mouth_mask": (rand(1) > 0.9).float(),
        "flow": (rand(2) - 0.5) * 0.05,
    }


@pytest.mark.parametrize("use_flow, fold", [(True, 2), (False, 2), (True, 4)])
def test_shapes_and_range(use_flow, fold):
    gen = PortraitGenerator((8, 12, 16), use_flow=use_flow, fold=fold)  # (12: GroupNorm's groups divide it)
    torch.nn.init.normal_(gen.head[-1].weight, std=3.0)  # large corrections: the output still stays in range
    x = _inputs(size=48, seed=1)
    x["warped"][0, :, :4] = 1.0
    x["warped"][1, :, :4] = 0.0
    out = gen(**x)
    assert out.image.shape == (2, 3, 48, 48) and out.residual.shape == (2, 3, 48, 48)
    assert float(out.image.min()) >= 0.0 and float(out.image.max()) <= 1.0
    assert out.residual.abs().max() > 1.0
    expected = torch.sigmoid(torch.logit(x["warped"].clamp(1e-3, 1 - 1e-3)) + out.residual)
    assert torch.allclose(out.image, expected)


def test_untrained_generator_returns_the_warped_portrait():
    x = _inputs()
    out = PortraitGenerator((8, 16))(**x)
    assert torch.equal(out.residual, torch.zeros_like(out.residual))  # the last layer starts at zero
    assert (out.image - x["warped"]).abs().max() < 1e-3  # (the clamp to [eps, 1 - eps] only)


def test_a_gradient_step_lowers_the_loss_on_a_batch():
    torch.manual_seed(0)
    gen = PortraitGenerator((8, 16, 16))
    x = _inputs(seed=2)
    # the warped portrait off everywhere (L1 has a kink where the error is 0) and a "mouth" it does not show
    target = (
        x["warped"] + 0.05 * torch.randn(x["warped"].shape, generator=torch.Generator().manual_seed(3))
    ).clamp(0, 1)
    target[:, :, 10:20, 8:24] = 0.9

    def loss() -> torch.Tensor:
        return (gen(**x).image - target).abs().mean()

    first = loss()
    first.backward()
    with torch.no_grad():  # one plain gradient step
        for p in gen.parameters():
            p -= 0.05 * p.grad
    assert float(loss()) < float(first)
    opt = torch.optim.Adam(gen.parameters(), lr=1e-3)
    for _ in range(10):
        value = loss()
        opt.zero_grad()
        value.backward()
        opt.step()
    assert float(loss()) < 0.8 * float(first)


def test_bad_inputs_are_clear_errors():
    gen = PortraitGenerator((8, 16, 16))
    with pytest.raises(ValueError, match="multiples of 8"):
        gen(**_inputs(size=20))
    with pytest.raises(ValueError, match="multiples of 16"):
        PortraitGenerator((8, 16, 16), fold=4)(**_inputs(size=40))
    x = _inputs()
    x["flow"] = None
    with pytest.raises(ValueError, match="pass flow"):
        gen(**x)
    with pytest.raises(ValueError, match="channels"):
        PortraitGenerator(())
