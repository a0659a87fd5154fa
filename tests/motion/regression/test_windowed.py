"""Windowed inference of the regression baseline: equal to the training pass up to the window, bounded beyond."""

import pytest
import torch

from motion.regression.regressor import FaceFormerRegressor, alibi_causal_bias, alibi_window_bias

pytestmark = pytest.mark.usefixtures("one_thread")


def make(**kw) -> FaceFormerRegressor:
    torch.manual_seed(0)
    args = dict(audio_dim=8, motion_dim=6, d_model=16, num_layers=2, num_heads=2, ff_dim=32, num_styles=3,
                dropout=0.0, period=5, lookback=4, lookahead=2, attention_window=40)  # fmt: skip
    args.update(kw)
    model = FaceFormerRegressor(**args).eval()
    torch.nn.init.normal_(model.head.weight, std=0.1)  # the zero init would make every output equal
    return model


def windowed(model: FaceFormerRegressor, *args, **kw) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat(list(model.windowed(*args, **kw)), dim=1)


@pytest.mark.parametrize("block", [1, 7, 16, 40])
def test_windowed_equals_the_training_pass_up_to_the_window(block):
    model = make()
    audio = torch.randn(2, 40, 8)  # exactly the window
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1, 31:] = False  # a padded sequence too
    for style in (torch.tensor([0, 2]), torch.softmax(torch.randn(2, 3), dim=-1)):
        for m in (None, mask):
            with torch.no_grad():
                full = model(audio, style, m)
            out = windowed(model, audio, style, m, block=block)
            assert out.shape == full.shape
            torch.testing.assert_close(out, full, atol=1e-5, rtol=0)


def test_windowed_beyond_the_window_is_finite_causal_and_independent_of_the_block():
    model = make(attention_window=12)
    audio = torch.randn(1, 97, 8)
    style = torch.tensor([1])
    reference = windowed(model, audio, style, block=5)
    assert reference.shape == (1, 97, 6) and torch.isfinite(reference).all()
    torch.testing.assert_close(windowed(model, audio, style, block=33), reference, atol=1e-5, rtol=0)
    with torch.no_grad():  # frames of the first window see what the training pass sees (their audio included)
        prefix = model(audio[:, :12], style)[:, : 12 - model.lookahead]
    torch.testing.assert_close(reference[:, : 12 - model.lookahead], prefix, atol=1e-5, rtol=0)
    poked = audio.clone()  # an audio impulse reaches neither frames before t - lookahead ...
    poked[0, 60] += 5.0
    changed = (windowed(model, poked, style, block=5) - reference).abs().amax(dim=-1)[0]
    assert changed[: 60 - model.lookahead].max() == 0 and changed[60 - model.lookahead :].max() > 0
    # ... nor, through the window of each of the two layers, frames 2 * (window - 1) + lookback later
    assert changed[60 + model.lookback + 2 * 11 + 1 :].max() == 0


def test_window_bias_is_the_causal_bias_inside_the_window():
    full = alibi_causal_bias(30, 4, 5, torch.device("cpu"))
    frames = torch.arange(20, 30)
    keys = torch.arange(8, 30)
    bias = alibi_window_bias(frames, keys, 4, 5, window=9)
    inside = (frames[:, None] - keys[None, :] >= 0) & (frames[:, None] - keys[None, :] < 9)
    assert torch.equal(bias[:, inside], full[:, 20:30, 8:30][:, inside])
    assert torch.isneginf(bias[:, ~inside]).all()


def test_no_attention_tensor_grows_with_the_length():
    """A memory-shape check that does not depend on RSS: every attention mask (and so every attention matrix)
    of windowed inference is bounded by the block and the window, for an input ten windows long."""
    model = make(attention_window=16)
    shapes = []

    def record(module, args, kwargs):  # noqa: ANN001, ANN202
        shapes.append(tuple(kwargs["attn_mask"].shape))

    for layer in model.layers:
        layer.self_attn.register_forward_pre_hook(record, with_kwargs=True)
        layer.cross_attn.register_forward_pre_hook(record, with_kwargs=True)
    t, block = 160, 8
    out = windowed(model, torch.randn(1, t, 8), torch.tensor([0]), block=block)
    assert out.shape[1] == t and len(shapes) == 2 * 2 * t // block
    heads = model.num_heads
    bound = block + max(model.attention_window - 1, model.lookback + model.lookahead)
    assert all(s[0] == heads and s[1] <= block and s[2] <= bound for s in shapes), set(shapes)


def test_attention_window_is_validated_and_creates_no_parameters():
    with pytest.raises(ValueError, match="attention_window"):
        make(attention_window=0)
    a, b = make(attention_window=3), make(attention_window=600)
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    for (_, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y)  # the same initialisation: training is unchanged
