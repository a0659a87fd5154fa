"""A miniature, faithful copy of the VOCASET processed layout for tests (tiny mesh, short clips)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
V = 12
LIPS = np.array([0, 1, 2, 3])
UPPER = np.array([8, 9, 10, 11])


def write_miniature(root: Path, subjects: dict[str, int], seconds: float = 0.6, seed: int = 0) -> Path:
    """Writes ``wav/``, ``vertices_npy/`` (60 fps, ``[T, V*3]``), ``templates.pkl`` and ``FLAME_masks.pkl``.

    Args:
        subjects: subject name -> number of sentences (sentence01..).
    """
    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    (root / "vertices_npy").mkdir(parents=True, exist_ok=True)
    templates = {}
    for s, (subject, n) in enumerate(subjects.items()):
        template = rng.normal(size=(V, 3)).astype(np.float32) * 0.05
        templates[subject] = template
        for k in range(1, n + 1):
            n_samples = int(seconds * SR)
            t = np.arange(n_samples) / SR
            envelope = 0.5 + 0.5 * np.sin(2 * np.pi * (1.5 + s + k) * t)
            wav = (0.3 * envelope * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
            sf.write(root / "wav" / f"{subject}_sentence{k:02d}.wav", wav, SR, subtype="PCM_16")
            frames = int(round(seconds * 60))
            ft = np.arange(frames) / 60
            open_amount = 0.5 + 0.5 * np.sin(2 * np.pi * (1.5 + s + k) * ft)
            verts = np.repeat(template[None], frames, axis=0)
            verts[:, LIPS, 1] -= 0.01 * open_amount[:, None]
            np.save(root / "vertices_npy" / f"{subject}_sentence{k:02d}.npy", verts.reshape(frames, V * 3))
    with open(root / "templates.pkl", "wb") as f:
        pickle.dump(templates, f, protocol=2)
    with open(root / "FLAME_masks.pkl", "wb") as f:
        pickle.dump(
            {"lips": LIPS, "forehead": UPPER[:2], "eye_region": UPPER[2:], "face": np.arange(V)},
            f,
            protocol=2,
        )
    return root
