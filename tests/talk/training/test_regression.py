from functools import partial

import torch

from audio import MelEncoder
from motion.regression.regressor import FaceFormerRegressor
from talk.data import VocasetDataModule
from talk.data.batch import collate
from talk.training import RegressionModule
from tests.talk.miniature import V, write_miniature


def make(tmp_path, basis):
    write_miniature(tmp_path, {"S_A": 3, "S_B": 3, "S_C": 1, "S_D": 1})
    dm = VocasetDataModule(str(tmp_path), ["S_A", "S_B"], ["S_C"], ["S_D"], (1, 3), (1, 1), (1, 1))
    dm.setup("fit")
    torch.manual_seed(0)
    gen = partial(FaceFormerRegressor, d_model=16, num_layers=1, num_heads=2, ff_dim=32, dropout=0.0)
    module = RegressionModule(MelEncoder(output_dim=16, num_layers=1, dropout=0.0), gen, motion_dim=V * 3,
                              num_styles=2, basis_components=basis)  # fmt: skip
    return dm, module


def test_basis_is_orthonormal_and_coefficient_loss_is_vertex_loss(tmp_path):
    dm, module = make(tmp_path, basis=8)
    module.fit_basis(dm.datasets["train"])
    reg = module.regression
    b = reg.basis
    torch.testing.assert_close(b @ b.T, torch.eye(8), atol=1e-4, rtol=0)
    batch = collate([dm.datasets["train"][i] for i in range(3)])
    t = batch.motion.shape[1]
    offsets = (batch.motion - batch.template[:, None]).reshape(3, t, -1) / module.offset_scale
    coeffs = reg.to_coefficients(offsets)
    # The miniature's motion lies in a low-dimensional space, so the basis reconstructs it exactly.
    torch.testing.assert_close(reg.to_offsets(coeffs), offsets, atol=1e-3, rtol=0)
    # For any prediction in the span, the coefficient error equals the offset error.
    pred = coeffs + 0.1 * torch.randn_like(coeffs)
    err_c = (pred - coeffs).pow(2).sum()
    err_v = (reg.to_offsets(pred) - offsets).pow(2).sum()
    torch.testing.assert_close(err_c, err_v, rtol=1e-3, atol=1e-3)


def test_training_lowers_vertex_error_with_and_without_basis(tmp_path):
    for basis in (8, None):
        dm, module = make(tmp_path / str(basis), basis)
        if basis:
            module.fit_basis(dm.datasets["train"])
        batch = collate([dm.datasets["train"][i] for i in range(len(dm.datasets["train"]))])
        opt = torch.optim.Adam(module.parameters(), lr=3e-3)
        first = None
        for _ in range(150):
            loss = module._loss(batch).total
            first = float(loss) if first is None else first
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert float(loss) < 0.5 * first, (basis, first, float(loss))
        with torch.no_grad():
            verts = module.model.generate(
                batch.audio, batch.audio_lengths, batch.motion_lengths, batch.template, batch.style
            ).vertices
        assert verts.shape == batch.motion.shape
