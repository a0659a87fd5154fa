"""HFSpeechEncoder on tiny randomly initialised wav2vec2 / HuBERT / WavLM checkpoints, fully offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from audio.hf import HFSpeechEncoder, SpeechEncoderLoadError  # noqa: E402

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(32, 32, 32, 32, 32, 32, 32),  # default kernels/strides: 400-sample window, 320-sample stride
)
CONFIGS = {
    "wav2vec2": transformers.Wav2Vec2Config,
    "hubert": transformers.HubertConfig,
    "wavlm": transformers.WavLMConfig,
}


@pytest.fixture(scope="module", autouse=True)
def offline():
    """No test here may touch the network: offline mode for both the env var and huggingface_hub's constant."""
    import huggingface_hub.constants

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield


def save_tiny(root: Path, family: str, norm: str = "group") -> Path:
    torch.manual_seed(0)
    layer_norm = norm == "layer"
    config = CONFIGS[family](**TINY, feat_extract_norm=norm, do_stable_layer_norm=layer_norm)
    path = root / f"{family}-{norm}"
    transformers.AutoModel.from_config(config).save_pretrained(path)
    # A matching preprocessor_config.json, as on the hub: do_normalize and the attention-mask policy are read
    # from it.
    transformers.Wav2Vec2FeatureExtractor(
        do_normalize=True, return_attention_mask=layer_norm
    ).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    out = {family: save_tiny(root, family) for family in CONFIGS}
    out.update({f"{family}-layer": save_tiny(root, family, norm="layer") for family in CONFIGS})
    # Variants of the same weights that differ only in their feature extractor config (copies are cheap).
    out["no-normalize"] = Path(shutil.copytree(out["hubert"], root / "no-normalize"))
    transformers.Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(out["no-normalize"])
    out["no-fe"] = Path(shutil.copytree(out["wav2vec2"], root / "no-fe"))
    (out["no-fe"] / "preprocessor_config.json").unlink()
    return out


@pytest.mark.parametrize("family", list(CONFIGS))
def test_loads_saved_checkpoint_offline(checkpoints: dict[str, Path], family: str) -> None:
    path = checkpoints[family]
    enc = HFSpeechEncoder(str(path), freeze="all").eval()
    reference = transformers.AutoModel.from_pretrained(path).eval()
    assert type(enc.model) is type(reference)
    for (name, a), b in zip(enc.model.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # the saved weights, not a fresh random init
    assert (enc.sample_rate, enc.frame_rate, enc.output_dim) == (16000, 50.0, 32)
    wav = torch.randn(2, 16000)
    feats = enc(wav)
    assert feats.x.shape == (2, 49, 32) and feats.mask.all() and feats.frame_rate == 50.0
    # Same computation as the plain transformers model on normalised input.
    norm = (wav - wav.mean(1, keepdim=True)) / torch.sqrt(wav.var(1, unbiased=False, keepdim=True) + 1e-7)
    with torch.no_grad():
        expected = reference(norm).last_hidden_state
    torch.testing.assert_close(feats.x, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", list(CONFIGS))
def test_num_frames_agrees_with_forward_and_transformers(checkpoints: dict[str, Path], family: str) -> None:
    enc = HFSpeechEncoder(str(checkpoints[family]), freeze="all")
    for n in (400, 719, 720, 1039, 16000, 16001):
        assert enc.num_frames(n) == (n - 400) // 320 + 1
        assert enc.num_frames(n) == int(enc.model._get_feat_extract_output_lengths(torch.tensor(n)))
    for n in (400, 719, 720, 5000):
        assert enc(torch.randn(1, n)).x.shape[1] == enc.num_frames(n)
    assert enc.num_frames(399) == 0 and enc.num_frames(0) == 0
    with pytest.raises(ValueError, match="at least one frame"):
        enc(torch.randn(1, 399))


@pytest.mark.parametrize("family", list(CONFIGS))
def test_padding_invariance_with_attention_mask_checkpoints(
    checkpoints: dict[str, Path], family: str
) -> None:
    enc = HFSpeechEncoder(str(checkpoints[f"{family}-layer"]), freeze="all")
    assert enc.use_attention_mask and enc.normalize
    torch.manual_seed(1)
    wav = torch.randn(2, 8000)
    lengths = torch.tensor([8000, 4500])
    feats = enc(wav, lengths)
    assert feats.mask.sum(1).tolist() == [24, 13]
    alone = enc(wav[1:, :4500])
    torch.testing.assert_close(feats.x[1, :13], alone.x[0], atol=1e-4, rtol=1e-4)
    assert torch.all(feats.x[1, 13:] == 0)


def test_group_norm_checkpoints_get_no_attention_mask(checkpoints: dict[str, Path]) -> None:
    enc = HFSpeechEncoder(str(checkpoints["wav2vec2"]), freeze="all")
    assert not enc.use_attention_mask
    feats = enc(torch.randn(2, 8000), torch.tensor([8000, 4000]))
    assert feats.mask.sum(1).tolist() == [24, 12] and torch.all(feats.x[1, 12:] == 0)


def test_input_normalisation_follows_feature_extractor_config(checkpoints: dict[str, Path]) -> None:
    torch.manual_seed(2)
    wav = torch.randn(1, 8000) * 0.1 + 0.05
    normalised = HFSpeechEncoder(str(checkpoints["hubert"]), freeze="all")
    assert normalised.normalize
    # Zero mean / unit variance per utterance makes the output invariant to gain and DC offset.
    torch.testing.assert_close(normalised(wav).x, normalised(3.0 * wav - 0.2).x, atol=1e-4, rtol=1e-4)

    raw = HFSpeechEncoder(str(checkpoints["no-normalize"]), freeze="all")
    assert not raw.normalize
    assert not torch.allclose(raw(wav).x, raw(3.0 * wav - 0.2).x, atol=1e-3)
    off = HFSpeechEncoder(str(checkpoints["hubert"]), freeze="all", normalize_input=False)
    assert not off.normalize

    defaulted = HFSpeechEncoder(str(checkpoints["no-fe"]), freeze="all")  # no preprocessor_config.json
    assert defaulted.normalize and not defaulted.use_attention_mask


def test_layer_selection_and_weighted_sum(checkpoints: dict[str, Path]) -> None:
    path = str(checkpoints["wavlm"])
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        states = (
            transformers.AutoModel.from_pretrained(path).eval()(wav, output_hidden_states=True).hidden_states
        )
    assert len(states) == 3
    base = HFSpeechEncoder(path, freeze="all", normalize_input=False)
    for k in (0, 1, 2, -1):
        enc = HFSpeechEncoder(path, freeze="all", layer=k, normalize_input=False)
        torch.testing.assert_close(enc(wav).x, states[k], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(base(wav).x, states[-1], atol=1e-5, rtol=1e-5)

    mixed = HFSpeechEncoder(path, freeze="all", weighted_layer_sum=True, output_dim=8, normalize_input=False)
    assert mixed.output_dim == 8
    out = mixed(wav)
    assert out.x.shape == (1, 24, 8)
    # Zero-initialised weights: the mix is the mean of the three hidden states, then projected.
    torch.testing.assert_close(out.x, mixed.proj(torch.stack(states).mean(0)), atol=1e-5, rtol=1e-5)
    out.x.sum().backward()
    assert mixed.layer_weights.grad is not None and mixed.layer_weights.grad.abs().sum() > 0
    assert all(p.grad is None for p in mixed.model.parameters())


def test_freeze_modes(checkpoints: dict[str, Path]) -> None:
    path = str(checkpoints["wav2vec2"])

    frozen = HFSpeechEncoder(path, freeze="all")
    assert not any(p.requires_grad for p in frozen.model.parameters())
    frozen.train()
    assert frozen.training and not frozen.model.training  # backbone stays deterministic

    def conv(enc: HFSpeechEncoder) -> list[torch.nn.Parameter]:
        return list(enc.model.feature_extractor.parameters())

    partial = HFSpeechEncoder(path, freeze="feature_extractor", output_dim=4).train()
    assert not any(p.requires_grad for p in conv(partial))
    assert all(
        p.requires_grad for n, p in partial.model.named_parameters() if not n.startswith("feature_extractor")
    )
    assert partial.model.training
    partial(torch.randn(2, 4000)).x.square().sum().backward()
    assert all(p.grad is None for p in conv(partial))
    assert partial.model.encoder.layers[0].attention.q_proj.weight.grad is not None

    full = HFSpeechEncoder(path, freeze="none")
    assert all(p.requires_grad for p in full.model.parameters())


@pytest.mark.parametrize("freeze", ["feature_extractor", "all"])
def test_fine_tuning_trains_the_backbone_in_train_mode_under_trainer_fit(
    checkpoints, freeze, tmp_path
) -> None:
    """Lightning keeps each module's mode at the start of fit: a fine-tuned backbone must already be in train mode
    (dropout, SpecAugment, LayerDrop on), a frozen one in eval mode; validation switches both to eval and back."""
    import lightning as L

    modes: dict[str, list[bool]] = {"train": [], "val": []}

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = HFSpeechEncoder(str(checkpoints["wav2vec2"]), freeze=freeze, output_dim=4)

        def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
            modes["train"].append(self.encoder.model.training)
            return self.encoder(batch[0]).x.square().mean()

        def validation_step(self, batch, batch_idx) -> None:  # noqa: ANN001
            modes["val"].append(self.encoder.model.training)

        def configure_optimizers(self):  # noqa: ANN201
            return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=1e-3)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(2, 4000)), batch_size=1)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(Module(), data, data)
    assert modes["train"] == [freeze != "all"] * 2 and modes["val"] == [False] * 2


def test_from_config_builds_without_files() -> None:
    config = transformers.HubertConfig(**TINY)
    enc = HFSpeechEncoder.from_config(config, freeze="none", output_dim=16, do_normalize=False)
    assert not enc.normalize and not enc.use_attention_mask
    feats = enc.eval()(torch.randn(3, 3200), torch.tensor([3200, 1600, 400]))
    assert feats.x.shape == (3, 9, 16)
    assert feats.mask.sum(1).tolist() == [9, 4, 1]
    layer_cfg = transformers.Wav2Vec2Config(**TINY, feat_extract_norm="layer", do_stable_layer_norm=True)
    assert HFSpeechEncoder.from_config(layer_cfg).use_attention_mask


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"freeze": "some"}, "freeze must be one of"),
        ({"layer": 3}, r"layer must lie in \[-3, 2\]"),
        ({"layer": 1, "weighted_layer_sum": True}, "not both"),
        ({"output_dim": 0}, "output_dim"),
    ],
)
def test_bad_arguments(checkpoints: dict[str, Path], kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HFSpeechEncoder(str(checkpoints["wav2vec2"]), **kwargs)


def test_offline_hub_name_gives_one_line_error() -> None:
    name = "talk-tests/definitely-not-a-cached-model"
    with pytest.raises(SpeechEncoderLoadError) as info:
        HFSpeechEncoder(name)
    assert str(info.value) == (
        f"could not load speech encoder '{name}': the Hugging Face hub is unreachable; download it on a "
        f"connected machine and pass its local directory"
    )
    assert isinstance(info.value, OSError) and isinstance(info.value, ValueError)
    assert info.value.__suppress_context__ and info.value.__cause__ is None


def test_local_directory_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("not a model")
    with pytest.raises(SpeechEncoderLoadError, match="is not a transformers checkpoint") as info:
        HFSpeechEncoder(str(tmp_path))
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)


@pytest.mark.parametrize("name", ["./no/such/dir", "/no/such/dir", "not a valid id!"])
def test_missing_directory_or_invalid_id(name: str) -> None:
    with pytest.raises(
        SpeechEncoderLoadError, match="neither an existing directory nor a valid hub model id"
    ):
        HFSpeechEncoder(name)


def test_missing_transformers_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` raise ImportError
    with pytest.raises(ImportError, match="pip install transformers"):
        HFSpeechEncoder("facebook/wav2vec2-base-960h")


# ------------------------------------------------------------------------------ inference in pieces and windows


@pytest.mark.parametrize("family", sorted(CONFIGS))
@pytest.mark.parametrize("norm", ["group", "layer"])
def test_conv_features_in_pieces_equal_the_whole_pass(
    monkeypatch: pytest.MonkeyPatch, family: str, norm: str
) -> None:
    import audio.hf

    monkeypatch.setattr(audio.hf, "CONV_CHUNK_FRAMES", 7)  # many pieces, and a partial last one
    torch.manual_seed(0)
    config = CONFIGS[family](**TINY, feat_extract_norm=norm, do_stable_layer_norm=norm == "layer")
    encoder = HFSpeechEncoder.from_config(config, freeze="all")
    wav = torch.randn(2, 16000 + 123)  # two different rows: statistics are per row
    wav[1, 9000:] = 0  # padding, as batches carry it
    with torch.no_grad():
        whole = encoder.model.feature_extractor(wav)
        pieces = encoder.conv_features(wav)
    assert pieces.shape == whole.shape == (2, 32, encoder.num_frames(wav.shape[1]))
    torch.testing.assert_close(pieces, whole, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_inference_forward_equals_the_models_own_forward(monkeypatch: pytest.MonkeyPatch, norm: str) -> None:
    import audio.hf

    monkeypatch.setattr(audio.hf, "CONV_CHUNK_FRAMES", 11)
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(**TINY, feat_extract_norm=norm, do_stable_layer_norm=norm == "layer")
    encoder = HFSpeechEncoder.from_config(config, freeze="none", layer=1).eval()
    wav = torch.randn(2, 12000)
    lengths = torch.tensor([12000, 7000])
    with torch.no_grad():
        fast = encoder(wav, lengths).x  # conv encoder in pieces
    slow = encoder(wav, lengths).x  # grad enabled and a trainable conv encoder: the model's own forward
    assert slow.requires_grad
    torch.testing.assert_close(fast, slow.detach(), atol=2e-5, rtol=1e-4)
    assert encoder.model.feature_extractor.__class__.__name__.endswith("FeatureEncoder")  # restored


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_encode_long_with_full_context_equals_forward(family: str) -> None:
    torch.manual_seed(0)
    encoder = HFSpeechEncoder.from_config(CONFIGS[family](**TINY), freeze="all", weighted_layer_sum=True)
    wav = torch.randn(1, 3 * 16000 + 77)
    with torch.no_grad():
        whole = encoder(wav).x
        # 0.5 s windows whose context reaches over the whole input: every window sees what forward sees.
        windowed = encoder.encode_long(wav, window_seconds=0.5, context_seconds=4.0)
        one_window = encoder.encode_long(wav, window_seconds=10.0, context_seconds=0.0)
    assert windowed.x.shape == whole.shape and bool(windowed.mask.all())
    torch.testing.assert_close(windowed.x, whole, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(one_window.x, whole, atol=2e-5, rtol=1e-4)


def test_encode_long_windows_see_only_their_context() -> None:
    torch.manual_seed(0)
    encoder = HFSpeechEncoder.from_config(transformers.Wav2Vec2Config(**TINY), freeze="all")
    wav = torch.randn(1, 4 * 16000)
    changed = wav.clone()
    changed[:, 3 * 16000 :] = torch.randn(1, 16000)  # change only the last second
    with torch.no_grad():
        a = encoder.encode_long(wav, window_seconds=1.0, context_seconds=0.5).x
        b = encoder.encode_long(changed, window_seconds=1.0, context_seconds=0.5).x
    # Normalisation is per utterance, so every frame moves a little; frames of windows whose context ends
    # before the change move only through it, far less than the frames that hear the change.
    near = (a - b)[:, 150:].abs().mean()
    far = (a - b)[:, :70].abs().mean()
    assert a.shape[1] == encoder.num_frames(wav.shape[1])
    assert far < 0.05 * near
    with pytest.raises(ValueError, match="window_seconds > 0"):
        encoder.encode_long(wav, window_seconds=0.0, context_seconds=0.5)


@pytest.mark.parametrize("family", ["wav2vec2-layer", "hubert", "wavlm"])
def test_contained_init_args_rebuild_the_encoder_without_its_directory(checkpoints, family, tmp_path) -> None:
    enc = HFSpeechEncoder(str(checkpoints[family]), freeze="all", output_dim=8).eval()
    stored = tmp_path / "args.pt"  # what a checkpoint's config holds must load with weights_only
    torch.save(enc.contained_init_args(), stored)
    args = torch.load(stored, weights_only=True)
    assert args["name_or_path"] is None
    rebuilt = HFSpeechEncoder(freeze="all", output_dim=8, **args).eval()
    rebuilt.load_state_dict(enc.state_dict())
    wav = torch.randn(1, 8000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(rebuilt(wav).x, enc(wav).x)
    assert (rebuilt.normalize, rebuilt.use_attention_mask) == (enc.normalize, enc.use_attention_mask)
