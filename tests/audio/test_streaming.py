"""StreamingEncoder: exact MelEncoder streaming, frame bookkeeping, latency, and a measured wav2vec2 bound."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audio.encoder import AudioEncoder
from audio.features import AudioFeatures
from audio.mel import MelEncoder
from audio.streaming import StreamingEncoder, StreamingError, concat_features

ASSET = Path(__file__).resolve().parents[2] / "assets" / "speech" / "arctic_a0009.wav"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def mel() -> MelEncoder:
    torch.manual_seed(0)
    return MelEncoder(output_dim=16, num_layers=3, kernel_size=5).eval()  # look-ahead 6 frames


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    from audio.io import load_audio

    return torch.from_numpy(load_audio(ASSET))[None]  # [1, N], 3.1 s


def split(wav: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """Cut [B, N] into consecutive pieces of the given sizes (cycled), the last one shorter."""
    pieces, start, i = [], 0, 0
    while start < wav.shape[1]:
        pieces.append(wav[:, start : start + sizes[i % len(sizes)]])
        start += sizes[i % len(sizes)]
        i += 1
    return pieces


class Opaque(AudioEncoder):
    """A MelEncoder that hides its receptive field, to exercise the path used for transformer encoders."""

    def __init__(self, inner: MelEncoder) -> None:
        super().__init__()
        self.inner = inner
        self.sample_rate, self.output_dim, self.frame_rate = (
            inner.sample_rate,
            inner.output_dim,
            inner.frame_rate,
        )

    def num_frames(self, num_samples: int) -> int:
        return self.inner.num_frames(num_samples)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> AudioFeatures:
        return self.inner(wav, lengths)


@pytest.mark.parametrize(
    ("chunk", "context", "sizes"),
    [(0.2, 2.0, [3200]), (0.02, None, [1, 77, 5000, 320]), (0.37, 0.0, [999, 4001]), (1.0, 0.5, [16000])],
)
def test_mel_streaming_matches_offline(
    mel: MelEncoder, chunk: float, context: float | None, sizes: list[int]
) -> None:
    torch.manual_seed(1)
    wav = torch.randn(2, 16000 * 2 + 123) * 0.1
    offline = mel(wav).x
    stream = StreamingEncoder(mel, chunk_seconds=chunk, left_context_seconds=context)
    parts = list(stream.encode_chunks(split(wav, sizes)))
    assert all(p.x.shape[1] > 0 and p.mask.all() for p in parts)
    streamed = concat_features(parts)
    assert streamed.x.shape == offline.shape == (2, 100, 16)
    assert (streamed.x - offline).abs().max().item() < 1e-5


def test_mel_context_is_the_receptive_field_minimum(mel: MelEncoder) -> None:
    # P = 3 layers * 2 = 6 look-ahead frames; left context (P - 1) * 320 + 400 samples = 7 frames.
    stream = StreamingEncoder(mel, chunk_seconds=0.2, left_context_seconds=0.0)
    assert (stream.lookahead_frames, stream.min_context_frames, stream.context_frames) == (6, 7, 7)
    assert stream.left_context_seconds == pytest.approx(0.14)
    assert StreamingEncoder(mel, left_context_seconds=1.0).context_frames == 50  # a longer request is kept
    # One frame less context than the minimum would break exactness: emulate it and see the error appear.
    torch.manual_seed(2)
    wav = torch.randn(1, 16000) * 0.1
    short = StreamingEncoder(mel, chunk_seconds=0.1, left_context_seconds=None)
    short.context_frames = short.min_context_frames - 1
    err = (concat_features(short.encode_chunks([wav])).x - mel(wav).x).abs().max().item()
    assert err > 1e-3


def test_frames_are_emitted_exactly_when_final(mel: MelEncoder) -> None:
    torch.manual_seed(3)
    wav = torch.randn(1, 16000) * 0.1
    offline = mel(wav).x
    stream = StreamingEncoder(mel, chunk_seconds=0.1)  # 5 frames per chunk
    emitted, got = 0, []
    for start in range(0, 16000, 1000):
        out = stream.push(wav[:, start : start + 1000])
        received = start + 1000
        done = (received // stream.chunk_samples) * stream.chunk_samples
        expected = max(0, done // 320 - 6)  # frames whose 6-frame look-ahead lies in processed chunks
        emitted += out.x.shape[1]
        assert emitted == expected
        got.append(out.x)
    rest = stream.flush()
    assert emitted + rest.x.shape[1] == 50
    assert torch.allclose(torch.cat(got + [rest.x], dim=1), offline, atol=1e-5)


def test_emitted_frames_do_not_depend_on_the_future(mel: MelEncoder) -> None:
    torch.manual_seed(4)
    past = torch.randn(1, 8000) * 0.1
    out = StreamingEncoder(mel).push(past)  # two complete chunks: frames 0..13 are final
    assert out.x.shape[1] == 20 - 6
    for future in (torch.zeros(1, 4000), torch.randn(1, 4000)):
        offline = mel(torch.cat([past, future], dim=1)).x
        assert (out.x - offline[:, :14]).abs().max().item() < 1e-5


def test_latency_properties(mel: MelEncoder) -> None:
    default = StreamingEncoder(MelEncoder())  # 2-layer kernel 3: look-ahead 2 frames = 40 ms
    assert default.chunk_samples == 3200 and default.lookahead_samples == 640
    assert default.latency_seconds == pytest.approx(0.24)
    odd = StreamingEncoder(mel, chunk_seconds=0.37)  # rounded up to 19 frames of 20 ms
    assert odd.chunk_seconds == pytest.approx(0.38)
    assert odd.latency_seconds == pytest.approx(0.38 + 6 * 0.02)


def test_generic_path_with_enough_lookahead_is_exact(mel: MelEncoder) -> None:
    opaque = Opaque(mel)
    torch.manual_seed(5)
    wav = torch.randn(1, 12000) * 0.1
    offline = mel(wav).x
    exact = StreamingEncoder(opaque, chunk_seconds=0.1, left_context_seconds=0.14, lookahead_seconds=0.12)
    assert not exact.exact and exact.lookahead_frames == 6
    got = concat_features(exact.encode_chunks(split(wav, [700]))).x
    assert (got - offline).abs().max().item() < 1e-5
    # Too little look-ahead for this receptive field: the generic path does not pretend to be exact.
    loose = StreamingEncoder(opaque, chunk_seconds=0.1, left_context_seconds=0.14, lookahead_seconds=0.04)
    assert (concat_features(loose.encode_chunks([wav])).x - offline).abs().max().item() > 1e-3


def test_short_stream_and_reset(mel: MelEncoder) -> None:
    stream = StreamingEncoder(mel)
    assert stream.push(torch.zeros(1, 100)).x.shape == (1, 0, 16)
    assert stream.flush().x.shape == (1, 0, 16)  # fewer samples than one frame
    assert list(stream.encode_chunks([np.zeros(200, dtype=np.float32)])) == []
    wav = torch.randn(1, 4000) * 0.1
    first = concat_features(stream.encode_chunks([wav])).x
    second = concat_features(stream.encode_chunks([wav])).x  # encode_chunks starts a fresh stream
    assert torch.equal(first, second) and first.shape == (1, 12, 16)


def test_errors(mel: MelEncoder) -> None:
    with pytest.raises(StreamingError, match="lookahead_seconds"):
        StreamingEncoder(mel, lookahead_seconds=0.02)
    with pytest.raises(StreamingError, match="chunk_seconds"):
        StreamingEncoder(mel, chunk_seconds=0)
    with pytest.raises(StreamingError, match="left_context_seconds=None"):
        StreamingEncoder(Opaque(mel), left_context_seconds=None)
    stream = StreamingEncoder(mel)
    with pytest.raises(StreamingError, match="before any push"):
        stream.flush()
    with pytest.raises(StreamingError, match=r"\[B, n\]"):
        stream.push(torch.zeros(1, 2, 3))
    stream.push(torch.zeros(2, 10))
    with pytest.raises(StreamingError, match="batch size"):
        stream.push(torch.zeros(3, 10))
    assert issubclass(StreamingError, ValueError)


def test_encode_long_streams_exactly_and_non_encoders_are_refused(mel: MelEncoder) -> None:
    torch.manual_seed(3)
    wav = torch.randn(1, 16000 + 77) * 0.1
    long = mel.encode_long(wav, window_seconds=0.3, context_seconds=0.1)  # AudioEncoder's generic version
    assert long.x.shape == mel(wav).x.shape and (long.x - mel(wav).x).abs().max().item() < 1e-5
    with pytest.raises(StreamingError, match="must be an AudioEncoder"):
        StreamingEncoder(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def test_streaming_does_not_import_the_encoder_module() -> None:
    """audio.encoder builds encode_long on audio.streaming, so streaming must not import it back (no cycle)."""
    import ast

    import audio.streaming

    tree = ast.parse(Path(audio.streaming.__file__).read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "audio.encoder" not in imported and "audio" not in imported


# Tiny random wav2vec2 on the first 2 s of the ARCTIC utterance, 0.2 s chunks, default 0.2 s look-ahead.
# Measured (torch 2.13, transformers 5.x, seed 0): mean / max abs diff to offline at left context
# 0.2 s: 0.225 / 1.60, 1.0 s: 0.155 / 1.38, 2.0 s (whole past): 0.124 / 1.38 (features have unit std).
# A frame misalignment or a wrong window would give a mean near 1.1 (two independent unit-std features).
HF_BOUNDS = {0.2: (0.26, 1.8), 1.0: (0.18, 1.6), 2.0: (0.145, 1.6)}


def test_wav2vec2_streaming_within_measured_bound(speech: torch.Tensor) -> None:
    transformers = pytest.importorskip("transformers")
    from audio.hf import HFSpeechEncoder

    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7
    )
    enc = HFSpeechEncoder.from_config(config, freeze="all").eval()
    wav = speech[:, :32000]
    offline = enc(wav).x
    means = {}
    for context, (mean_bound, max_bound) in HF_BOUNDS.items():
        stream = StreamingEncoder(enc, chunk_seconds=0.2, left_context_seconds=context)
        assert stream.lookahead_frames == 10 and stream.latency_seconds == pytest.approx(0.2 + 0.205)
        streamed = concat_features(stream.encode_chunks(split(wav, [3200]))).x
        assert streamed.shape == offline.shape == (1, 99, 32)
        diff = (streamed - offline).abs()
        means[context] = diff.mean().item()
        assert means[context] < mean_bound and diff.max().item() < max_bound, (context, means[context])
        # Frames computed in the final flush saw the whole remaining signal, like offline encoding: the tail
        # differs only through the missing distant past, far less than the stream's first frames.
        assert diff[0, -5:].max() < diff[0, :25].max()
    assert means[2.0] < means[1.0] < means[0.2]  # more context, closer to offline
