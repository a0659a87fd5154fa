"""Generation in pieces (bounded memory on long audio) equals whole-sequence generation, and `animate` renders,
exports and scores those pieces as it did the whole sequence."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from audio.mel import MelEncoder
from motion.lm import MotionLM, Sampling
from motion.regression.regressor import FaceFormerRegressor
from motion.tokens.quantizer import ResidualVQ
from motion.tokens.tokenizer import MotionTokenizer
from talk.pipeline import Assets, AudioToMotion, RegressionGenerator, TokenGenerator

pytestmark = pytest.mark.usefixtures("one_thread")

V = 30
SAMPLED = Sampling(temperature=1.0, top_k=8, seed=0)


def _assets() -> Assets:
    g = torch.Generator().manual_seed(0)
    template = torch.randn(V, 3, generator=g) * 0.05
    faces = torch.randint(0, V, (40, 3), generator=g)
    templates = {"A": template, "B": template + 0.01}
    return Assets(("A", "B"), templates, faces=faces, regions={"lips": torch.arange(5)}, sample_rate=16000)


def _flagship(**options) -> AudioToMotion:
    torch.manual_seed(0)
    tok = MotionTokenizer(motion_dim=V * 3, latent_dim=8, hidden_dim=16, stride=2, num_res_blocks=1,
                          quantizer=ResidualVQ(dim=8, num_quantizers=2, codebook_size=16))  # fmt: skip
    for layer in tok.quantizer.layers:  # untrained codebooks start at zero: give them code vectors
        layer.embed.normal_(generator=torch.Generator().manual_seed(1))
    lm = MotionLM(num_codebooks=2, codebook_size=16, audio_dim=2 * 16, d_model=32, num_layers=1, num_heads=2,
                  ff_dim=64, pattern="delay", num_styles=2, lookahead=2, max_context=24)  # fmt: skip
    encoder = MelEncoder(sample_rate=16000, output_dim=16, num_layers=2)
    generator = TokenGenerator(lm, tok, **options)
    return AudioToMotion(encoder, generator, num_styles=2, sampling=SAMPLED, assets=_assets()).eval()


def _regression(window: int = 600) -> AudioToMotion:
    torch.manual_seed(0)
    regressor = FaceFormerRegressor(motion_dim=V * 3, num_styles=2, audio_dim=16, d_model=16, num_layers=2,
                                    num_heads=2, ff_dim=32, attention_window=window)  # fmt: skip
    torch.nn.init.normal_(regressor.head.weight, std=0.1)  # the zero init would animate nothing
    encoder = MelEncoder(sample_rate=16000, output_dim=16, num_layers=2)
    return AudioToMotion(
        encoder, RegressionGenerator(regressor, V * 3), num_styles=2, assets=_assets()
    ).eval()


def _wav(seconds: float) -> torch.Tensor:
    return torch.randn(int(seconds * 16000), generator=torch.Generator().manual_seed(2)) * 0.1


def _generate(model: AudioToMotion, wav: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.generate(wav).vertices[0]


def _speech_file(path, seconds: float) -> torch.Tensor:  # noqa: ANN001
    """Writes a wav; returns the waveform that `animate` reads from it (16-bit samples)."""
    sf.write(path, _wav(seconds).numpy(), 16000)
    return torch.from_numpy(sf.read(path, dtype="float32")[0])


def _recording_step(buffers: list):  # noqa: ANN202
    from motion.lm import decode

    step = decode.DecodeSession._step

    def record(self) -> None:  # noqa: ANN001
        buffers.append((self.seq.shape[-1], self.logits.shape[2]))
        step(self)

    return record


def test_motion_lm_pieces_are_generate_s_steps_with_bounded_buffers(monkeypatch):
    from motion.lm import decode

    torch.manual_seed(0)
    lm = MotionLM(num_codebooks=3, codebook_size=16, audio_dim=8, d_model=32, num_layers=1, num_heads=2,
                  ff_dim=64, pattern="delay", num_styles=2, max_context=20).eval()  # fmt: skip
    audio, style = torch.randn(1, 300, 8), torch.tensor([1])
    for sampling in (Sampling(temperature=0.0), Sampling(temperature=1.0, seed=3, cfg_scale=1.5)):
        whole = lm.generate(audio, style, None, sampling, return_probs=True)
        buffers = []
        monkeypatch.setattr(decode.DecodeSession, "_step", _recording_step(buffers))
        pieces = list(lm.generate_pieces(audio, style, None, sampling, True, piece_frames=8))
        monkeypatch.undo()
        assert all(p.num_frames <= 8 for p in pieces) and len(pieces) >= 300 // 8
        assert torch.equal(torch.cat([p.codes for p in pieces], -1), whole.codes)  # the same draws
        assert torch.equal(torch.cat([p.probs for p in pieces], 2), whole.probs)
        assert (
            max(max(b) for b in buffers) <= 64
        )  # tokens and distributions of a few pieces, not of 300 frames


@pytest.mark.parametrize("options", [{}, {"decode_latent": "expected"}])
def test_flagship_pieces_equal_generate(options):
    model = _flagship(**options)
    wav = _wav(3.1)
    whole = _generate(model, wav)
    assert torch.equal(torch.cat(list(model.generate_pieces(wav))), whole)  # one piece: generate itself
    pieces = list(model.generate_pieces(wav, piece_seconds=0.3))
    assert len(pieces) > 5 and max(p.shape[0] for p in pieces) <= 0.3 * 30 + 4
    torch.testing.assert_close(torch.cat(pieces), whole, atol=1e-5, rtol=0)  # exact decoding windows


@pytest.mark.parametrize("window", [600, 20])  # the whole sequence within the window, and ~5 windows long
def test_regression_pieces_equal_generate(window):
    model = _regression(window)
    wav = _wav(3.1)
    whole = _generate(model, wav)
    for seconds in (10.0, 0.3):
        pieces = list(model.generate_pieces(wav, piece_seconds=seconds))
        assert torch.equal(torch.cat(pieces), whole)
    if window == 20:  # generate itself ran windowed: compare with full attention on what the window allows
        model.generator.regressor.attention_window = 10**6
        full = _generate(model, wav)
        torch.testing.assert_close(whole[:20], full[:20], atol=1e-5, rtol=0)
        assert torch.isfinite(whole).all() and not torch.allclose(whole, full)


def _recorder():  # noqa: ANN202
    from render import MeshRenderer, TorchRasterizer

    class Recorder(MeshRenderer):
        """A renderer that records the frames and camera it is given (and draws them with the real rasterizer)."""

        def __init__(self) -> None:
            self.renderer = TorchRasterizer()
            self.background = self.renderer.background
            self.frames, self.cameras = [], []

        def render(self, vertices, faces, camera, colors=None):  # noqa: ANN001, ANN201
            self.frames.append(vertices.clone())
            self.cameras.append(camera)
            return self.renderer.render(vertices, faces, camera)

    return Recorder()


@pytest.mark.parametrize(
    ("kind", "piece_seconds"), [("flagship", 10.0), ("flagship", 0.4), ("regression", 0.4)]
)
def test_animate_renders_and_exports_the_generated_sequence_with_its_camera(kind, piece_seconds, tmp_path):
    from render import fit_camera
    from talk.pipeline import animate

    model = _flagship(decode_latent="expected") if kind == "flagship" else _regression(window=20)
    whole = _generate(model, _speech_file(tmp_path / "speech.wav", 2.3))
    recorder = _recorder()
    result = animate(model, tmp_path / "speech.wav", tmp_path / "a.mp4", renderer=recorder, size=16,
                     export_meshes=tmp_path / "meshes", mesh_format="npz", piece_seconds=piece_seconds)  # fmt: skip
    exported = torch.from_numpy(np.load(tmp_path / "meshes" / "meshes.npz")["vertices"])
    rendered = torch.cat(recorder.frames)
    assert result.frames == whole.shape[0] == rendered.shape[0]
    assert torch.equal(exported, rendered)
    if kind == "regression" or piece_seconds == 10.0:
        assert torch.equal(rendered, whole)
    else:
        torch.testing.assert_close(rendered, whole, atol=1e-5, rtol=0)
    camera = fit_camera(rendered, image_size=(16, 16))  # the camera of the whole sequence, as before
    assert all(torch.equal(c.R, camera.R) and torch.equal(c.T, camera.T) for c in recorder.cameras)
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_animate_scores_the_pieces_as_the_whole_sequence(tmp_path):
    from talk.metrics import lve_mm
    from talk.pipeline import animate

    model = _regression(window=20)
    whole = _generate(model, _speech_file(tmp_path / "speech.wav", 2.3))
    truth = whole[:50] + 0.001 * torch.randn(50, V, 3, generator=torch.Generator().manual_seed(3))
    result = animate(model, tmp_path / "speech.wav", tmp_path / "a.mp4", size=16, ground_truth=truth,
                     piece_seconds=0.4)  # fmt: skip
    assert result.lve_mm == lve_mm(whole[:50], truth, torch.arange(5))


@pytest.mark.parametrize("view", ["front", "three_quarter"])
def test_framing_pieces_gives_the_camera_of_all_frames(view):
    from render import fit_camera
    from talk.pipeline.animate import Framing

    g = torch.Generator().manual_seed(4)
    frames = torch.randn(1, 200, 3, generator=g) * 0.1 + torch.randn(90, 1, 3, generator=g) * 0.02
    frames[:, :50] = frames[0, :50]  # static vertices repeat in every frame: kept once
    framing = Framing((48, 64), view)
    for piece in frames.split(7):
        framing.add(piece)
    expected = fit_camera(frames, image_size=(48, 64), view=view)
    camera = framing.camera()
    assert torch.equal(camera.R, expected.R) and torch.equal(camera.T, expected.T)
    assert camera.focal == expected.focal and framing.points.shape[0] < 40


@pytest.mark.parametrize("fmt", ["npz", "obj"])
def test_mesh_writer_in_pieces_writes_what_export_meshes_writes(fmt, tmp_path):
    from render.export import MeshSequenceWriter, export_meshes

    g = torch.Generator().manual_seed(5)
    frames, faces = torch.randn(11, V, 3, generator=g), torch.randint(0, V, (40, 3), generator=g)
    whole = export_meshes(frames, faces, tmp_path / "whole", fmt=fmt, fps=25.0)
    with MeshSequenceWriter(faces, tmp_path / "pieces", fmt, fps=25.0) as writer:
        for piece in frames.split(4):
            writer.write(piece)
    assert [p.name for p in writer.written] == [p.name for p in whole]
    for a, b in zip(whole, writer.written, strict=True):
        if fmt == "obj":
            assert a.read_bytes() == b.read_bytes()
        else:
            with np.load(a) as x, np.load(b) as y:
                assert x.files == y.files and all(np.array_equal(x[k], y[k]) for k in x.files)
    assert sorted(p.name for p in (tmp_path / "pieces").iterdir()) == sorted(p.name for p in whole)
