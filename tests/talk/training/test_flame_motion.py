"""Token models over FLAME parameters: the batch's FLAME motion, vertex-space losses through the face model."""

from __future__ import annotations

import functools

import pytest
import torch

from motion.face.flame import FLAME
from motion.tokens.quantizer import ResidualVQ
from motion.tokens.tokenizer import MotionTokenizer


def _module(synth_root, **options):
    from talk.data import ManifestDataModule
    from talk.training import TokenizerModule

    dm = ManifestDataModule(str(synth_root / "flame_manifest.jsonl"), fps=30.0,
                            flame_model=str(synth_root / "face_model.pkl"), batch_size=3)  # fmt: skip
    dm.setup("fit")
    torch.manual_seed(0)
    tokenizer = functools.partial(MotionTokenizer, latent_dim=16, hidden_dim=32, stride=2, num_res_blocks=1,
                                  io_kernel=1, quantizer=ResidualVQ(dim=16, num_quantizers=2, codebook_size=32))  # fmt: skip
    face = FLAME(str(synth_root / "face_model.pkl"), n_shape=20, n_expression=11)
    module = TokenizerModule(tokenizer, motion_dim=dm.motion_dim, num_styles=dm.num_styles, face_model=face,
                             param_scale=0.1, **options)  # fmt: skip
    return dm, module


def test_tokenizer_of_flame_parameters_has_parameter_and_vertex_losses(synth_root):
    from talk.data.batch import collate

    dm, module = _module(synth_root)
    assert module.tokenizer.motion_dim == 14  # 11 expression coefficients, then the jaw
    batch = collate([dm.datasets["train"][i] for i in range(3)])
    module.eval()
    loss = module._loss(batch)
    parts = loss.parts
    with torch.no_grad():
        out = module.tokenizer(module.motion(batch), batch.motion_mask)
    mask = batch.motion_mask
    decoded = module.face_model.motion_offsets(out.reconstruction, batch.template)  # [B, T, V, 3]
    err = (decoded - (batch.motion - batch.template[:, None]))[mask] / module.offset_scale
    torch.testing.assert_close(parts["vertex_reconstruction"], err.pow(2).mean(), rtol=1e-4, atol=1e-7)
    param_err = (out.reconstruction - module.motion(batch))[mask] / module.param_scale
    torch.testing.assert_close(parts["reconstruction"], param_err.pow(2).mean(), rtol=1e-4, atol=1e-7)
    # reconstruct() decodes through the face model onto each sequence's template
    with torch.no_grad():
        vertices = module.reconstruct(batch)
        codes = module.tokenizer.encode(module.motion(batch), mask)
        params = module.tokenizer.decode(codes, length=mask.shape[1])
    want = batch.template[:, None] + module.face_model.motion_offsets(params, batch.template)
    torch.testing.assert_close(vertices, want)
    # training lowers the vertex error, through the face model
    module.train()
    opt = torch.optim.Adam(module.tokenizer.parameters(), lr=3e-3)
    first = float(parts["vertex_reconstruction"])
    for _ in range(40):
        loss = module._loss(batch)
        parts = loss.parts
        opt.zero_grad()
        loss.total.backward()
        opt.step()
    assert float(parts["vertex_reconstruction"]) < 0.5 * first


def test_flame_models_name_what_is_wrong(synth_root):
    from talk.data import VocasetDataModule
    from talk.data.batch import collate
    from talk.errors import CheckpointError, DatasetError

    dm, module = _module(synth_root)
    one = (1, 1)
    vertices = VocasetDataModule(str(synth_root), ["SYN_01_F"], ["SYN_07_F"], ["SYN_09_F"], one, one, one)
    vertices.setup("fit")
    batch = collate([vertices.datasets["train"][0]])
    with pytest.raises(DatasetError, match="FLAME .npz"):
        module._loss(batch)
    with pytest.raises(CheckpointError, match="vertices"):
        _module_with_dim(synth_root, 12)


def _module_with_dim(synth_root, motion_dim):
    from talk.training import TokenizerModule

    face = FLAME(str(synth_root / "face_model.pkl"), n_shape=20, n_expression=11)
    return TokenizerModule(functools.partial(MotionTokenizer, latent_dim=8, hidden_dim=8), motion_dim=motion_dim,
                           face_model=face)  # fmt: skip
