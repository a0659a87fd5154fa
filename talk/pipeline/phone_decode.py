"""Frame-wise phone scores -> a phone time line: a Viterbi decode over visemes with a minimum duration.

What the lips need from speech is which *viseme* is said when: p, b and m look alike (the lips close), f and v
alike (lower lip to the teeth), and so on. Deciding per viseme is more robust than per phone: an acoustic model
torn between /b/ and /m/ is sure the lips close. So the decoder sums the phone posteriors of each group
(``VISEME_GROUPS``; every phone not listed is its own group), runs a Viterbi search over the groups in which a
group, once entered, lasts at least ``min_frames`` frames and every switch costs ``switch_penalty`` nats, and
names each decoded segment by the phone of its group with the largest posterior mass over the segment.

Pure numpy; no learned weights (the scores come from :class:`talk.pipeline.phonetic.PhoneticGenerator`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Phones that look alike on the lips and jaw (CMUdict ARPAbet, the acoustic model's silence and noises).
VISEME_GROUPS: tuple[tuple[str, ...], ...] = (
    ("P", "B", "M"),
    ("F", "V"),
    ("TH", "DH"),
    ("T", "D", "N"),
    ("S", "Z"),
    ("SH", "ZH", "CH", "JH"),
    ("K", "G", "NG"),
    ("SIL", "+NSN+", "+SPN+"),
)
PAUSES = frozenset({"SIL", "+NSN+", "+SPN+", "sil"})


def viseme_groups(phones: Sequence[str]) -> list[np.ndarray]:
    """Indices into ``phones`` of every decoding group: ``VISEME_GROUPS`` (members present), then each other
    phone alone."""
    index = {p: i for i, p in enumerate(phones)}
    groups, used = [], set()
    for group in VISEME_GROUPS:
        ids = [index[p] for p in group if p in index]
        if ids:
            groups.append(np.asarray(ids))
            used.update(group)
    groups += [np.asarray([i]) for i, p in enumerate(phones) if p not in used]
    return groups


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def viterbi_segments(scores: np.ndarray, min_frames: int = 1, switch_penalty: float = 0.0) -> np.ndarray:
    """Best path of classes ``[T]`` for per-frame log scores ``[T, C]``: each visit of a class lasts at least
    ``min_frames`` frames (except where the sequence is shorter) and every change of class costs
    ``switch_penalty``."""
    t_len, c = scores.shape
    if t_len == 0:
        return np.zeros(0, dtype=np.int64)
    d = max(1, min(int(min_frames), t_len))
    # State (k, j): class k, j-th frame of its visit (j = d-1: d or more frames). Entering needs j = d-1.
    delta = np.full((c, d), -np.inf)
    delta[:, 0] = scores[0]
    back = np.zeros((t_len, c, d), dtype=np.int64)  # flat index of the previous state
    flat = np.arange(c * d).reshape(c, d)
    for t in range(1, t_len):
        new = np.full((c, d), -np.inf)
        src = np.zeros((c, d), dtype=np.int64)
        if d > 1:
            new[:, 1:] = delta[:, :-1]
            src[:, 1:] = flat[:, :-1]
        stay = delta[:, d - 1]
        if d > 1:
            better = stay > new[:, d - 1]
            new[:, d - 1] = np.where(better, stay, new[:, d - 1])
            src[:, d - 1] = np.where(better, flat[:, d - 1], src[:, d - 1])
        else:
            new[:, 0] = stay
            src[:, 0] = flat[:, 0]
        done = delta[:, d - 1]  # leave a class only after d frames
        order = np.argsort(done)[::-1]
        best, second = order[0], order[1] if c > 1 else order[0]
        # entering class k from the best other class
        prev = np.where(np.arange(c) == best, second, best)
        enter = done[prev] - switch_penalty
        if c > 1:
            better = enter > new[:, 0]
            new[:, 0] = np.where(better, enter, new[:, 0])
            src[:, 0] = np.where(better, flat[prev, d - 1], src[:, 0])
        delta = new + scores[t][:, None]
        back[t] = src
    final = delta[:, d - 1]
    state = int(flat[int(np.argmax(final)), d - 1]) if np.isfinite(final).any() else int(np.argmax(delta))
    path = np.zeros(t_len, dtype=np.int64)
    for t in range(t_len - 1, -1, -1):
        path[t] = state // d
        state = int(back[t].reshape(-1)[state])
    return path


def decode_phones(
    log_probs: np.ndarray,
    phones: Sequence[str],
    frame_rate: float = 100.0,
    min_frames: int = 1,
    switch_penalty: float = 0.0,
) -> list[tuple[str, float, float]]:
    """Phone time line ``[(label, start_s, end_s)]`` covering ``[0, T / frame_rate]`` from per-frame phone log
    probabilities ``[T, P]`` (frame ``t`` covers ``[t, t + 1) / frame_rate``); pauses and noises become ``"sil"``.

    Args:
        log_probs: Log posteriors (or any log scores) per frame and phone.
        phones: The ``P`` phone names, ARPAbet upper case plus ``SIL`` and noises.
        frame_rate: Frames per second.
        min_frames: Shortest visit of a viseme group, frames.
        switch_penalty: Cost of every change of group, nats.
    """
    log_probs = np.asarray(log_probs, dtype=np.float64)
    if log_probs.ndim != 2 or log_probs.shape[1] != len(phones):
        raise ValueError(f"log_probs must be [T, {len(phones)}], got {list(log_probs.shape)}.")
    groups = viseme_groups(phones)
    scores = np.stack([_logsumexp(log_probs[:, g], axis=1) for g in groups], axis=1)
    path = viterbi_segments(scores, min_frames, switch_penalty)
    probs = np.exp(log_probs - log_probs.max(axis=1, keepdims=True))
    out: list[tuple[str, float, float]] = []
    start = 0
    for t in range(1, len(path) + 1):
        if t < len(path) and path[t] == path[start]:
            continue
        members = groups[path[start]]
        phone = phones[int(members[np.argmax(probs[start:t, members].sum(axis=0))])]
        label = "sil" if phone in PAUSES else phone
        if out and out[-1][0] == label:  # two visits of one label in a row (a pause group's members)
            out[-1] = (label, out[-1][1], t / frame_rate)
        else:
            out.append((label, start / frame_rate, t / frame_rate))
        start = t
    return out
