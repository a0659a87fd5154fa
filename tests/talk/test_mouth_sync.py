"""The weight-free mouth synchrony measure against constructed clips."""

from __future__ import annotations

import math

import numpy as np
import torch

from talk.mouth_sync import MouthSync, mouth_box, pearson


def _clip(openings: list[float], follow: bool, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Skin-coloured frames with a mouth slit of height ``4 * opening`` pixels in the driving mask; the frame
    paints the slit dark when ``follow``, else stays the same."""
    images = torch.full((len(openings), 3, size, size), 0.8)
    masks = torch.zeros(len(openings), 1, size, size)
    for t, o in enumerate(openings):
        h = int(round(4 * o))
        if h:
            masks[t, 0, 20 - h // 2 : 20 - h // 2 + h, 12:20] = 1
            if follow:
                images[t, :, 20 - h // 2 : 20 - h // 2 + h, 12:20] = 0.1
    return images, masks


def test_pearson_and_the_mouth_box():
    x, y = np.array([0.0, 1, 2, 3]), np.array([1.0, 3, 2, 5])
    assert pearson(x, y) == np.corrcoef(x, y)[0, 1]
    assert math.isnan(pearson(x, np.ones(4))) and math.isnan(pearson(x[:2], y[:2]))
    masks = np.zeros((2, 20, 20), bool)
    masks[0, 5:10, 4:14] = True  # 5 x 10 pixels
    assert mouth_box(masks) == (4, 11, 2, 16)  # widened by 20% of 5 and of 10 on every side
    assert mouth_box(np.zeros((2, 4, 4), bool)) is None


def test_frames_that_follow_the_mouth_score_high_still_frames_have_none():
    openings = [0, 1, 2, 3, 2, 0, 1, 3, 0]
    sync = {"follows": MouthSync(), "still": MouthSync(), "inverted": MouthSync()}
    for name, (follow, flip) in {"follows": (True, False), "still": (False, False), "inverted": (True, True)}.items():
        images, masks = _clip(openings, follow)
        if flip:
            masks = masks.flip(0)  # the frames follow another motion
        frames = list(range(len(openings)))
        sync[name].update(images[:4], masks[:4], ["c"] * 4, frames[:4])  # batches in any order
        sync[name].update(images[4:], masks[4:], ["c"] * 5, frames[4:])
    assert sync["follows"].compute() > 0.99
    assert math.isnan(sync["still"].compute()) and math.isnan(sync["still"].clips()["c"])
    assert sync["inverted"].compute() < 0.5
