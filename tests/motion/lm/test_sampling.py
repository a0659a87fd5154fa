import dataclasses

import pytest
import torch

from motion.lm import Sampling, SamplingConfigError
from motion.lm.sampling import filter_logits, sample_tokens
from talk.errors import UserError


@pytest.mark.parametrize(
    "kw,field",
    [
        (dict(temperature=-1.0), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(top_k=-1), "top_k"),
        (dict(top_k=2.5), "top_k"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_p=-0.1), "top_p"),
        (dict(cfg_scale=float("inf")), "cfg_scale"),
        (dict(cfg_scale=float("nan")), "cfg_scale"),
        (dict(seed=1.5), "seed"),
        (dict(seed="3"), "seed"),
    ],
)
def test_invalid_settings_name_the_field_and_the_fix(kw, field):
    with pytest.raises(SamplingConfigError, match=rf"^{field}=.* must ") as info:
        Sampling(**kw)
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)


def test_valid_settings_and_frozen():
    sampling = Sampling(temperature=0.7, top_k=5, top_p=0.9, cfg_scale=-0.5, seed=None)
    assert (sampling.temperature, sampling.top_k, sampling.top_p, sampling.cfg_scale) == (0.7, 5, 0.9, -0.5)
    assert Sampling() == Sampling(1.0, 0, 0.0, 1.0, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sampling.temperature = 0.0


def test_greedy_means_temperature_zero():
    assert Sampling(temperature=0.0).greedy and Sampling(temperature=0).greedy
    assert not Sampling().greedy and not Sampling(temperature=1e-6).greedy


def test_generator_rule():
    assert Sampling(temperature=0.0, seed=3).generator("cpu") is None  # greedy draws nothing
    assert Sampling(seed=None).generator("cpu") is None  # torch's global generator
    sampling = Sampling(seed=3)
    a, b = sampling.generator("cpu"), sampling.generator(torch.device("cpu"))
    assert isinstance(a, torch.Generator) and a is not b  # fresh per call...
    expected = torch.rand(4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.rand(4, generator=a), expected)  # ...seeded with seed
    assert torch.equal(torch.rand(4, generator=b), expected)


def test_one_generator_per_sequence():
    assert Sampling(temperature=0.0).generators(3) is None and Sampling(seed=None).generators(3) is None
    gens = Sampling(seed=3).generators(2, "cpu")
    assert len(gens) == 2 and gens[0] is not gens[1]
    logits = torch.randn(2, 4, 9, generator=torch.Generator().manual_seed(1))
    rows = sample_tokens(logits, Sampling(seed=3), gens)
    alone = sample_tokens(logits[1:], Sampling(seed=3), Sampling(seed=3).generators(1))
    assert torch.equal(rows[1:], alone)  # row 1 draws what it draws alone
    with pytest.raises(ValueError, match="3 generators for a batch of 2"):
        sample_tokens(logits, Sampling(seed=3), Sampling(seed=3).generators(3))


def test_sample_tokens_follows_the_contract():
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample_tokens(logits, Sampling(temperature=0.0)), logits.argmax(-1))
    assert torch.equal(sample_tokens(logits, Sampling(top_k=1), torch.Generator()), logits.argmax(-1))
    sampling = Sampling(temperature=0.8, top_p=0.9, seed=2)
    first = sample_tokens(logits, sampling, sampling.generator("cpu"))
    assert torch.equal(first, sample_tokens(logits, sampling, sampling.generator("cpu")))
    kept = filter_logits(logits, top_k=3).isfinite().sum(-1)
    assert (kept == 3).all()


def test_probabilities_at_the_sampling_temperature():
    logits = torch.randn(3, 6)
    torch.testing.assert_close(Sampling(temperature=0.0).probabilities(logits), logits.softmax(-1))
    torch.testing.assert_close(
        Sampling(temperature=0.5, top_k=1).probabilities(logits), (logits / 0.5).softmax(-1)
    )
