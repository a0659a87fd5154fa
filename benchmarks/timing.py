"""Timing shared by the benchmark scripts: median wall and process-CPU seconds of a call after warm-up."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median wall, median process CPU) seconds per call, after two warm-up calls."""
    fn()
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu))
