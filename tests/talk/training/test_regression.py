from functools import partial

import torch

from audio import MelEncoder
from motion.regression.regressor import FaceFormerRegressor
from talk.data import VocasetDataModule
from talk.data.batch import collate
from talk.pipeline.model import AudioToMotion
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


def _windowed_baseline(window: float | None) -> AudioToMotion:
    """A small regression baseline (random output layer, so the face moves) encoding audio in ``window`` s, built
    as ``talk fit`` builds it (from configs) and rebuilt from the pipeline config its checkpoints store."""
    from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters_context

    from talk.pipeline import Assets
    from talk.pipeline.load import build

    encoder = {
        "class_path": "audio.MelEncoder",
        "init_args": {"output_dim": 16, "num_layers": 2, "dropout": 0.0},
    }
    generator = {"class_path": "motion.regression.regressor.FaceFormerRegressor",
                 "init_args": {"d_model": 16, "num_layers": 1, "num_heads": 2, "ff_dim": 32, "dropout": 0.0}}  # fmt: skip
    torch.manual_seed(0)
    with _given_hyperparameters_context({"audio_encoder": encoder, "generator": generator}, "test"):
        module = RegressionModule(MelEncoder(**encoder["init_args"]), partial(FaceFormerRegressor, **generator["init_args"]),
                                  motion_dim=12, num_styles=2, basis_components=None, encoder_window_seconds=window,
                                  encoder_context_seconds=0.3)  # fmt: skip
    torch.nn.init.normal_(module.regression.regressor.head.weight, std=0.1)
    assets = Assets(("A", "B"), {"A": torch.zeros(4, 3), "B": torch.zeros(4, 3)}, sample_rate=16000)
    return build(module.pipeline_config, module.model.state_dict(), assets).eval()


def test_inference_encodes_long_audio_in_windows_with_the_whole_pass_result(monkeypatch):
    """The baseline passes its encoder window to the pipeline config its checkpoints store, as the token model
    does: long audio is encoded in windows, never whole, with the whole pass's result for the mel encoder (its
    receptive field is declared, so windows with context are exact); audio within one window is encoded whole."""
    torch.manual_seed(1)
    wav = torch.randn(int(3.3 * 16000)) * 0.1
    whole = _windowed_baseline(None)
    windowed = _windowed_baseline(1.0)
    assert (windowed.encoder_window_seconds, windowed.encoder_context_seconds) == (1.0, 0.3)
    calls = []
    forward = type(windowed.audio_encoder).forward
    monkeypatch.setattr(type(windowed.audio_encoder), "forward",
                        lambda self, x, n=None: calls.append(x.shape[1]) or forward(self, x, n))  # fmt: skip
    with torch.no_grad():
        expected = whole.generate(wav, subject="A").vertices
        calls.clear()
        got = windowed.generate(wav, subject="A").vertices
        assert len(calls) > 3 and max(calls) < 2.0 * 16000  # several short windows, never the whole input
        assert float(expected.std()) > 1e-4  # the face moves: the comparison is not between zeros
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        pieces = torch.cat(list(windowed.generate_pieces(wav, subject="A", piece_seconds=1.0)))
        torch.testing.assert_close(pieces, expected[0], atol=1e-5, rtol=0)
        short = wav[: int(0.8 * 16000)]  # within one window: the very same computation as the whole pass
        calls.clear()
        assert torch.equal(
            windowed.generate(short, subject="A").vertices, whole.generate(short, subject="A").vertices
        )
        assert calls == [short.numel(), short.numel()]
