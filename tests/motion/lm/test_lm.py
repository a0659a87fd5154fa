import dataclasses

import pytest
import torch

import motion.lm.transformer as transformer
from motion.lm import Generation, LMLoss, MotionLM, MotionLMConfigError, MotionLMInputError, Sampling
from talk.errors import UserError

GREEDY = Sampling(temperature=0.0)

K, C, DA = 3, 11, 6


def make(pattern="delay", **kw):
    torch.manual_seed(0)
    args = dict(num_codebooks=K, codebook_size=C, audio_dim=DA, d_model=32, num_layers=2, num_heads=2,
                ff_dim=64, pattern=pattern, num_styles=3, lookahead=2, max_context=64, dropout=0.1)  # fmt: skip
    args.update(kw)
    model = MotionLM(**args).eval()
    # Larger random conditioning vectors than the init so that audio, style and CFG visibly move the logits.
    with torch.no_grad():
        for p in (model.null_cond, model.audio_pad, model.bos):
            p.normal_(std=1.0)
        model.style_emb.weight.normal_(std=1.0)
    return model


def data(b=2, tq=13, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, tq, DA, generator=g), torch.randint(0, C, (b, K, tq), generator=g)


STYLE = torch.tensor([0, 2])


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and barriers stall when the cores are shared."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("pattern", ["delay", "parallel"])
@pytest.mark.parametrize("max_context", [64, 5])  # 5 < S: the ring buffer wraps, forward uses the window mask
def test_kv_cache_decoding_equals_full_forward(pattern, max_context):
    model = make(pattern, max_context=max_context)
    audio, codes = data()
    full = model(codes, audio, STYLE)
    cached = model.forward_cached(codes, audio, STYLE)
    assert full.logits.shape == (2, K, model.pattern.num_steps(13), C)
    assert full.mask.shape == (K, model.pattern.num_steps(13))
    torch.testing.assert_close(cached.logits, full.logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pattern", ["delay", "parallel"])
def test_greedy_generation_is_the_argmax_of_the_teacher_forced_model(pattern):
    model = make(pattern)
    audio, _ = data(tq=17)
    codes = model.generate(audio, STYLE, sampling=GREEDY).codes
    assert codes.shape == (2, K, 17) and codes.dtype == torch.long
    out = model(codes, audio, STYLE)  # cfg_scale=1: the conditional model alone
    sequence = model.pattern.build(codes).sequence
    assert torch.equal(out.logits.argmax(-1)[:, out.mask], sequence[:, out.mask])


@pytest.mark.parametrize("pattern", ["delay", "parallel"])
@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_stream_equals_generate_greedy(pattern, chunk):
    model = make(pattern)
    audio, _ = data(tq=20)
    offline = model.generate(audio, STYLE, sampling=GREEDY)
    pieces = list(model.stream(audio.split(chunk, dim=1), STYLE, sampling=GREEDY))
    assert all(isinstance(p, Generation) and p.probs is None for p in pieces)
    assert all(p.codes.shape[:2] == (2, K) and p.num_frames >= 1 for p in pieces)
    assert torch.equal(torch.cat([p.codes for p in pieces], dim=-1), offline.codes)


@pytest.mark.parametrize(
    "sampling", [Sampling(temperature=0.9, top_k=5, top_p=0.9, cfg_scale=2.0, seed=3), Sampling()]
)
def test_stream_equals_generate_when_sampling_with_a_seed(sampling):
    """The generator comes from the Sampling inside each call: a stream draws exactly what generate draws."""
    model = make("delay")
    audio, _ = data(tq=15)
    offline = model.generate(audio, STYLE, sampling=sampling).codes
    chunks = [audio[:, :4], audio[:, 4:4], audio[:, 4:11], audio[:, 11:]]  # includes an empty chunk
    online = model.stream(chunks, STYLE, sampling=sampling)
    assert torch.equal(torch.cat([p.codes for p in online], dim=-1), offline)
    assert torch.equal(model.generate(audio, STYLE, sampling=sampling).codes, offline)  # a fresh generator


@pytest.mark.parametrize("pattern,lookahead", [("delay", 2), ("delay", 0), ("delay", 4), ("parallel", 1)])
def test_stream_yields_each_frame_as_soon_as_its_audio_allows(pattern, lookahead):
    model = make(pattern, lookahead=lookahead)
    audio, _ = data(b=2, tq=12)
    latency = max(lookahead, model.pattern.max_delay - 1)
    yielded = []

    def chunks():
        for i in range(12):
            # Frames yielded before frame i arrives: all those whose audio (and successors) is in.
            assert sum(yielded) == max(0, i - latency), (i, sum(yielded))
            yield audio[:, i : i + 1]

    for piece in model.stream(chunks(), STYLE, sampling=GREEDY):
        yielded.append(piece.num_frames)
    assert sum(yielded) == 12


@pytest.mark.parametrize("pattern", ["delay", "parallel"])
def test_audio_impulse_never_reaches_frames_before_t_minus_lookahead(pattern):
    model = make(pattern, lookahead=2)
    audio, codes = data(tq=16)
    t = 10
    poked = audio.clone()
    poked[:, t] += 5.0
    base, out = model(codes, audio, STYLE).logits, model(codes, poked, STYLE).logits
    changed = torch.zeros(K, 16, dtype=torch.bool)  # [codebook, frame]
    for k in range(K):
        for q in range(16):
            s = model.pattern.step_of(q, k)
            changed[k, q] = not torch.equal(base[:, k, s], out[:, k, s])
    assert not changed[:, : t - 2].any()
    assert changed[:, t - 2].any()  # the look-ahead is really used: frame t - lookahead hears frame t
    # Greedy generation agrees: codes of frames before t - lookahead are the same.
    a, b = model.generate(audio, STYLE, sampling=GREEDY), model.generate(poked, STYLE, sampling=GREEDY)
    assert torch.equal(a.codes[..., : t - 2], b.codes[..., : t - 2])


def test_codes_in_range_and_reproducible_sampling():
    model = make("delay")
    audio, _ = data(tq=25)

    def draw(seed):
        return model.generate(audio, STYLE, sampling=Sampling(temperature=1.3, seed=seed)).codes

    a = draw(7)
    assert a.shape == (2, K, 25) and int(a.min()) >= 0 and int(a.max()) < C
    assert torch.equal(a, draw(7))
    assert not torch.equal(a, draw(8))
    # seed=None draws from torch's global generator.
    torch.manual_seed(5)
    b = draw(None)
    torch.manual_seed(5)
    assert torch.equal(b, draw(None))
    assert model.generate(audio, STYLE, num_frames=9, sampling=GREEDY).codes.shape == (2, K, 9)
    empty = model.generate(audio, STYLE, num_frames=0, return_probs=True)
    assert empty.codes.shape == (2, K, 0) and empty.probs.shape == (2, K, 0, C)


def test_sampled_tokens_of_a_sequence_do_not_depend_on_its_batch():
    """Each sequence draws from its own generator: a sequence batched with others (or sharded to another process
    under DDP) gets the tokens it gets alone, with or without guidance."""
    model = make("delay")
    audio, _ = data(tq=15)
    for sampling in (Sampling(temperature=1.3, seed=4), Sampling(temperature=1.0, cfg_scale=2.0, seed=4)):
        both = model.generate(audio, STYLE, sampling=sampling).codes
        for b in range(2):
            alone = model.generate(audio[b : b + 1], STYLE[b : b + 1], sampling=sampling).codes
            assert torch.equal(both[b : b + 1], alone)
        assert not torch.equal(both[0], both[1])


def test_top_k_1_and_tiny_top_p_equal_greedy():
    model = make("delay")
    audio, _ = data(tq=14)
    greedy = model.generate(audio, STYLE, sampling=GREEDY).codes
    top1 = model.generate(audio, STYLE, sampling=Sampling(temperature=1.5, top_k=1))
    nucleus = model.generate(audio, STYLE, sampling=Sampling(temperature=1.5, top_p=1e-6))
    assert torch.equal(top1.codes, greedy) and torch.equal(nucleus.codes, greedy)
    # Greedy ignores top-k, top-p and the seed.
    assert torch.equal(model.generate(audio, STYLE, sampling=Sampling(0.0, 3, 0.5, seed=None)).codes, greedy)


def test_cfg_combines_conditional_and_null_branches():
    model = make("delay")
    audio, _ = data(tq=14)
    cond_only = model.generate(audio, STYLE, sampling=GREEDY).codes
    scale = 2.5
    codes = model.generate(audio, STYLE, sampling=Sampling(temperature=0.0, cfg_scale=scale)).codes
    assert not torch.equal(codes, cond_only)
    c = model(codes, audio, STYLE, drop_condition=torch.tensor([False, False]))
    u = model(codes, audio, STYLE, drop_condition=torch.tensor([True, True]))
    guided = (u.logits + scale * (c.logits - u.logits)).argmax(-1)
    sequence = model.pattern.build(codes).sequence
    assert torch.equal(guided[:, c.mask], sequence[:, c.mask])


def test_sliding_window_keeps_attention_and_memory_flat(monkeypatch):
    model = make("delay", max_context=16)
    audio, _ = data(b=1, tq=150)
    seen = []
    real = transformer.F.scaled_dot_product_attention

    def spy(q, k, v, *args, **kw):
        seen.append((k.shape[2], k.untyped_storage().data_ptr()))
        return real(q, k, v, *args, **kw)

    monkeypatch.setattr(transformer.F, "scaled_dot_product_attention", spy)
    codes = model.generate(audio, STYLE[:1], sampling=Sampling(temperature=0.8)).codes
    steps = model.pattern.num_steps(150)
    layers = len(model.blocks)
    assert codes.shape == (1, K, 150) and int(codes.max()) < C
    assert len(seen) == steps * layers
    # Keys attended at step s: min(s + 1, window); the cache storage is the same buffer at every step.
    assert [n for n, _ in seen[::layers]] == [min(s + 1, 16) for s in range(steps)]
    assert len({ptr for _, ptr in seen}) == 1  # one preallocated buffer for all layers


def test_padding_mask_matches_the_unpadded_sequence():
    model = make("delay")
    audio, codes = data(b=1, tq=9)
    alone = model(codes, audio, STYLE[:1])
    pad_audio = torch.cat([audio, torch.randn(1, 4, DA)], dim=1)
    pad_codes = torch.cat([codes, torch.full((1, K, 4), -1)], dim=-1)  # garbage on padded frames is fine
    mask = torch.arange(13)[None] < 9
    out = model(pad_codes, pad_audio, STYLE[:1], mask)
    s = model.pattern.num_steps(9)
    torch.testing.assert_close(out.logits[..., :s, :], alone.logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(out.mask[0, :, :s], alone.mask) and not out.mask[0, :, s:].any()


def test_style_weights_equal_ids():
    model = make("parallel")
    audio, codes = data()
    a = model(codes, audio, STYLE).logits
    b = model(codes, audio, torch.nn.functional.one_hot(STYLE, 3).float()).logits
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, model(codes, audio, torch.tensor([1, 1])).logits)


def test_loss_decreases_on_a_learnable_task():
    torch.manual_seed(0)
    model = MotionLM(num_codebooks=2, codebook_size=8, audio_dim=DA, d_model=32, num_layers=1, num_heads=2,
                     ff_dim=64, pattern="delay", num_styles=2, lookahead=1, dropout=0.0, cfg_dropout=0.1)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(16, 12, DA, generator=g)
    base = audio[..., :4].argmax(-1) * 2 + (audio[..., 4] > 0).long()  # in [0, 8): a function of the frame
    codes = torch.stack([base, (base + 3) % 8], dim=1)
    style = torch.zeros(16, dtype=torch.long)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model.loss(codes, audio, style)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
        losses.append(loss.total.item())
    assert isinstance(loss, LMLoss) and loss.per_codebook.shape == (2,)
    assert losses[0] > 1.8  # ~ln 8 at init
    assert losses[-1] < 0.35 * losses[0]


def test_input_errors_are_clear():
    model = make("delay")
    audio, codes = data()
    with pytest.raises(MotionLMInputError, match="audio_dim=6"):
        model.generate(torch.randn(2, 5, 4), STYLE)
    with pytest.raises(MotionLMInputError, match="style ids"):
        model.generate(audio, torch.tensor([0, 3]))
    with pytest.raises(MotionLMInputError, match="num_frames=99"):
        model.generate(audio, STYLE, num_frames=99)
    with pytest.raises(MotionLMInputError, match="codebook_size=11"):
        model(codes + C, audio, STYLE)
    with pytest.raises(MotionLMInputError, match="frame count"):
        model(codes, audio[:, :5], STYLE)
    with pytest.raises(MotionLMInputError, match="batch"):
        model.generate(audio[:1], STYLE)
    with pytest.raises(MotionLMInputError, match="batch"):
        list(model.stream([audio[:1]], STYLE))
    with pytest.raises(MotionLMInputError, match="audio chunk"):
        list(model.stream([audio[..., :4]], STYLE))
    with pytest.raises(TypeError, match="Sampling"):
        model.generate(audio, STYLE, sampling=dict(temperature=0.0))


def test_token_corruption_changes_only_training_inputs():
    model = make(dropout=0.0, cfg_dropout=0.0, token_corruption=0.5)
    audio, codes = data()
    reference = make(dropout=0.0, cfg_dropout=0.0)
    reference.load_state_dict(model.state_dict())
    # Eval mode never corrupts: identical logits to an uncorrupted twin.
    assert torch.equal(model(codes, audio, STYLE).logits, reference(codes, audio, STYLE).logits)
    model.train()
    reference.train()
    torch.manual_seed(3)
    corrupted = model.loss(codes, audio, STYLE).total
    clean = reference.loss(codes, audio, STYLE).total
    assert not torch.isclose(corrupted, clean)  # the inputs were replaced...
    # ...but only the inputs: the first step reads BOS alone, so its logits are untouched by corruption.
    torch.manual_seed(3)
    first = model(codes, audio, STYLE).logits[:, :, 0]
    assert torch.allclose(first, reference(codes, audio, STYLE).logits[:, :, 0], atol=1e-6)


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_token_corruption_must_be_a_probability(value):
    with pytest.raises(ValueError, match="token_corruption"):
        make(token_corruption=value)


@pytest.mark.parametrize("pattern", ["delay", "parallel"])
def test_generate_returns_the_distribution_each_token_was_chosen_from(pattern):
    model = make(pattern)
    audio, _ = data(tq=9)
    out = model.generate(audio, STYLE, sampling=GREEDY, return_probs=True)
    codes, probs = out.codes, out.probs
    assert torch.equal(codes, model.generate(audio, STYLE, sampling=GREEDY).codes)
    assert probs.shape == (2, K, 9, C) and not probs.is_inference()
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, K, 9))
    assert torch.equal(probs.argmax(-1), codes)  # greedy: frame layout lines up with the codes
    # The same distributions as the teacher-forced model on these codes, mapped from steps to frames.
    logits = model(codes, audio, STYLE).logits
    expected = torch.stack([logits[:, k, d : d + 9] for k, d in enumerate(model.pattern.delays)], 1)
    torch.testing.assert_close(probs, expected.softmax(-1), atol=1e-5, rtol=1e-4)
    # Sampling: the distribution at the sampling temperature.
    hot = model.generate(audio, STYLE, sampling=Sampling(temperature=0.5), return_probs=True).probs
    assert hot.max(-1).values.mean() > probs.max(-1).values.mean()


@pytest.mark.parametrize("pattern", ["delay", "parallel"])
def test_stream_returns_the_same_distributions_as_generate(pattern):
    model = make(pattern)
    audio, _ = data(tq=16)
    offline = model.generate(audio, STYLE, sampling=GREEDY, return_probs=True)
    pieces = list(model.stream(audio.split(3, dim=1), STYLE, sampling=GREEDY, return_probs=True))
    assert all(isinstance(p, Generation) and p.probs.shape[:3] == p.codes.shape for p in pieces)
    assert torch.equal(torch.cat([p.codes for p in pieces], dim=-1), offline.codes)
    torch.testing.assert_close(torch.cat([p.probs for p in pieces], dim=2), offline.probs)


def test_codebook_weights_reweight_the_loss():
    audio, codes = data()
    plain = make(pattern="parallel", dropout=0.0, cfg_dropout=0.0)
    loss = plain.loss(codes, audio, STYLE)
    # Parallel pattern: every codebook has the same count.
    torch.testing.assert_close(loss.total, loss.per_codebook.mean())
    coarse = make(pattern="parallel", dropout=0.0, cfg_dropout=0.0, codebook_weights=[1.0, 0.0, 0.0])
    weighted = coarse.loss(codes, audio, STYLE)
    torch.testing.assert_close(weighted.per_codebook, loss.per_codebook)  # logged losses stay unweighted
    torch.testing.assert_close(weighted.total, loss.per_codebook[0])
    for bad in ([1.0, 1.0], [1.0, -1.0, 1.0], [0.0, 0.0, 0.0]):
        with pytest.raises(ValueError, match="codebook_weights"):
            make(codebook_weights=bad)


def test_generate_and_stream_return_generations():
    model = make("delay")
    audio, _ = data(tq=8)
    out = model.generate(audio, STYLE)
    assert isinstance(out, Generation) and out.probs is None
    assert out.codes.shape == (2, K, 8) and out.num_frames == 8 and not out.codes.is_inference()
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.codes = out.codes
    pieces = list(model.stream(audio.split(2, dim=1), STYLE, return_probs=True))
    assert pieces and all(isinstance(p, Generation) and p.probs.shape == (*p.codes.shape, C) for p in pieces)
    assert sum(p.num_frames for p in pieces) == 8
    with pytest.raises(ValueError, match="long"):
        Generation(torch.zeros(1, K, 2))


def test_model_errors_are_user_errors():
    for error in (MotionLMInputError, MotionLMConfigError):
        assert issubclass(error, UserError) and issubclass(error, ValueError)
    with pytest.raises(MotionLMConfigError, match="lookahead"):
        make(lookahead=-1)
