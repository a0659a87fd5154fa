"""The shipped default (talk/pretrained/default.pt, the phonetic generator) on 2 CPU threads: where the time of
``AudioToMotion.generate`` goes, against the acoustic model alone measured in the same run.

Run: ``python benchmarks/phonetic.py [--seconds 10 60] [--repeats 3]``.

Figures per audio length (the bundled ARCTIC utterance tiled), best of ``--repeats``: the acoustic model's phone
posteriors (``audio.PhonePosteriors``, the baseline: what any model on these features pays), the classifier,
the viseme decode, the articulation (trajectory + face controls), the face model (FLAME parameters -> vertices),
and the whole ``generate``; its overhead over the acoustic model and its real-time factor. Goal: the whole
generate well under real time (<= 0.1 s per second of audio), most of it the acoustic model.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project before benchmarks/ (whose audio.py would shadow the package)
THREADS = 2


def best_of(fn, repeats: int) -> tuple[float, object]:  # noqa: ANN001
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    from audio.io import load_audio
    from talk.pipeline import Pipeline
    from talk.pretrained import DEFAULT_MODEL

    model = Pipeline.from_checkpoint(DEFAULT_MODEL).eval()
    model.audio_encoder.memo = 0  # time the acoustic model every call
    generator = model.generator
    base = torch.from_numpy(load_audio(ROOT / "assets" / "speech" / "arctic_a0009.wav", 16000))
    print(f"torch {torch.__version__}, {THREADS} threads, load average {os.getloadavg()[0]:.2f}; "
          f"{DEFAULT_MODEL.name}, best of {args.repeats}")  # fmt: skip
    print(f"{'audio':>6} {'posteriors':>11} {'classifier':>11} {'decode':>7} {'articulate':>11} {'face':>6} "
          f"{'generate':>9} {'x posteriors':>13} {'s per s':>8}")  # fmt: skip
    for seconds in args.seconds:
        n = int(seconds * 16000)
        wav = base.repeat(n // len(base) + 1)[:n]
        with torch.inference_mode():
            t_post, feats = best_of(partial(model.features, wav[None]), args.repeats)
            t_cls, _ = best_of(partial(generator.logits, feats), args.repeats)
            t_seg, segs = best_of(partial(generator.segments, feats), args.repeats)
            t_seg -= t_cls  # segments() runs the classifier too
            frames = model.require_assets().num_frames(n)
            t_art, motion = best_of(partial(generator.articulate, segs[0], frames, model.fps), args.repeats)
            template = model.require_assets().template(None)[None]
            t_face, _ = best_of(partial(model.to_offsets, motion.float()[None], template), args.repeats)
            t_all, _ = best_of(partial(model.generate, wav), args.repeats)
        print(f"{seconds:5.0f}s {t_post:11.3f} {t_cls:11.3f} {t_seg:7.3f} {t_art:11.3f} {t_face:6.3f} "
              f"{t_all:9.3f} {t_all / t_post:12.2f}x {t_all / seconds:8.3f}")  # fmt: skip
    print("goal: generate <= 0.1 s per second of audio on 2 threads")


if __name__ == "__main__":
    main()
