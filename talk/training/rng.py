"""Random-number state in checkpoints, so that a resumed run draws what the uninterrupted run would have drawn.

Training draws from torch's global generator (dropout, quantizer dropout, classifier-free-guidance dropout,
k-means seeds, dead-code picks, the DataLoader's base seed), and may draw from numpy's and Python's. A checkpoint
written at the end of an epoch stores the state of all three (and of every CUDA device) of every process, as
tensors and plain numbers only, so the file still loads with ``torch.load(weights_only=True)``; the resumed run
puts them back while it loads the checkpoint, before its loops draw anything (the first draw of either run is
the next epoch's DataLoader seed), so it continues the random streams where the uninterrupted run did. The training order itself comes from the seeded, epoch-indexed sampler of
:class:`talk.data.base.TalkDataModule`, so it needs no state.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def collect_rng_state() -> dict[str, Any]:
    """This process's generator states: torch (CPU and each CUDA device), numpy, Python, as tensors and numbers."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "words": torch.tensor(words, dtype=torch.int64), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Puts back what :func:`collect_rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(w) for w in p["words"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        devices = min(len(state["cuda"]), torch.cuda.device_count())
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"][:devices]])


def gather_rng_states(world_size: int) -> list[dict[str, Any]]:
    """Every process's :func:`collect_rng_state`, in rank order (a collective: call it on every process)."""
    own = collect_rng_state()
    if world_size <= 1 or not torch.distributed.is_initialized():
        return [own]
    states: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(states, own)
    return states
