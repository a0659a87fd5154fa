"""MotionLM generation speed: KV-cached decoding against re-running the full prefix, and streaming latency.

Run: ``python benchmarks/lm_generation.py [--long] [--baseline-max-frames 300] [--realtime-seconds 10]``.
Uses 2 torch threads (``torch.set_num_threads(2)``). The model is the default MotionLM: d_model=256, 4 layers,
4 heads, ff 1024, K=4 codebooks of C=256, delay pattern, lookahead 2, random weights (speed does not depend on
training). Motion is at 30 fps; a tokenizer stride s gives Tq = T / s token frames.

Measured in one run:
* ``generate`` for 10 s and 60 s of motion at stride 1 and 2 (``--long`` adds 10 min, past the 2048-step
  window, to show flat per-step cost); greedy, nucleus sampling, and CFG (two branches batched);
* the same, decoding with the process's 2 intra-op threads instead of MotionLM's default ``decode_threads=1``;
* the baseline: the same model generating WITHOUT the KV cache (full forward over the prefix each step), up to
  ``--baseline-max-frames`` token frames (it is quadratic), checked to give the same greedy codes, with the
  same thread count on both sides (1, and 2 for the shortest run);
* ``stream`` with 1-frame chunks fed as fast as possible (sustained frames/s), the first-frame latency after
  the chunk that completes its audio (cold: first call in the process; warm), and a real-time simulation
  where chunks arrive every 1/30 s, with per-frame latency percentiles.

The figures include no audio encoder. The load average is printed: on a shared machine it dominates.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from motion.lm import MotionLM, Sampling  # noqa: E402
from motion.lm.decode import intra_op_threads  # noqa: E402

THREADS = 2
FPS = 30
GREEDY = Sampling(temperature=0.0)


@torch.inference_mode()
def generate_without_cache(model: MotionLM, audio: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Greedy generation that re-runs the whole prefix through the transformer at every step (no KV cache)."""
    b, tq, _ = audio.shape
    pattern = model.pattern
    steps = pattern.num_steps(tq)
    cond = model.conditioning(audio, model.style_vector(style), steps)
    seq = torch.full((b, pattern.num_codebooks, steps), pattern.special_token, dtype=torch.long)
    for s in range(steps):
        x = model.step_inputs(seq[:, :, : s + 1], cond[:, : s + 1])
        tokens = model.trunk(x)[:, :, -1].argmax(-1)  # [B, K]
        for k, d in enumerate(pattern.delays):
            if 0 <= s - d < tq:
                seq[:, k, s] = tokens[:, k]
    return pattern.revert(seq)


def timed(fn, *args, **kw) -> tuple[float, object]:
    """Wall seconds of one call (CPU seconds of this process go to ``timed.cpu``) and its result."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    timed.cpu = time.process_time() - c0
    return time.perf_counter() - t0, out


def first_frame_latency(model: MotionLM, audio: torch.Tensor, style: torch.Tensor) -> float:
    """Seconds from handing over the chunk that completes frame 0's audio to the yield of frame 0."""
    handed = []

    def chunks():
        for i in range(audio.shape[1]):
            handed.append(time.perf_counter())
            yield audio[:, i : i + 1]

    stream = model.stream(chunks(), style, sampling=GREEDY)
    next(stream)
    latency = time.perf_counter() - handed[-1]
    stream.close()
    return latency


def realtime_stream(model: MotionLM, audio: torch.Tensor, style: torch.Tensor) -> list[float]:
    """Feed 1-frame chunks at the frame rate; per frame, seconds from its last needed chunk to its yield."""
    start = time.perf_counter()
    arrival = []

    def chunks():
        for i in range(audio.shape[1]):
            due = start + (i + 1) / FPS  # frame i is fully captured at the end of its 1/30 s
            time.sleep(max(0.0, due - time.perf_counter()))
            arrival.append(time.perf_counter())
            yield audio[:, i : i + 1]

    latencies = []
    for piece in model.stream(chunks(), style, sampling=GREEDY):
        now = time.perf_counter()
        # The piece became computable at the latest chunk handed over before it was yielded.
        latencies += [now - arrival[-1]] * piece.num_frames
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="also generate 10 minutes (past the window)")
    parser.add_argument("--baseline-max-frames", type=int, default=300, help="cap for the no-cache baseline")
    parser.add_argument("--realtime-seconds", type=float, default=10.0, help="length of the real-time run")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)

    model = MotionLM().eval()
    style = torch.tensor([0])
    audio_all = torch.randn(1, 10 * 60 * FPS, model.audio_dim)
    print(f"MotionLM d=256 L=4 K=4 C=256 delay lookahead=2 | torch {torch.__version__}, {THREADS} threads | "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip

    # Cold first-frame latency: the first stream call in this process (allocations, lazy init included).
    cold = first_frame_latency(model, audio_all[:, :30], style)
    warm = min(first_frame_latency(model, audio_all[:, :30], style) for _ in range(5))
    print(f"stream first-frame latency after its audio chunk: cold {cold * 1e3:.1f} ms, warm {warm * 1e3:.1f} ms "
          f"(+ algorithmic look-ahead {max(model.lookahead, model.pattern.max_delay - 1)} token frames)")  # fmt: skip

    print(
        "\ngenerate (KV cache)          stride  motion s   Tq    wall s   token fr/s  motion fr/s  x real time  cpu s"
    )
    durations = [10, 60] + ([600] if args.long else [])
    modes = {"greedy": GREEDY, "top_p=0.9": Sampling(top_p=0.9), "greedy cfg=2": Sampling(0.0, cfg_scale=2.0)}
    for name, sampling in modes.items():
        for stride in (1, 2):
            for seconds in durations:
                if name != "greedy" and seconds > 60:
                    continue
                tq = seconds * FPS // stride
                dt, _ = timed(model.generate, audio_all[:, :tq], style, sampling=sampling)
                print(f"  {name:26s} {stride:6d} {seconds:9d} {tq:5d} {dt:9.2f} {tq / dt:12.1f} "
                      f"{tq * stride / dt:12.1f} {seconds / dt:11.1f} {timed.cpu:6.2f}")  # fmt: skip

    model.decode_threads = 0  # decode with the process's 2 intra-op threads
    tq = 10 * FPS
    dt, _ = timed(model.generate, audio_all[:, :tq], style, sampling=GREEDY)
    print(f"  {'greedy, 2 decode threads':26s} {1:6d} {10:9d} {tq:5d} {dt:9.2f} {tq / dt:12.1f} "
          f"{tq / dt:12.1f} {10 / dt:11.1f} {timed.cpu:6.2f}")  # fmt: skip
    model.decode_threads = 1

    print(
        "\nbaseline: no KV cache (full prefix every step), greedy, against the KV cache with the same threads"
    )
    runs = [(2, 10, 1), (2, 10, THREADS), (1, 10, 1)] + [(s, d, 1) for d in durations[1:] for s in (2, 1)]
    for stride, seconds, threads in runs:
        tq = seconds * FPS // stride
        if tq > args.baseline_max_frames:
            continue
        audio = audio_all[:, :tq]
        model.decode_threads = threads
        with intra_op_threads(threads):
            dt_base, base = timed(generate_without_cache, model, audio, style)
        dt_kv, kv = timed(model.generate, audio, style, sampling=GREEDY)
        print(f"  stride {stride}, {seconds:3d} s, Tq {tq:4d}, {threads} thread(s): no cache {dt_base:7.2f} s "
              f"({tq / dt_base:5.1f} token fr/s), KV cache {dt_kv:5.2f} s -> speedup {dt_base / dt_kv:5.1f}x, "
              f"same codes: {torch.equal(base, kv.codes)}")  # fmt: skip
    model.decode_threads = 1

    print("\nstream, 1-frame chunks as fast as they are consumed")
    for stride in (1, 2):
        tq = 60 * FPS // stride
        dt, pieces = timed(
            lambda a: list(model.stream(a.split(1, dim=1), style, sampling=GREEDY)), audio_all[:, :tq]
        )
        print(f"  stride {stride}: {tq} token frames in {dt:.2f} s = {tq / dt:.1f} token fr/s "
              f"({tq * stride / dt:.1f} motion fr/s), {len(pieces)} yields")  # fmt: skip

    tq = int(args.realtime_seconds * FPS)
    lat = sorted(realtime_stream(model, audio_all[:, :tq], style))
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3  # noqa: E731
    print(f"\nreal-time stream (stride 1, a chunk every 1/{FPS} s, {args.realtime_seconds:.0f} s): per-frame latency "
          f"after its last chunk p50 {pct(0.5):.1f} ms, p95 {pct(0.95):.1f} ms, max {lat[-1] * 1e3:.1f} ms")  # fmt: skip
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
