import copy
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from motion.tokens.quantizer import ResidualVQ, VectorQuantizer, codebook_stats

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def clustered(centers: torch.Tensor, per_cluster: int, noise: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = centers.repeat_interleave(per_cluster, 0)
    return x + noise * torch.randn(x.shape, generator=g)


def test_codebook_stats_on_known_assignments():
    ppl, use = codebook_stats(torch.tensor([0, 0, 1, 1]), 4)
    assert ppl.item() == pytest.approx(2.0) and use.item() == pytest.approx(0.5)
    ppl, use = codebook_stats(torch.tensor([3, 1, 2, 0]), 8)
    assert ppl.item() == pytest.approx(4.0) and use.item() == pytest.approx(0.5)
    ppl, use = codebook_stats(torch.tensor([5, 5, 5]), 8)
    assert ppl.item() == pytest.approx(1.0) and use.item() == pytest.approx(1 / 8)
    p = torch.tensor([0.75, 0.25])
    ppl, _ = codebook_stats(torch.tensor([0, 0, 0, 1]), 2)
    assert ppl.item() == pytest.approx(torch.exp(-(p * p.log()).sum()).item())


def test_forward_reports_perplexity_usage_and_commitment_on_a_known_codebook():
    rvq = ResidualVQ(
        dim=2, num_quantizers=2, codebook_size=4, kmeans_init=False, commitment_weight=0.5
    ).eval()
    rvq.layers[0].embed.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]))
    rvq.layers[1].embed.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    # level-0 codes 0,0,1,2 and level-1 codes 1,1,1,1; then a 0.1 offset that neither level captures.
    x = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [11.0, 0.0], [1.0, 10.0]]]) + torch.tensor([0.1, 0.0])
    out = rvq(x)
    assert out.codes.tolist() == [[[0, 0, 1, 2], [1, 1, 1, 1]]]
    ppl0 = torch.exp(-(torch.tensor([0.5, 0.25, 0.25]) * torch.tensor([0.5, 0.25, 0.25]).log()).sum())
    torch.testing.assert_close(out.perplexity, torch.stack([ppl0, torch.tensor(1.0)]))
    torch.testing.assert_close(out.usage, torch.tensor([0.75, 0.25]))
    # level 0 residual error: (1.1^2 + 0) / 2 per position; level 1: 0.1^2 / 2; weight 0.5.
    expected = 0.5 * ((1.1**2) / 2 + (0.1**2) / 2)
    assert out.commitment_loss.item() == pytest.approx(expected, rel=1e-5)


def test_straight_through_gradient_and_commitment_gradient_reach_the_input():
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=4, num_quantizers=3, codebook_size=8, quantizer_dropout=0.0)
    x = torch.randn(2, 10, 4, requires_grad=True)
    out = rvq(x)
    (out.quantized * torch.arange(4.0)).sum().backward()
    torch.testing.assert_close(x.grad, torch.arange(4.0).expand(2, 10, 4))  # identity Jacobian
    x.grad = None
    rvq(x).commitment_loss.backward()
    assert x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()


def test_ema_update_with_laplace_smoothing_matches_hand_computation():
    vq = VectorQuantizer(dim=2, codebook_size=3, decay=0.9, kmeans_init=False, eps=0.1)
    vq.embed.copy_(torch.tensor([[0.0, 0.0], [4.0, 4.0], [9.0, 9.0]]))
    vq.cluster_size.copy_(torch.tensor([2.0, 1.0, 1.0]))
    vq.embed_sum.copy_(torch.tensor([[0.0, 0.0], [4.0, 4.0], [9.0, 9.0]]) * vq.cluster_size[:, None])
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    vq.update(x, vq.nearest(x))
    size = torch.tensor([0.9 * 2 + 0.1 * 2, 0.9 * 1 + 0.1 * 1, 0.9 * 1])
    sums = torch.tensor([[0.1, 0.1], [0.9 * 4 + 0.5, 0.9 * 4 + 0.5], [0.9 * 9, 0.9 * 9]])
    n = size.sum()
    smoothed = (size + 0.1) / (n + 3 * 0.1) * n
    torch.testing.assert_close(vq.cluster_size, size)
    torch.testing.assert_close(vq.embed_sum, sums)
    torch.testing.assert_close(vq.embed, sums / smoothed[:, None])


def test_kmeans_init_places_one_code_on_each_data_cluster():
    torch.manual_seed(0)
    centers = torch.randn(8, 6) * 5
    x = clustered(centers, 40, 0.01)[torch.randperm(320)].reshape(4, 80, 6)
    rvq = ResidualVQ(dim=6, num_quantizers=1, codebook_size=8, quantizer_dropout=0.0, threshold_dead=0.0)
    out = rvq(x)
    assert bool(rvq.layers[0].initted)
    assert (out.quantized - x).pow(2).mean() < 1e-3 * x.var()
    distance = torch.cdist(centers, rvq.codebooks[0])
    assert distance.min(dim=1).values.max() < 0.05  # every cluster has a code at its centre
    assert out.usage.item() == 1.0 and out.perplexity.item() == pytest.approx(8.0, rel=1e-3)


def test_each_level_is_initialised_on_its_own_residuals():
    torch.manual_seed(0)
    coarse, fine = torch.randn(4, 3) * 20, torch.randn(4, 3)
    centers = (coarse[:, None] + fine[None]).reshape(16, 3)
    x = clustered(centers, 20, 0.005).reshape(4, 80, 3)
    rvq = ResidualVQ(dim=3, num_quantizers=2, codebook_size=4, quantizer_dropout=0.0, threshold_dead=0.0)
    rvq(x)
    one = rvq.decode(rvq.encode(x, num_quantizers=1))
    two = rvq.decode(rvq.encode(x))
    assert (two - x).pow(2).mean() < 1e-3 * (one - x).pow(2).mean()
    assert torch.cdist(coarse, rvq.codebooks[0]).min(dim=1).values.max() < 0.3
    # level 1 learned the fine offsets (relative to the coarse centroids, which absorb their mean)
    fine_centered = fine - fine.mean(0)
    assert torch.cdist(fine_centered, rvq.codebooks[1]).min(dim=1).values.max() < 0.3


def test_dead_code_is_replaced_together_with_its_ema_statistics():
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=2, codebook_size=3, decay=0.9, threshold_dead=1.0, kmeans_init=False)
    vq.embed.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0]]))
    vq.cluster_size.copy_(torch.tensor([5.0, 5.0, 1.0]))
    vq.embed_sum.copy_(vq.embed * vq.cluster_size[:, None])
    x = torch.tensor([[0.1, 0.0], [0.0, 0.1], [1.0, 0.9], [0.9, 1.0], [0.2, 0.1]])
    codes = vq.nearest(x)
    assert 2 not in codes.tolist()  # code 2 gets no assignment this step
    vq.update(x, codes)
    live = vq.embed[:2].clone()
    replaced = vq.replace_dead(x)
    assert replaced.tolist() == [False, False, True]
    assert any(torch.equal(vq.embed[2], row) for row in x)  # re-initialised from a current input
    assert vq.cluster_size[2].item() == 1.0
    torch.testing.assert_close(vq.embed_sum[2], vq.embed[2] * 1.0)  # no stale (100, 100) sum left behind
    torch.testing.assert_close(vq.embed[:2], live)
    # the next EMA step keeps the new code near the data instead of dragging it back to its old sum
    vq.update(x, vq.nearest(x))
    assert vq.embed[2].abs().max() < 2.0


def test_dead_codes_are_revived_during_training():
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=4, num_quantizers=1, codebook_size=16, kmeans_init=False, quantizer_dropout=0.0)
    rvq.layers[0].embed.mul_(50.0)  # far from the data: most codes never win
    rvq.layers[0].embed_sum.copy_(rvq.layers[0].embed)
    x = torch.randn(4, 64, 4)
    first = rvq(x).usage.item()
    for _ in range(20):
        last = rvq(x).usage.item()
    assert first < 0.5 and last > 0.8


def test_masked_padding_does_not_affect_codebooks_or_losses():
    torch.manual_seed(0)
    base = ResidualVQ(dim=3, num_quantizers=3, codebook_size=8, quantizer_dropout=0.0, decay=0.8)
    x = torch.randn(2, 12, 3)
    padded = torch.cat([x, 1e3 * torch.randn(2, 7, 3)], dim=1)
    mask = torch.zeros(2, 19, dtype=torch.bool)
    mask[:, :12] = True
    a, b = copy.deepcopy(base), copy.deepcopy(base)
    for _ in range(3):
        torch.manual_seed(1)
        out_a = a(x)
        torch.manual_seed(1)
        out_b = b(padded, mask)
    for key, value in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[key], value, msg=key)
    torch.testing.assert_close(out_b.commitment_loss, out_a.commitment_loss)
    torch.testing.assert_close(out_b.perplexity, out_a.perplexity)
    torch.testing.assert_close(out_b.usage, out_a.usage)
    assert torch.equal(out_b.codes[:, :, :12], out_a.codes)


def test_quantizer_dropout_uses_fewer_codebooks_in_training_only():
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=4, num_quantizers=4, codebook_size=8, quantizer_dropout=1.0)
    x = torch.randn(2, 16, 4)
    depths = []
    for _ in range(30):
        out = rvq(x)
        depths.append(out.num_quantizers)
        assert out.codes.shape == (2, out.num_quantizers, 16)
        assert (out.perplexity[out.num_quantizers :] == 0).all() and (
            out.perplexity[: out.num_quantizers] > 0
        ).all()
    assert set(depths) == {1, 2, 3, 4}
    assert rvq(x, num_quantizers=3).num_quantizers == 3  # explicit depth overrides dropout
    rvq.eval()
    assert all(rvq(x).num_quantizers == 4 for _ in range(10))
    assert rvq.encode(x).shape == (2, 4, 16)


def test_eval_is_deterministic_and_never_updates_codebooks():
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=4, num_quantizers=2, codebook_size=8)
    x = torch.randn(3, 20, 4)
    for _ in range(3):
        rvq(x)
    rvq.eval()
    before = copy.deepcopy(rvq.state_dict())
    first, second = rvq(x + 0.5), rvq(x + 0.5)
    assert torch.equal(first.codes, second.codes) and torch.equal(first.quantized, second.quantized)
    rvq.train()
    codes = rvq.encode(x * 3)  # encode never trains, even in training mode
    for key, value in rvq.state_dict().items():
        assert torch.equal(value, before[key]), key
    torch.testing.assert_close(rvq.decode(codes), rvq.eval()(x * 3).quantized)


def test_checkpoint_round_trip_keeps_initialised_codebooks():
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=4, num_quantizers=2, codebook_size=8)
    rvq(torch.randn(2, 30, 4))
    fresh = ResidualVQ(dim=4, num_quantizers=2, codebook_size=8)
    assert not bool(fresh.layers[0].initted)
    fresh.load_state_dict(rvq.state_dict())
    assert all(bool(layer.initted) for layer in fresh.layers)
    torch.testing.assert_close(fresh.codebooks, rvq.codebooks)


def test_invalid_arguments_and_codes_raise_clear_errors():
    with pytest.raises(ValueError, match="decay"):
        ResidualVQ(decay=1.0)
    rvq = ResidualVQ(dim=4, num_quantizers=2, codebook_size=8).eval()
    with pytest.raises(ValueError, match=r"\[B, Tq, 4\]"):
        rvq(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="num_quantizers"):
        rvq(torch.randn(2, 5, 4), num_quantizers=3)
    with pytest.raises(ValueError, match="lie in"):
        rvq.decode(torch.full((1, 2, 5), 8))
    with pytest.raises(ValueError, match="K'"):
        rvq.decode(torch.zeros(1, 3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        rvq.decode(torch.zeros(1, 2, 5))


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(100 + rank)  # ranks draw different random numbers on purpose
    data = torch.randn(2, 4, 10, 3, generator=torch.Generator().manual_seed(7))
    plain = ResidualVQ(dim=3, num_quantizers=2, codebook_size=6, kmeans_init=False, quantizer_dropout=0.0,
                       threshold_dead=0.0)  # fmt: skip
    torch.manual_seed(5)
    plain.load_state_dict(
        ResidualVQ(dim=3, num_quantizers=2, codebook_size=6, kmeans_init=False).state_dict()
    )
    full = ResidualVQ(dim=3, num_quantizers=3, codebook_size=6, quantizer_dropout=0.5)
    torch.manual_seed(100 + rank)
    for _ in range(4):
        plain(data[rank])
        full(data[rank] * (rank + 1))
    torch.save({"plain": plain.state_dict(), "full": full.state_dict()}, os.path.join(out_dir, f"{rank}.pt"))
    dist.destroy_process_group()


def test_distributed_ranks_share_one_codebook_equal_to_the_pooled_batch(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"{r}.pt") for r in (0, 1))
    for key in r0["full"]:  # k-means, dead-code picks and dropout depth all agree across ranks
        assert torch.equal(r0["full"][key], r1["full"][key]), key
    # EMA over two ranks == one process seeing both ranks' data as one batch
    data = torch.randn(2, 4, 10, 3, generator=torch.Generator().manual_seed(7))
    torch.manual_seed(5)
    single = ResidualVQ(dim=3, num_quantizers=2, codebook_size=6, kmeans_init=False, quantizer_dropout=0.0,
                        threshold_dead=0.0)  # fmt: skip
    for _ in range(4):
        single(data.reshape(8, 10, 3))
    for key, value in single.state_dict().items():
        torch.testing.assert_close(r0["plain"][key], value, msg=key)


def test_low_precision_input_is_quantized_in_float32():
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=4, num_quantizers=2, codebook_size=8)
    rvq(torch.randn(2, 30, 4))
    rvq.eval()
    x = torch.randn(2, 9, 4).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = rvq(x)
    assert out.quantized.dtype == torch.bfloat16
    assert torch.equal(out.codes, rvq(x.float()).codes)
