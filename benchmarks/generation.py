"""Audio -> motion end to end: the flagship (encoder + RVQ MotionLM + token decoder) against the encoder alone and
against the FaceFormer-style regression baseline, offline and streaming, in one run.

Run: ``python benchmarks/generation.py [--seconds 10 60] [--encoder base|tiny] [--repeats 2]``.

Setting (stated in the output): 2 torch threads; a randomly initialised wav2vec2-base-sized encoder (hidden
768, 12 layers, 12 heads, the standard 7-layer conv feature extractor; speed does not depend on the weights);
the flagship as configured in experiments/synthetic/lm.yaml (tokenizer stride 2, K=4 codebooks of 256, per-frame
linear motion-side layers, LM d_model 256 x 4 layers, parallel pattern, look-ahead 3, a 256-step attention
window, codebook loss weights do not matter here, seeded sampling at temperature 1 with expected-latent
decoding) over a FLAME-size motion (5023 vertices); the baseline as in experiments/synthetic/faceformer.yaml
with the same encoder. Speech is the bundled ARCTIC utterance tiled to length. Each figure is the best of
``--repeats`` calls.

Figures:
* offline: encoder-only time (whole input, and as the flagship runs it: ``HFSpeechEncoder.encode_long`` on inputs
  over 10 s, which computes the convolutional features once and runs the transformer in 10 s windows with 0.5 s
  of context, so a self-attention encoder's cost grows linearly with the length), flagship total
  (``AudioToMotion.generate``: encoder + token-rate alignment + sampled generation + decoding), regression total, for
  each length; the flagship's overhead over the encoder as it runs it (target <= 1.2x) and its growth
  t(60 s) / t(10 s) (target <= 6.5);
* streaming (``talk.pipeline.Streamer``, 0.2 s chunks pushed as fast as possible): first-frame latency
  after the chunk that completes it (target <= 200 ms) and sustained frames/s (target >= 30), for the mel
  encoder (exact streaming) and for the wav2vec2-base encoder (0.5 s left context), plus the algorithmic latency
  (audio a frame waits for after its own time).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audio.hf import HFSpeechEncoder  # noqa: E402
from audio.io import load_audio  # noqa: E402
from audio.mel import MelEncoder  # noqa: E402
from motion.lm import MotionLM, Sampling  # noqa: E402
from motion.regression.regressor import FaceFormerRegressor  # noqa: E402
from motion.tokens.quantizer import ResidualVQ  # noqa: E402
from motion.tokens.tokenizer import MotionTokenizer  # noqa: E402
from talk.pipeline import Assets, AudioToMotion, Streamer  # noqa: E402
from talk.training.audio_to_motion import AudioToMotionModule  # noqa: E402
from talk.training.regression import RegressionModule  # noqa: E402

THREADS = 2
FPS = 30.0
SAMPLE_RATE = 16000
VERTICES = 5023
SUBJECTS = ["S1", "S2"]


def wav2vec2_encoder(size: str) -> HFSpeechEncoder:
    from transformers import Wav2Vec2Config

    if size == "base":
        config = Wav2Vec2Config()  # wav2vec2-base: hidden 768, 12 layers, 12 heads, ff 3072
    else:
        config = Wav2Vec2Config(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128
        )
    torch.manual_seed(0)
    return HFSpeechEncoder.from_config(config, freeze="all").eval()


def with_assets(module, template: torch.Tensor) -> AudioToMotion:  # noqa: ANN001
    """The training module's inference model, with the assets a checkpoint would carry."""
    module.assets = Assets(tuple(SUBJECTS), {s: template for s in SUBJECTS}, sample_rate=SAMPLE_RATE, fps=FPS)
    return module.eval().model


def flagship(encoder, template: torch.Tensor) -> AudioToMotion:  # noqa: ANN001
    torch.manual_seed(0)
    quantizer = ResidualVQ(dim=64, num_quantizers=4, codebook_size=256)
    tokenizer = MotionTokenizer(VERTICES * 3, latent_dim=64, hidden_dim=128, stride=2, num_res_blocks=1,
                                io_kernel=1, quantizer=quantizer)  # fmt: skip
    lm = functools.partial(MotionLM, d_model=256, num_layers=4, num_heads=4, ff_dim=1024, pattern="parallel",
                           lookahead=3, dropout=0.0, max_context=256)  # fmt: skip
    module = AudioToMotionModule(encoder, lm, motion_dim=VERTICES * 3, num_styles=len(SUBJECTS), fps=FPS,
                                 tokenizer=tokenizer, sampling=Sampling(seed=0), decode_latent="expected")  # fmt: skip
    return with_assets(module, template)


def regression(encoder, template: torch.Tensor) -> AudioToMotion:  # noqa: ANN001
    torch.manual_seed(0)
    generator = functools.partial(FaceFormerRegressor, d_model=128, num_layers=2, num_heads=4, ff_dim=256,
                                  dropout=0.0, lookback=6, lookahead=3)  # fmt: skip
    module = RegressionModule(encoder, generator, motion_dim=VERTICES * 3, num_styles=len(SUBJECTS), fps=FPS,
                              basis_components=None)  # fmt: skip
    return with_assets(module, template)


def best_of(fn, repeats: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def speech(seconds: float) -> torch.Tensor:
    wav = load_audio(ROOT / "assets" / "speech" / "arctic_a0009.wav", sample_rate=SAMPLE_RATE)
    n = int(seconds * SAMPLE_RATE)
    return torch.from_numpy(np.resize(wav, n).astype(np.float32))


def streaming_figures(module, wav: torch.Tensor, left_context: float | None) -> tuple[float, float, float]:  # noqa: ANN001
    animator = Streamer(module, subject=SUBJECTS[0], chunk_seconds=0.2, left_context_seconds=left_context)
    for _ in animator.stream_file(wav[:SAMPLE_RATE]):  # warm-up (first-call allocations)
        pass
    frames = sum(v.shape[0] for v in animator.stream_file(wav))
    stats = animator.stats
    assert frames == stats.frames
    return stats.first_frame_latency, stats.frames_per_second, animator.latency_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--encoder", choices=["base", "tiny"], default="base")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stream-seconds", type=float, default=10.0)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    template = torch.zeros(VERTICES, 3)

    encoder = wav2vec2_encoder(args.encoder)
    flag = flagship(encoder, template)
    base = regression(encoder, template)
    print(f"torch {torch.__version__}, {THREADS} threads, load average {os.getloadavg()[0]:.2f}; "
          f"wav2vec2-{args.encoder} random init, {VERTICES} vertices, {FPS:g} fps")  # fmt: skip
    print(f"\noffline (seconds, best of {args.repeats}); the flagship encodes inputs over "
          f"{flag.encoder_window_seconds:g} s in windows with {flag.encoder_context_seconds:g} s of context")  # fmt: skip
    print(f"{'audio':>7} {'encoder whole':>14} {'encoder as used':>16} {'flagship':>9} {'x encoder':>10} "
          f"{'regression':>11} {'x encoder':>10}")  # fmt: skip
    totals = {}
    for seconds in args.seconds:
        wav = speech(seconds)
        lengths = torch.tensor([wav.shape[0]])
        with torch.inference_mode():
            t_enc = best_of(lambda w=wav, n=lengths: encoder(w[None], n), args.repeats)
            t_used = best_of(lambda w=wav, n=lengths: flag.features(w[None], n), args.repeats)
            t_flag = best_of(lambda w=wav: flag.generate(w, subject=SUBJECTS[0]), args.repeats)
            t_reg = best_of(lambda w=wav: base.generate(w, subject=SUBJECTS[0]), args.repeats)
        print(f"{seconds:6.0f}s {t_enc:14.2f} {t_used:16.2f} {t_flag:9.2f} {t_flag / t_used:9.2f}x {t_reg:11.2f} "
              f"{t_reg / t_enc:9.2f}x")  # fmt: skip
        totals[seconds] = t_flag
    if len(args.seconds) >= 2:
        a, b = args.seconds[0], args.seconds[-1]
        print(f"flagship growth t({b:g} s) / t({a:g} s) = {totals[b] / totals[a]:.2f} "
              f"(linear: {b / a:.1f}; target <= 6.5 for 60/10)")  # fmt: skip

    print(f"\nstreaming {args.stream_seconds:g} s of audio in 0.2 s chunks (fed as fast as possible)")
    print(f"{'encoder':>28} {'first frame (ms)':>17} {'frames/s':>9} {'algorithmic latency (ms)':>25}")
    wav = speech(args.stream_seconds)
    mel = MelEncoder(sample_rate=SAMPLE_RATE, output_dim=128, num_layers=3).eval()
    for name, enc, left in (
        ("mel (exact)", mel, None),
        (f"wav2vec2-{args.encoder}, 0.5 s context", encoder, 0.5),
    ):
        module = flagship(enc, template)
        first, fps, latency = streaming_figures(module, wav, left)
        print(f"{name:>28} {1000 * first:17.0f} {fps:9.1f} {1000 * latency:25.0f}")
    print("targets: first frame <= 200 ms after its chunk, >= 30 frames/s sustained")


if __name__ == "__main__":
    main()
