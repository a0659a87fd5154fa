import math

import numpy as np
import pytest
import torch

from talk.metrics import VertexMetrics, lip_max_sq_error, upper_face_dynamics


def test_lve_pools_frames_across_sequences():
    lips = torch.tensor([0, 1])
    upper = torch.tensor([2])
    m = VertexMetrics(lips, upper)
    template = torch.zeros(3, 3)
    gt1 = torch.zeros(2, 3, 3)
    pred1 = gt1.clone()
    pred1[0, 0, 0] = 1.0  # frame 0: lip errors 1 and 0 -> max 1
    pred1[1, 1, 1] = 2.0  # frame 1: max 4
    gt2 = torch.zeros(1, 3, 3)
    pred2 = gt2.clone()
    pred2[0, 0, 2] = 3.0  # frame 0: 9
    m.update("a", pred1, gt1, template)
    m.update("b", pred2, gt2, template)
    out = m.compute()
    # pooled over 3 frames: (1 + 4 + 9) / 3, not the mean of per-sequence means ((2.5 + 9) / 2)
    assert out["lve"] == pytest.approx(14 / 3)
    assert out["lve_mm"] == pytest.approx(math.sqrt(14 / 3) * 1000)
    assert lip_max_sq_error(pred1, gt1, lips).tolist() == [1.0, 4.0]


def test_fdd_is_signed_gt_minus_pred_of_std_of_squared_displacement():
    upper = torch.tensor([0, 1])
    template = torch.zeros(2, 3)
    gt = torch.zeros(4, 2, 3)
    gt[:, 0, 0] = torch.tensor([0.0, 1.0, 0.0, 1.0])  # squared disp 0,1,0,1 -> std 0.5
    gt[:, 1, 1] = torch.tensor([0.0, 2.0, 0.0, 2.0])  # squared disp 0,4,0,4 -> std 2
    s_gt = (0.5 + 2.0) / 2
    pred = torch.zeros(4, 2, 3)  # static prediction: S_P = 0
    assert float(upper_face_dynamics(gt, template, upper)) == pytest.approx(s_gt)
    m = VertexMetrics(torch.tensor([0]), upper)
    m.update("a", pred, gt, template)
    m.update("b", gt, pred, template)  # swapped: S_G = 0, S_P = s_gt -> negative
    out = m.compute()
    assert [s.fdd for s in m.sequences] == pytest.approx([s_gt, -s_gt])
    assert out["fdd"] == pytest.approx(0.0)
    assert out["abs_fdd"] == pytest.approx(s_gt)


def test_mve_is_mean_unsquared_distance_then_mean_over_sequences():
    m = VertexMetrics(torch.tensor([0]), torch.tensor([0]))
    gt = torch.zeros(2, 2, 3)
    pred = gt.clone()
    pred[:, :, 0] = 3.0
    pred[:, :, 1] = 4.0  # distance 5 everywhere
    m.update("a", pred, gt, torch.zeros(2, 3))
    m.update("b", gt, gt, torch.zeros(2, 3))
    assert m.compute()["mve"] == pytest.approx(2.5)


def test_length_mismatch_is_cut_to_shorter():
    m = VertexMetrics(torch.tensor([0]), torch.tensor([0]))
    m.update("a", torch.ones(5, 1, 3), torch.ones(3, 1, 3), torch.zeros(1, 3))
    assert m.sequences[0].frames == 3


def test_metrics_match_numpy_reference_on_random_data():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(7, 6, 3))
    pred = rng.normal(size=(7, 6, 3))
    template = rng.normal(size=(6, 3))
    lips, upper = [1, 2], [3, 4, 5]
    m = VertexMetrics(torch.tensor(lips), torch.tensor(upper))
    m.update("a", torch.tensor(pred), torch.tensor(gt), torch.tensor(template))
    out = m.compute()
    ref_lve = np.mean(np.max(np.sum((gt[:, lips] - pred[:, lips]) ** 2, axis=2), axis=1))
    s_g = np.mean(np.std(np.sum((gt[:, upper] - template[upper]) ** 2, axis=2), axis=0))
    s_p = np.mean(np.std(np.sum((pred[:, upper] - template[upper]) ** 2, axis=2), axis=0))
    assert out["lve"] == pytest.approx(ref_lve)
    assert out["fdd"] == pytest.approx(s_g - s_p)
    assert out["mve"] == pytest.approx(np.mean(np.linalg.norm(gt - pred, axis=2)))
