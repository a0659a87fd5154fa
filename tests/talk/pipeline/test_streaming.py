"""Streaming animation with the flagship model equals offline animation; the streaming decoder is exact."""

from __future__ import annotations

import pytest
import soundfile as sf
import torch

from motion.lm import Sampling
from motion.tokens.quantizer import ResidualVQ
from motion.tokens.stream_decode import StreamingTokenDecoder, decoder_reach
from motion.tokens.tokenizer import MotionTokenizer


@pytest.mark.parametrize("stride", [1, 2, 4])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("io_kernel", [1, 3])
def test_streaming_decoder_equals_offline_decode(stride, causal, io_kernel):
    torch.manual_seed(0)
    quantizer = ResidualVQ(dim=8, num_quantizers=3, codebook_size=16)
    tok = MotionTokenizer(motion_dim=12, latent_dim=8, hidden_dim=16, stride=stride, num_res_blocks=2,
                          causal=causal, quantizer=quantizer, io_kernel=io_kernel).eval()  # fmt: skip
    codes = torch.randint(0, 16, (2, 3, 23))
    length = 23 * stride - (stride - 1)
    reference = tok.decode(codes, length)
    for chunk in (1, 3, 7):
        decoder = StreamingTokenDecoder(tok)
        parts = [decoder.push(codes[..., i : i + chunk]) for i in range(0, 23, chunk)]
        parts.append(decoder.flush(length))
        streamed = torch.cat(parts, dim=1)
        assert streamed.shape == reference.shape
        torch.testing.assert_close(streamed, reference, atol=1e-5, rtol=0)
    left, right = decoder_reach(tok)
    assert right == 1 if causal else right > 1  # causal: no future token beyond the margin
    assert left > 1


def test_streaming_decoder_emits_frames_after_its_right_reach():
    torch.manual_seed(0)
    quantizer = ResidualVQ(dim=8, num_quantizers=2, codebook_size=16)
    tok = MotionTokenizer(motion_dim=6, latent_dim=8, hidden_dim=16, stride=2, num_res_blocks=1,
                          quantizer=quantizer).eval()  # fmt: skip
    decoder = StreamingTokenDecoder(tok)
    codes = torch.randint(0, 16, (1, 2, 30))
    emitted = [decoder.push(codes[..., i : i + 1]).shape[1] for i in range(30)]
    first = next(i for i, n in enumerate(emitted) if n)
    assert first == decoder.latency_tokens  # token 0's frames leave once `right` more tokens exist
    assert all(n == 2 for n in emitted[first:])  # then one token's frames per token


@pytest.mark.parametrize(
    ("checkpoint", "chunk_seconds"), [("lm_ckpt", 0.1), ("lm_ckpt", 0.37), ("flame_lm_ckpt", 0.37)]
)
def test_stream_equals_offline_animation(checkpoint, synth_root, chunk_seconds, request):
    """Vertex motion, and FLAME motion turned into vertices by the tokenizer's face model."""
    from talk.pipeline import Pipeline, Streamer

    torch.manual_seed(0)
    model = Pipeline.from_checkpoint(request.getfixturevalue(checkpoint))
    wav, sr = sf.read(synth_root / "wav" / "SYN_09_F_sentence01.wav", dtype="float32")
    wav = torch.from_numpy(wav[: int(1.3 * sr)])
    offline = model.generate(wav, subject="SYN_01_F").vertices[0]
    animator = Streamer(model, subject="SYN_01_F", chunk_seconds=chunk_seconds)
    parts = list(animator.stream_file(wav))
    streamed = torch.cat(parts)
    assert len(parts) > 3  # frames really came out in pieces, before the end of the audio
    assert streamed.shape == offline.shape
    torch.testing.assert_close(streamed, offline, atol=1e-4, rtol=0)
    stats = animator.stats
    assert stats.frames == offline.shape[0] and stats.first_frame_latency is not None
    assert 0 < animator.latency_seconds() < 2.0


def test_stream_rejects_a_regression_model():
    import functools

    from audio.mel import MelEncoder
    from motion.regression.regressor import FaceFormerRegressor
    from talk.errors import CheckpointError
    from talk.pipeline import Streamer
    from talk.training.regression import RegressionModule

    regressor = functools.partial(FaceFormerRegressor, d_model=16, num_layers=1, num_heads=2, ff_dim=32)
    module = RegressionModule(MelEncoder(sample_rate=16000, output_dim=8, num_layers=1), regressor, motion_dim=12,
                              num_styles=2, basis_components=None)  # fmt: skip
    with pytest.raises(CheckpointError, match="token model"):
        Streamer(module.model)


def test_animate_stream_cli_writes_the_video_and_meshes(lm_ckpt, synth_root, tmp_path):
    import numpy as np

    from render import probe_video
    from tests.talk.clitools import talk

    wav = synth_root / "wav" / "SYN_10_M_sentence01.wav"
    out = tmp_path / "stream.mp4"
    proc = talk("animate", "--audio", str(wav), "--checkpoint", str(lm_ckpt), "--output", str(out), "--size", "64",
                "--stream", "--export-meshes", str(tmp_path / "meshes"), "--mesh-format", "npz", cwd=tmp_path)  # fmt: skip
    assert "first frame" in proc.stdout and "algorithmic latency" in proc.stdout
    info = probe_video(out)
    duration = sf.info(str(wav)).duration
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert 0 <= info.n_frames / 30.0 - duration <= 1 / 30
    meshes = np.load(tmp_path / "meshes" / "meshes.npz")
    assert meshes["vertices"].shape[0] == info.n_frames


def _small_flagship(window: float | None, **options):
    import functools

    from audio.mel import MelEncoder
    from motion.lm.model import MotionLM
    from talk.pipeline import Assets
    from talk.training.audio_to_motion import AudioToMotionModule

    torch.manual_seed(0)
    tok = MotionTokenizer(motion_dim=12, latent_dim=8, hidden_dim=16, stride=2, num_res_blocks=1,
                          quantizer=ResidualVQ(dim=8, num_quantizers=2, codebook_size=16))  # fmt: skip
    lm = functools.partial(
        MotionLM, d_model=32, num_layers=1, num_heads=2, ff_dim=64, pattern="parallel", lookahead=2
    )
    encoder = MelEncoder(sample_rate=16000, output_dim=16, num_layers=2)
    module = AudioToMotionModule(encoder, lm, motion_dim=12, num_styles=2, fps=30.0, tokenizer=tok,
                                 encoder_window_seconds=window, encoder_context_seconds=0.3, **options)  # fmt: skip
    module.assets = Assets(("A", "B"), {"A": torch.zeros(4, 3), "B": torch.zeros(4, 3)}, sample_rate=16000)
    return module.eval().model


def test_long_audio_is_encoded_in_windows_with_the_same_result_for_an_exact_encoder(monkeypatch):
    wav = torch.randn(int(3.3 * 16000)) * 0.1
    whole = _small_flagship(None).generate(wav, subject="A").vertices
    windowed_model = _small_flagship(1.0)
    calls = []
    forward = type(windowed_model.audio_encoder).forward
    monkeypatch.setattr(type(windowed_model.audio_encoder), "forward",
                        lambda self, x, n=None: calls.append(x.shape[1]) or forward(self, x, n))  # fmt: skip
    windowed = windowed_model.generate(wav, subject="A").vertices
    assert len(calls) > 3 and max(calls) < 2.0 * 16000  # several short windows, never the whole input
    torch.testing.assert_close(windowed, whole, atol=1e-5, rtol=0)


def test_flagship_checkpoint_loads_without_the_tokenizer_file(lm_ckpt, tokenizer_ckpt, tmp_path):
    """The LM checkpoint carries its tokenizer's config and weights: moving the tokenizer file breaks nothing."""
    import shutil

    from talk.pipeline import Pipeline
    from talk.training.checkpoints import load_model

    reference = load_model(lm_ckpt).model
    moved = tmp_path / "tokenizer.ckpt"
    shutil.move(tokenizer_ckpt, moved)
    try:
        models = [load_model(lm_ckpt).model, Pipeline.from_checkpoint(lm_ckpt)]
    finally:
        shutil.move(moved, tokenizer_ckpt)
    for model in models:
        for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items(), strict=True):
            assert torch.equal(a, b), name


def test_decode_options_use_a_codebook_prefix_or_the_expected_latent():
    model = _small_flagship(None)
    gen = model.generator
    # untrained codebooks start at zero: give them code vectors
    for layer in gen.tokenizer.quantizer.layers:
        layer.embed.normal_(generator=torch.Generator().manual_seed(1))
    wav = torch.randn(int(1.5 * 16000)) * 0.1
    n = torch.tensor([wav.shape[0]])
    frames = torch.tensor([37])
    template = torch.zeros(1, 4, 3)
    style = torch.tensor([0])
    with torch.no_grad():
        tokens = gen.num_tokens(frames)
        features = gen.token_features(model.features(wav[None], n), tokens, model.fps)
        out = gen.lm.generate(features, style, int(tokens.max()), model.sampling, return_probs=True)
        full = model.generate(wav[None], n, frames, template, style).vertices
        gen.decode_codebooks = 1
        coarse = model.generate(wav[None], n, frames, template, style).vertices
        gen.decode_latent = "expected"
        soft = model.generate(wav[None], n, frames, template, style).vertices
    tok = gen.tokenizer
    torch.testing.assert_close(full.flatten(2), tok.decode(out.codes, 37))
    torch.testing.assert_close(coarse.flatten(2), tok.decode(out.codes[:, :1], 37))
    latent = out.probs[:, 0] @ tok.quantizer.codebooks[0]  # [B, Tq, latent]
    torch.testing.assert_close(soft.flatten(2), tok.decode_latent(latent, 37))
    assert not torch.allclose(full, coarse) and not torch.allclose(coarse, soft)
    with pytest.raises(ValueError, match="decode_codebooks=9"):
        _small_flagship(None, decode_codebooks=9)
    with pytest.raises(ValueError, match="decode_latent='mean'"):
        _small_flagship(None, decode_latent="mean")


def test_streaming_decoder_takes_latents_as_decode_latent_does():
    torch.manual_seed(0)
    tok = MotionTokenizer(motion_dim=12, latent_dim=8, hidden_dim=16, stride=2, num_res_blocks=2,
                          quantizer=ResidualVQ(dim=8, num_quantizers=3, codebook_size=16)).eval()  # fmt: skip
    z = torch.randn(1, 19, 8)
    reference = tok.decode_latent(z, 37)
    decoder = StreamingTokenDecoder(tok)
    parts = [decoder.push_latent(z[:, i : i + 4]) for i in range(0, 19, 4)]
    streamed = torch.cat([*parts, decoder.flush(37)], dim=1)
    torch.testing.assert_close(streamed, reference, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="latents"):
        decoder.push_latent(torch.randn(1, 2, 5))


SAMPLED = {"sampling": Sampling(temperature=1.5, top_k=8)}
EXPECTED = {"decode_latent": "expected"}
DECODINGS = [{}, {"decode_codebooks": 1}, EXPECTED, SAMPLED, {**SAMPLED, **EXPECTED}]


@pytest.mark.parametrize("options", DECODINGS)
def test_stream_equals_offline_for_every_decoding(options):
    """Sampled decoding included: the stream draws from a generator seeded as the model's own."""
    model = _small_flagship(None, **options)
    for layer in model.generator.tokenizer.quantizer.layers:
        layer.embed.normal_(generator=torch.Generator().manual_seed(1))
    wav = torch.randn(int(1.2 * 16000)) * 0.1
    offline = model.generate(wav, subject="A").vertices[0]
    streamed = torch.cat(list(model.stream(wav[i : i + 2400] for i in range(0, wav.shape[0], 2400))))
    torch.testing.assert_close(streamed, offline, atol=1e-5, rtol=0)


def test_sampled_animation_is_reproducible_per_seed():
    from dataclasses import replace

    model = _small_flagship(None, **SAMPLED)
    for layer in model.generator.tokenizer.quantizer.layers:
        layer.embed.normal_(generator=torch.Generator().manual_seed(1))
    wav = torch.randn(int(1.2 * 16000)) * 0.1

    def animate():  # noqa: ANN202
        return model.generate(wav, subject="A").vertices

    first = animate()
    torch.rand(3)  # the global generator moves on; a seeded model does not depend on it
    assert torch.equal(animate(), first)
    seeded = model.sampling
    model.sampling = replace(seeded, seed=1)
    assert not torch.equal(animate(), first)
    model.sampling = replace(seeded, seed=None)  # torch's global generator (seed_everything)
    torch.manual_seed(5)
    drawn = animate()
    torch.manual_seed(5)
    assert torch.equal(animate(), drawn)
    model.sampling = replace(seeded, temperature=0.0)  # greedy
    assert not torch.equal(animate(), first)


def test_animate_seed_draws_another_animation(lm_ckpt, synth_root, tmp_path):
    import numpy as np

    from talk.cli.animate import animate

    wav = synth_root / "wav" / "SYN_10_M_sentence01.wav"

    def meshes(name: str, **seed) -> np.ndarray:
        animate(wav, lm_ckpt, tmp_path / f"{name}.mp4", size=16, export_meshes=tmp_path / name, mesh_format="npz",
                **seed)  # fmt: skip
        return np.load(tmp_path / name / "meshes.npz")["vertices"]

    stored = meshes("stored")  # experiments/synthetic/lm.yaml samples, with seed 0
    assert np.array_equal(meshes("zero", seed=0), stored)
    assert not np.array_equal(meshes("one", seed=1), stored)
