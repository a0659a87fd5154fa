"""Audio front-end speed: offline encoding, the feature cache's second epoch, and streaming overhead.

Encoders: a randomly initialised wav2vec2-base-sized model (transformers ``Wav2Vec2Config()`` defaults: 12
layers, hidden 768, 95M parameters; built offline from the config, no download), the default ``MelEncoder``
and ``PhoneEncoder`` (the real-voice default's: phone posteriors of the Sphinx acoustic model + its Conv1d
stack, memo off so every call computes). Run: ``python benchmarks/audio.py`` (about 2-3 minutes on 2 CPU threads). Figures are wall-clock
seconds (best of ``--repeats`` for runs under a second, otherwise a single run after a warm-up call). The
timings assume an otherwise idle machine: on a busy one, OpenMP threads spin-waiting for a core slow small ops
down by 10x or more (compare ``--threads 1``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a plain checkout

from audio.cache import FeatureCache  # noqa: E402
from audio.encoder import AudioEncoder  # noqa: E402
from audio.mel import MelEncoder  # noqa: E402
from audio.streaming import StreamingEncoder  # noqa: E402

SAMPLE_RATE = 16000


def speechlike(seconds: float, seed: int = 0) -> torch.Tensor:
    """[N] float32 test signal: noise shaped by a slow syllable-rate envelope (speech-like level changes)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
    return torch.from_numpy((0.1 * envelope * rng.standard_normal(n)).astype(np.float32))


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls; one call when the first takes more than a second."""
    best = float("inf")
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
        if i == 0 and best > 1.0:
            break
    return best


def build_encoders(skip_wav2vec2: bool) -> dict[str, AudioEncoder]:
    torch.manual_seed(0)
    encoders: dict[str, AudioEncoder] = {"mel": MelEncoder().requires_grad_(False).eval()}
    try:
        from audio.phone_encoder import PhoneEncoder

        encoders["phones"] = PhoneEncoder(memo=0).requires_grad_(False).eval()
    except ImportError as err:  # pocketsphinx (its acoustic model) not installed
        print(f"PhoneEncoder skipped: {err}")
    if not skip_wav2vec2:
        import transformers

        from audio.hf import HFSpeechEncoder

        encoders["wav2vec2-base"] = HFSpeechEncoder.from_config(
            transformers.Wav2Vec2Config(), freeze="all"
        ).eval()
    return encoders


class ForwardTimer:
    """Times every forward call of a module through hooks, so one cache miss yields the bare encoder time too."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.seconds = 0.0
        self._start = 0.0
        module.register_forward_pre_hook(self._pre)
        module.register_forward_hook(self._post)

    def _pre(self, *_: object) -> None:
        self._start = time.perf_counter()

    def _post(self, *_: object) -> None:
        self.seconds += time.perf_counter() - self._start


def bench_offline_and_cache(
    name: str, enc: AudioEncoder, durations: list[float], repeats: int, root: Path
) -> None:
    enc(speechlike(1.0)[None])  # warm-up: allocator, oneDNN kernels
    timer = ForwardTimer(enc)
    cache = FeatureCache(root / name, enc)
    start = time.perf_counter()
    _ = cache.fingerprint
    fingerprint_s = time.perf_counter() - start
    for seconds in durations:
        wav = speechlike(seconds)
        path = root / f"{name}-{seconds:g}s.wav"
        sf.write(path, wav.numpy(), SAMPLE_RATE, subtype="FLOAT")
        timer.seconds = 0.0
        start = time.perf_counter()
        first = cache.get(path)  # epoch 1 = without cache: decode + encode (+ hash and atomic write)
        epoch1 = time.perf_counter() - start
        encode = in_miss = timer.seconds
        if encode < 1.0:  # cheap encoders: best of repeats for the bare encoder time
            with torch.no_grad():
                encode = min(encode, timed(lambda wav=wav: enc(wav[None]), repeats))
        epoch2 = timed(lambda path=path: cache.get(path), repeats)  # epoch 2: hash file + load entry
        assert torch.equal(cache.get(path), first) and cache.misses == durations.index(seconds) + 1
        print(
            f"{name:14s} {seconds:3.0f} s audio: encode {encode:7.3f} s ({seconds / encode:6.1f}x real time); "
            f"cache epoch 1 {epoch1:7.3f} s (store overhead {(epoch1 - in_miss) * 1e3:6.1f} ms), "
            f"epoch 2 {epoch2 * 1e3:6.2f} ms ({encode / epoch2:5.0f}x faster than encoding)"
        )
    print(f"{name:14s} encoder fingerprint (first call hashes all weights): {fingerprint_s * 1e3:.1f} ms")


def bench_streaming(
    name: str, enc: AudioEncoder, seconds: float, chunk: float, context: float | None,
    lookahead: float | None = None,
) -> None:
    wav = speechlike(seconds, seed=1)
    with torch.no_grad():
        start = time.perf_counter()
        offline = enc(wav[None]).x
        offline_s = time.perf_counter() - start
    stream = StreamingEncoder(enc, chunk_seconds=chunk, left_context_seconds=context, lookahead_seconds=lookahead)
    step = stream.chunk_samples
    per_chunk: list[float] = []
    parts = []
    start = time.perf_counter()
    for i in range(0, wav.shape[0], step):
        tick = time.perf_counter()
        parts.append(stream.push(wav[None, i : i + step]).x)
        per_chunk.append(time.perf_counter() - tick)
    parts.append(stream.flush().x)
    total = time.perf_counter() - start
    streamed = torch.cat(parts, dim=1)
    diff = (streamed - offline).abs()
    per_chunk_ms = sorted(t * 1e3 for t in per_chunk)
    p95 = per_chunk_ms[min(len(per_chunk_ms) - 1, int(0.95 * len(per_chunk_ms)))]
    print(
        f"{name:14s} stream {seconds:3.0f} s, chunk {stream.chunk_seconds:.2f} s, context "
        f"{stream.left_context_seconds:.2f} s: total {total:7.2f} s vs offline {offline_s:6.2f} s "
        f"({total / offline_s:5.1f}x); per chunk mean {statistics.mean(per_chunk_ms):7.1f} ms, p95 {p95:7.1f} ms "
        f"({stream.chunk_seconds * 1e3:.0f} ms of audio); algorithmic latency {stream.latency_seconds * 1e3:.0f} ms; "
        f"|stream - offline| mean {diff.mean():.2e} max {diff.max():.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--durations", type=float, nargs="+", default=[10.0, 60.0], help="audio lengths (s)")
    parser.add_argument("--repeats", type=int, default=3, help="best-of repeats for sub-second runs")
    parser.add_argument("--skip-wav2vec2", action="store_true", help="only the MelEncoder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    encoders = build_encoders(args.skip_wav2vec2)
    with tempfile.TemporaryDirectory(prefix="talk-audio-bench-") as tmp:
        for name, enc in encoders.items():
            params = sum(p.numel() for p in enc.parameters())
            print(f"--- {name} ({params / 1e6:.1f}M parameters)")
            bench_offline_and_cache(name, enc, args.durations, args.repeats, Path(tmp))
        print(
            "--- streaming (push one chunk at a time; per-chunk time is the compute latency each chunk adds)"
        )
        bench_streaming("mel", encoders["mel"], 60.0, 0.2, None)
        bench_streaming("mel", encoders["mel"], 60.0, 0.2, 2.0)
        if "phones" in encoders:  # batch CMN over each window: an approximation of offline, measured here
            bench_streaming("phones", encoders["phones"], 10.0, 0.2, 2.0, lookahead=0.2)
        if "wav2vec2-base" in encoders:
            bench_streaming("wav2vec2-base", encoders["wav2vec2-base"], 10.0, 0.2, 2.0)
            bench_streaming("wav2vec2-base", encoders["wav2vec2-base"], 10.0, 0.5, 1.0)


if __name__ == "__main__":
    main()
