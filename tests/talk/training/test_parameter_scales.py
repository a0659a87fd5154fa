"""The tokenizer's per-parameter scales (scale_by_displacement): each BFM coefficient is scaled by how far it moves
the mesh, in the tokenizer's input normalisation and in its parameter loss."""

from __future__ import annotations

import functools

import pytest
import torch

from motion.face.bfm import BFM
from motion.tokens.quantizer import ResidualVQ
from motion.tokens.tokenizer import MotionTokenizer
from talk.errors import CheckpointError
from talk.training.tokenizer import TokenizerModule
from tests.motion.face.bfm_fixture import write_mini_bfm


def _module(face_model, **kwargs):
    tokenizer = functools.partial(MotionTokenizer, latent_dim=8, hidden_dim=8, quantizer=ResidualVQ(8, 2, 16))
    return TokenizerModule(tokenizer, motion_dim=face_model.num_vertices * 3, face_model=face_model, **kwargs)


def test_each_bfm_coefficient_is_scaled_by_how_far_it_moves_the_mesh(tmp_path):
    arrays = write_mini_bfm(tmp_path / "BFM_model_front.mat", n_vertices=80)
    bfm = BFM(str(tmp_path / "BFM_model_front.mat"))
    rms = (
        torch.from_numpy(arrays.exp_base).double().reshape(-1, 3, 64).norm(dim=(0, 1)) / bfm.num_vertices**0.5
    )
    torch.testing.assert_close(bfm.motion_weights(), (rms * 0.1).float())  # metres per unit coefficient
    module = _module(bfm, param_scale=2.0, scale_by_displacement=True)
    w = bfm.motion_weights()
    expected = 2.0 * w.max() / w.clamp(min=1e-3 * float(w.max()))
    torch.testing.assert_close(module.param_scales, expected)
    torch.testing.assert_close(module.tokenizer.motion_std, expected)  # the input normalisation
    assert float(module.param_scales.min()) == 2.0  # the leading coefficient keeps param_scale
    plain = _module(bfm, param_scale=2.0)
    assert plain.param_scales.dim() == 0 and float(plain.tokenizer.motion_std.max()) == 2.0


def test_a_face_model_without_weights_is_refused(tmp_path):
    from motion.face.blendshapes import ArkitRig, procedural_arkit_rig

    procedural_arkit_rig().save_npz(tmp_path / "rig.npz")
    with pytest.raises(CheckpointError, match="scale_by_displacement needs a face model with motion_weights"):
        _module(ArkitRig(str(tmp_path / "rig.npz")), scale_by_displacement=True)
