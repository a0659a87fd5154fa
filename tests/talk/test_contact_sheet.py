"""The contact sheet: one labelled tile per pose, written as a PNG."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from motion.face.blendshapes.rig import BlendshapeRig
from talk.contact_sheet import render_contact_sheet

pytestmark = pytest.mark.usefixtures("one_thread")


def test_contact_sheet_has_a_tile_per_pose(tmp_path):
    u, v = np.meshgrid(np.linspace(-0.05, 0.05, 6), np.linspace(-0.05, 0.05, 6))
    neutral = np.stack([u.ravel(), v.ravel(), np.zeros(36)], -1)
    ids = np.arange(36).reshape(6, 6)
    faces = np.concatenate([np.stack([ids[:-1, :-1], ids[:-1, 1:], ids[1:, :-1]], -1).reshape(-1, 3),
                            np.stack([ids[:-1, 1:], ids[1:, 1:], ids[1:, :-1]], -1).reshape(-1, 3)])  # fmt: skip
    deltas = np.zeros((3, 36, 3))
    deltas[0, :, 2] = 0.02 * np.exp(-(neutral**2).sum(-1) / 0.001)  # a bump toward the camera
    deltas[1, :, 1] = 0.01
    rig = BlendshapeRig(neutral, deltas, ["bump", "lift", "nothing"], faces)
    path = render_contact_sheet(rig, tmp_path / "sheet" / "rig.png", size=48, columns=3, supersample=1)
    image = np.asarray(Image.open(path).convert("RGB"))
    strip = image.shape[0] // 2 - 48
    assert image.shape[1] == 3 * 48 and image.shape[0] == 2 * (48 + strip)  # 4 tiles: neutral + 3 targets
    tiles = [
        image[r * (48 + strip) : r * (48 + strip) + 48, c * 48 : (c + 1) * 48]
        for r in range(2)
        for c in range(3)
    ]
    assert (tiles[0] < 250).any()  # the mesh is drawn
    assert not np.array_equal(tiles[0], tiles[1]) and np.array_equal(
        tiles[0], tiles[3]
    )  # 'nothing' = neutral
    assert (image[48 : 48 + strip] < 128).any()  # a label under the first row
    with pytest.raises(ValueError, match="no faces"):
        render_contact_sheet(BlendshapeRig(neutral, deltas, ["a", "b", "c"]), tmp_path / "x.png")
