import math

import pytest
import torch

from motion.tokens.quantizer import ResidualVQ
from motion.tokens.tokenizer import MotionTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make(
    stride: int = 1, causal: bool = False, dim: int = 6, dropout: float = 0.0, io_kernel: int = 3, **rvq
) -> MotionTokenizer:
    torch.manual_seed(0)
    quantizer = ResidualVQ(dim=8, num_quantizers=3, codebook_size=16, quantizer_dropout=dropout, **rvq)
    return MotionTokenizer(motion_dim=dim, latent_dim=8, hidden_dim=16, stride=stride, num_res_blocks=2,
                           causal=causal, quantizer=quantizer, io_kernel=io_kernel)  # fmt: skip


def smooth_motion(batch: int, frames: int, dim: int, seed: int) -> torch.Tensor:
    """Sums of sinusoids (0.2-2 Hz at 30 fps) mixed into ``dim`` channels."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(frames) / 30.0
    freq = 0.2 + 1.8 * torch.rand(batch, 4, 2, 1, generator=g)
    phase = 2 * math.pi * torch.rand(batch, 4, 2, 1, generator=g)
    sources = torch.sin(2 * math.pi * freq * t + phase).sum(2)  # [B, 4, T]
    mix = torch.randn(4, dim, generator=torch.Generator().manual_seed(99)) / 2
    return torch.einsum("bst,sd->btd", sources, mix)


@pytest.mark.parametrize("stride", [1, 2, 4])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("io_kernel", [1, 3])
def test_shapes_for_every_stride_and_odd_lengths(stride, causal, io_kernel):
    model = make(stride, causal, io_kernel=io_kernel)
    motion_side = (model.encoder.net[0], model.decoder.net[-1])
    assert [conv.kernel_size[0] for conv in motion_side] == [io_kernel, io_kernel]
    for frames in (1, 7, 33):
        motion = torch.randn(2, frames, 6)
        mask = torch.ones(2, frames, dtype=torch.bool)
        mask[1, frames // 2 + 1 :] = False
        out = model.train()(motion, mask)
        tq = math.ceil(frames / stride)
        assert model.num_tokens(frames) == tq
        assert out.reconstruction.shape == (2, frames, 6)
        assert out.codes.shape == (2, 3, tq) and out.codes.dtype == torch.long
        assert out.perplexity.shape == (3,) and out.usage.shape == (3,)
        assert model.eval().encode(motion).shape == (2, 3, tq)
        assert model.decode(model.encode(motion), frames).shape == (2, frames, 6)
    assert model.token_rate == 1 / stride and model.num_quantizers == 3 and model.codebook_size == 16


def test_straight_through_gradient_reaches_the_encoder():
    model = make(stride=2).train()
    motion = torch.randn(2, 12, 6)
    out = model(motion)
    (out.reconstruction - motion).pow(2).mean().backward()  # reconstruction only: no commitment path
    first_conv = model.encoder.net[0].weight.grad
    assert first_conv is not None and first_conv.abs().sum() > 0 and torch.isfinite(first_conv).all()
    assert model.decoder.net[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_encode_decode_round_trip_equals_forward_in_eval(stride):
    model = make(stride)
    model.train()(torch.randn(4, 20, 6))  # initialise the codebooks
    model.eval()
    motion = torch.randn(3, 33, 6)
    out = model(motion)
    codes = model.encode(motion)
    assert torch.equal(codes, out.codes)
    torch.testing.assert_close(model.decode(codes, 33), out.reconstruction, atol=1e-5, rtol=1e-5)


def test_decoding_more_codebooks_reduces_the_error_after_a_short_fit():
    torch.manual_seed(0)
    quantizer = ResidualVQ(dim=8, num_quantizers=4, codebook_size=32, quantizer_dropout=0.5, decay=0.9)
    model = MotionTokenizer(motion_dim=12, latent_dim=8, hidden_dim=32, stride=1, num_res_blocks=1,
                            quantizer=quantizer)  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(80):
        motion = smooth_motion(8, 32, 12, seed=step)
        out = model(motion)
        loss = (out.reconstruction - motion).pow(2).mean() + out.commitment_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test = smooth_motion(16, 32, 12, seed=10_000)
    codes = model.encode(test)
    errors = [(model.decode(codes[:, :k], 32) - test).pow(2).mean().item() for k in range(1, 5)]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.5 * errors[0] and errors[-1] < 0.1 * test.var().item(), errors


@pytest.mark.parametrize("stride", [1, 2, 4])
@pytest.mark.parametrize("io_kernel", [1, 3])
def test_causal_tokenizer_never_looks_ahead(stride, io_kernel):
    model = make(stride, causal=True, io_kernel=io_kernel)
    model.train()(torch.randn(2, 16, 6))
    model.eval()
    motion = torch.randn(1, 16, 6)
    cut = 8  # a multiple of every stride
    poked = motion.clone()
    poked[:, cut:] += 3.0
    a, b = model(motion), model(poked)
    torch.testing.assert_close(a.reconstruction[:, :cut], b.reconstruction[:, :cut])
    assert torch.equal(a.codes[..., : cut // stride], b.codes[..., : cut // stride])
    assert (a.reconstruction[:, cut:] - b.reconstruction[:, cut:]).abs().max() > 0
    # the non-causal model does look ahead
    free = make(stride)
    free.train()(torch.randn(2, 16, 6))
    free.eval()
    assert (free(motion).reconstruction[:, :cut] - free(poked).reconstruction[:, :cut]).abs().max() > 0


def test_padding_content_is_ignored():
    model = make(stride=2)
    motion = torch.randn(2, 11, 6)
    mask = torch.ones(2, 11, dtype=torch.bool)
    mask[0, 7:] = False
    garbage = motion.clone()
    garbage[0, 7:] = 1e4
    zeros = motion.clone()
    zeros[0, 7:] = 0.0
    torch.manual_seed(3)
    a = model.train()(garbage, mask)
    model_b = make(stride=2)
    torch.manual_seed(3)
    b = model_b.train()(zeros, mask)
    torch.testing.assert_close(a.reconstruction, b.reconstruction)
    torch.testing.assert_close(a.commitment_loss, b.commitment_loss)
    torch.testing.assert_close(model.quantizer.codebooks, model_b.quantizer.codebooks)
    assert model.token_mask(mask, 11).tolist() == [[True] * 4 + [False] * 2, [True] * 6]


@pytest.mark.parametrize("stride", [2, 4])
def test_a_sequence_encodes_the_same_alone_and_in_any_batch(stride):
    """Odd lengths complete their last token with their own last frame, never with what the batch's padding holds,
    so batching (and, under DDP, sharding) does not change a sequence's tokens or latents."""
    model = make(stride=stride).eval()
    long, short = smooth_motion(1, 13, 6, seed=1), smooth_motion(1, 7, 6, seed=2)
    batch = torch.zeros(2, 13, 6)
    batch[0], batch[1, :7] = long[0], short[0]
    mask = torch.zeros(2, 13, dtype=torch.bool)
    mask[0], mask[1, :7] = True, True
    together = model._encode_latent(batch, mask)
    torch.testing.assert_close(together[:1], model._encode_latent(long, None), atol=1e-6, rtol=1e-5)
    n = model.num_tokens(7)
    torch.testing.assert_close(together[1:, :n], model._encode_latent(short, None), atol=1e-6, rtol=1e-5)
    # and decodes the same: the reconstruction of its valid frames ignores the batch's padding
    out = model(batch, mask)
    torch.testing.assert_close(out.reconstruction[1:, :7], model(short).reconstruction, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.reconstruction[:1], model(long).reconstruction, atol=1e-6, rtol=1e-5)


def test_normalization_is_applied_and_inverted():
    model, reference = make(), make()
    model.train()(torch.randn(2, 10, 6))
    reference.load_state_dict(model.state_dict())
    mean, std = torch.linspace(-1, 1, 6), torch.linspace(0.5, 2, 6)
    model.set_normalization(mean, std)
    model.eval(), reference.eval()
    motion = torch.randn(2, 10, 6)
    expected = reference((motion - mean) / std).reconstruction * std + mean
    torch.testing.assert_close(model(motion).reconstruction, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="std"):
        model.set_normalization(0.0, 0.0)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="stride"):
        MotionTokenizer(motion_dim=6, stride=3)
    with pytest.raises(ValueError, match="io_kernel=2"):
        MotionTokenizer(motion_dim=6, io_kernel=2)
    with pytest.raises(ValueError, match="latent_dim=8"):
        MotionTokenizer(motion_dim=6, latent_dim=8, quantizer=ResidualVQ(dim=4))
    model = make().eval()
    with pytest.raises(ValueError, match="motion_dim"):
        model(torch.randn(1, 5, 7))
    with pytest.raises(ValueError, match="mask"):
        model(torch.randn(1, 5, 6), torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="length"):
        make(stride=4).decode(torch.zeros(1, 3, 2, dtype=torch.long), 4)
