import torch

from motion.regression.regressor import FaceFormerRegressor


def make(**kw):
    torch.manual_seed(0)
    args = dict(audio_dim=8, motion_dim=6, d_model=16, num_layers=2, num_heads=2, ff_dim=32, num_styles=3,
                dropout=0.0, period=5, lookback=4, lookahead=2)  # fmt: skip
    args.update(kw)
    model = FaceFormerRegressor(**args).eval()
    torch.nn.init.normal_(model.head.weight, std=0.1)  # the zero init would make every output equal
    return model


def test_shapes_and_zero_init_starts_at_template():
    model = FaceFormerRegressor(6, 3, 8, d_model=16, num_heads=2)
    out = model(torch.randn(2, 11, 8), torch.tensor([0, 2]))
    assert out.shape == (2, 11, 6)
    assert out.abs().max() == 0


def test_audio_impulse_never_reaches_frames_before_t_minus_lookahead():
    model = make()
    audio = torch.randn(1, 20, 8)
    style = torch.tensor([1])
    base = model(audio, style)
    t = 12
    poked = audio.clone()
    poked[0, t] += 5.0
    out = model(poked, style)
    changed = (out - base).abs().amax(dim=-1)[0]
    assert changed[: t - model.lookahead].max() == 0
    assert changed[t - model.lookahead :].max() > 0


def test_style_weights_equal_one_hot_ids():
    model = make()
    audio = torch.randn(2, 7, 8)
    ids = torch.tensor([0, 2])
    out_ids = model(audio, ids)
    out_w = model(audio, torch.nn.functional.one_hot(ids, 3).float())
    torch.testing.assert_close(out_ids, out_w)


def test_padding_does_not_change_valid_frames():
    model = make()
    audio = torch.randn(1, 9, 8)
    alone = model(audio, torch.tensor([0]))
    padded = torch.cat([audio, torch.randn(1, 4, 8)], dim=1)
    mask = torch.zeros(1, 13, dtype=torch.bool)
    mask[:, :9] = True
    out = model(padded, torch.tensor([0]), mask)
    torch.testing.assert_close(out[:, :9], alone, atol=1e-5, rtol=1e-5)
