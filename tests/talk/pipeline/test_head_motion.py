"""`talk animate --head-motion`: the idle head pose moves the generated meshes rigidly, and a stream draws what the
offline run draws."""

from __future__ import annotations

import numpy as np
import torch

from motion.idle import IdleHead
from tests.motion.test_idle import _dists


def test_animate_head_motion_is_rigid_and_streams_what_it_draws_offline(lm_ckpt, synth_root, tmp_path):
    from talk.pipeline import Pipeline
    from talk.pipeline.animate import animate

    model = Pipeline.from_checkpoint(lm_ckpt)
    wav = synth_root / "wav" / "SYN_10_M_sentence01.wav"
    runs = {}
    for name, kwargs in (("still", {}), ("moving", {"head_motion": IdleHead()}),
                         ("stream", {"head_motion": IdleHead(), "stream": True})):  # fmt: skip
        animate(model, wav, tmp_path / f"{name}.mp4", size=16, export_meshes=tmp_path / name, mesh_format="npz",
                **kwargs)  # fmt: skip
        runs[name] = torch.from_numpy(np.load(tmp_path / name / "meshes.npz")["vertices"])
    still, moving = runs["still"], runs["moving"]
    moved = (moving - still).norm(dim=-1).amax(-1)
    assert float(moved.max()) > 1e-3  # millimetres of head motion
    torch.testing.assert_close(_dists(moving[::10, ::40]), _dists(still[::10, ::40]),
                               rtol=0, atol=1e-5)  # fmt: skip
    torch.testing.assert_close(runs["stream"], moving, rtol=0, atol=1e-5)
