"""Self-supervised speech encoders from Hugging Face transformers (wav2vec 2.0, HuBERT, WavLM)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from audio.encoder import AudioEncoder
from audio.features import AudioFeatures
from audio.hf_conv import CONV_CHUNK_FRAMES, conv_geometry, conv_in_pieces
from audio.hf_loading import SpeechEncoderLoadError, load_pretrained, transformers_module

__all__ = ["CONV_CHUNK_FRAMES", "FREEZE_MODES", "HFSpeechEncoder", "SpeechEncoderLoadError"]

FREEZE_MODES = ("all", "feature_extractor", "none")


class _GivenFeatures(nn.Module):
    """Stands in for a model's convolutional feature encoder and returns features computed beforehand."""

    def __init__(self, features: Tensor) -> None:
        super().__init__()
        self.features = features

    def forward(self, input_values: Tensor) -> Tensor:
        return self.features


class HFSpeechEncoder(AudioEncoder):
    """A transformers wav2vec2 / HuBERT / WavLM backbone (``AutoModel``) as an ``AudioEncoder``.

    Frame convention (exact): the convolutional feature encoder has no padding, so N samples give
    ``Ta = num_frames(N)`` frames computed layer by layer as ``n -> (n - kernel) // stride + 1`` over
    ``config.conv_kernel`` / ``config.conv_stride``. For the standard kernels (10,3,3,3,3,2,2) and strides
    (5,2,2,2,2,2,2) this equals ``(N - 400) // 320 + 1`` for N >= 400 and 0 below: one frame per 20 ms
    (50 Hz at 16 kHz), each covering a 25 ms window starting at sample ``320 * i``. 16000 samples give 49.

    Output: ``layer=None`` and ``weighted_layer_sum=False`` return the model's ``last_hidden_state`` (after the
    final layer norm of "stable layer norm" models); ``layer=k`` returns ``hidden_states[k]`` where 0 is the
    input of the first transformer block and L (= -1) the output of the last; ``weighted_layer_sum=True``
    learns softmax weights over all L + 1 hidden states (initialised uniform). An optional linear projection
    maps the result to ``output_dim``.

    Input normalisation: when ``normalize_input`` is True and the checkpoint's feature extractor config says
    ``do_normalize`` (as wav2vec2-base-960h does; hubert-base-ls960 and wavlm-base-plus do not), each waveform
    is normalised to zero mean and unit variance over its valid samples, padding set to zero, exactly as
    ``Wav2Vec2FeatureExtractor`` does. A checkpoint without a feature extractor config is treated as
    ``do_normalize=True``.

    Padding: the sample-level attention mask is passed to the model only when the feature extractor config
    says ``return_attention_mask`` (layer-norm checkpoints such as wav2vec2-large-lv60); group-norm
    checkpoints (wav2vec2-base, hubert-base) are fed zero padding without a mask, as Hugging Face recommends for
    them. Consequently only attention-mask checkpoints give padding-invariant features; with group-norm
    checkpoints, padding changes valid frames slightly (GroupNorm normalises over the padded length).

    Inference: without autograd through the convolutional feature encoder (always with ``freeze="all"`` or
    ``"feature_extractor"``, and under ``torch.no_grad`` otherwise) it is evaluated in pieces of
    ``CONV_CHUNK_FRAMES`` frames (:meth:`conv_features`, equal to the whole pass to float rounding), which is
    faster and keeps memory flat on long inputs. :meth:`encode_long` also runs the transformer in windows.

    Freezing: ``"all"`` freezes the backbone and keeps it in eval mode (no dropout, LayerDrop or SpecAugment;
    run without autograd); ``"feature_extractor"`` freezes only the convolutional feature encoder (the usual
    fine-tuning setup); ``"none"`` trains everything. The layer weights and projection are always trainable.

    Args:
        name_or_path: Hub model id or local directory saved with ``save_pretrained``.
        freeze: One of "all", "feature_extractor", "none".
        layer: Hidden state index to return (see above); None = last_hidden_state.
        weighted_layer_sum: Return a learned softmax-weighted sum of all hidden states (excludes ``layer``).
        output_dim: Project features to this size with a linear layer; None keeps the model's hidden size.
        normalize_input: Apply the checkpoint's per-utterance input normalisation when it asks for it.
        hf_config: Instead of ``name_or_path`` (as checkpoints store the encoder, :meth:`contained_init_args`):
            the transformers config as a dict (``config.to_dict()``, with its ``model_type``); the model is built
            randomly initialised and its weights must come from a state dict. Nothing is read or downloaded.
        feature_extractor: With ``hf_config``: the feature-extractor settings (``do_normalize``,
            ``return_attention_mask``, ``sampling_rate``).
    """

    file_arguments = ("name_or_path",)  # what contained_init_args() replaces

    def __init__(
        self,
        name_or_path: str | None = "facebook/wav2vec2-base-960h",
        freeze: str = "feature_extractor",
        layer: int | None = None,
        weighted_layer_sum: bool = False,
        output_dim: int | None = None,
        normalize_input: bool = True,
        hf_config: dict | None = None,
        feature_extractor: dict | None = None,
    ) -> None:
        super().__init__()
        self._check_options(freeze, layer, weighted_layer_sum, output_dim)  # before a possibly slow download
        if (name_or_path is None) == (hf_config is None):
            raise ValueError("HFSpeechEncoder: pass either name_or_path or hf_config (from a checkpoint).")
        if hf_config is not None:
            transformers = transformers_module()
            settings = dict(hf_config)
            config = transformers.AutoConfig.for_model(settings.pop("model_type"), **settings)
            model = transformers.AutoModel.from_config(config)
            fe_config = dict(feature_extractor or {})
            fe_config.setdefault("do_normalize", True)
            fe_config.setdefault(
                "return_attention_mask", getattr(config, "feat_extract_norm", "group") == "layer"
            )
        else:
            model, fe_config = load_pretrained(str(name_or_path))
        self._build(model, fe_config, freeze, layer, weighted_layer_sum, output_dim, normalize_input)

    def contained_init_args(self) -> dict[str, Any]:
        """Init args that rebuild this encoder's structure without the hub or its directory (the state dict
        holds the weights)."""
        return {
            "name_or_path": None,
            "hf_config": self.model.config.to_dict(),
            "feature_extractor": self.fe_config,
        }

    @classmethod
    def from_config(
        cls,
        config: Any,
        *,
        do_normalize: bool = True,
        return_attention_mask: bool | None = None,
        freeze: str = "feature_extractor",
        layer: int | None = None,
        weighted_layer_sum: bool = False,
        output_dim: int | None = None,
        normalize_input: bool = True,
    ) -> HFSpeechEncoder:
        """Build a randomly initialised encoder from a transformers config (for tests and experiments).

        Args:
            config: A ``Wav2Vec2Config``, ``HubertConfig``, ``WavLMConfig`` (anything ``AutoModel`` accepts).
            do_normalize: Feature extractor setting: normalise input per utterance.
            return_attention_mask: Feature extractor setting: pass the attention mask; None = True exactly for
                ``feat_extract_norm == "layer"`` configs.
            freeze: See the class docstring.
            layer: See the class docstring.
            weighted_layer_sum: See the class docstring.
            output_dim: See the class docstring.
            normalize_input: See the class docstring.
        """
        cls._check_options(freeze, layer, weighted_layer_sum, output_dim)
        model = transformers_module().AutoModel.from_config(config)
        if return_attention_mask is None:
            return_attention_mask = getattr(config, "feat_extract_norm", "group") == "layer"
        fe_config = {"do_normalize": do_normalize, "return_attention_mask": return_attention_mask}
        encoder = cls.__new__(cls)
        nn.Module.__init__(encoder)
        encoder._build(model, fe_config, freeze, layer, weighted_layer_sum, output_dim, normalize_input)
        return encoder

    @staticmethod
    def _check_options(
        freeze: str, layer: int | None, weighted_layer_sum: bool, output_dim: int | None
    ) -> None:
        if freeze not in FREEZE_MODES:
            raise ValueError(f"HFSpeechEncoder freeze must be one of {FREEZE_MODES}, got {freeze!r}.")
        if layer is not None and weighted_layer_sum:
            raise ValueError("HFSpeechEncoder: pass either layer or weighted_layer_sum=True, not both.")
        if output_dim is not None and output_dim < 1:
            raise ValueError(f"HFSpeechEncoder output_dim must be positive or None, got {output_dim}.")

    def _build(
        self,
        model: nn.Module,
        fe_config: dict[str, Any],
        freeze: str,
        layer: int | None,
        weighted_layer_sum: bool,
        output_dim: int | None,
        normalize_input: bool,
    ) -> None:
        config = model.config
        num_states = int(config.num_hidden_layers) + 1
        if layer is not None and not -num_states <= layer < num_states:
            raise ValueError(
                f"HFSpeechEncoder layer must lie in [{-num_states}, {num_states - 1}] for this {num_states - 1}-layer "
                f"model, got {layer}."
            )
        if getattr(config, "add_adapter", False):
            raise ValueError(
                "HFSpeechEncoder does not support checkpoints with add_adapter=True (the adapter changes the frame "
                "rate); use the base model."
            )

        self.model = model
        self.fe_config = {
            k: fe_config[k]
            for k in ("do_normalize", "return_attention_mask", "sampling_rate")
            if k in fe_config
        }
        self.freeze = freeze
        self.layer = layer
        self.normalize = bool(normalize_input and fe_config["do_normalize"])
        self.use_attention_mask = bool(fe_config["return_attention_mask"])
        self.conv_kernel = tuple(int(k) for k in config.conv_kernel)
        self.conv_stride = tuple(int(s) for s in config.conv_stride)
        # Every released wav2vec2 / HuBERT / WavLM checkpoint is trained at 16 kHz; a feature extractor config
        # may say otherwise.
        self.sample_rate = int(fe_config.get("sampling_rate", 16000))
        stride = 1
        for s in self.conv_stride:
            stride *= s
        self.frame_rate = self.sample_rate / stride
        hidden = int(config.hidden_size)
        self.layer_weights = nn.Parameter(torch.zeros(num_states)) if weighted_layer_sum else None
        self.proj = nn.Linear(hidden, output_dim) if output_dim is not None else None
        self.output_dim = int(output_dim) if output_dim is not None else hidden

        if freeze == "all":
            for p in self.model.parameters():
                p.requires_grad_(False)
            self.model.eval()
        elif freeze == "feature_extractor":
            # HubertModel / WavLMModel lack freeze_feature_encoder(), but all three name the conv stack alike.
            conv = getattr(self.model, "feature_extractor", None)
            if conv is None:
                raise ValueError(
                    f"{type(self.model).__name__} has no convolutional feature_extractor to freeze."
                )
            for p in conv.parameters():
                p.requires_grad_(False)
            if hasattr(conv, "_requires_grad"):
                conv._requires_grad = False  # what transformers' own _freeze_parameters() also sets
        if freeze != "all":
            # from_pretrained returns the backbone in eval mode, and Lightning keeps each module's mode at the start
            # of fit (it no longer calls .train()): without this, fine-tuning would run with dropout, SpecAugment
            # masking and LayerDrop off. The backbone follows this module's mode from here on.
            self.model.train(self.training)

    def train(self, mode: bool = True) -> HFSpeechEncoder:
        """Set training mode; a fully frozen backbone stays in eval mode so it is deterministic."""
        super().train(mode)
        if self.freeze == "all":
            self.model.eval()
        return self

    def num_frames(self, num_samples: int) -> int:
        """Frames of the conv feature encoder for ``num_samples`` samples (see the class docstring)."""
        n = int(num_samples)
        for k, s in zip(self.conv_kernel, self.conv_stride, strict=True):
            if n < k:
                return 0
            n = (n - k) // s + 1
        return n

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> AudioFeatures:
        """Encode waveforms.

        Args:
            wav: [B, N] float waveforms at 16 kHz, right-padded.
            lengths: [B] valid sample counts; None = all N valid.

        Returns:
            AudioFeatures(x [B, num_frames(N), output_dim], mask, frame_rate=50.0), padded frames zeroed.
        """
        wav, lengths = self._check_input(wav, lengths)
        wav, sample_mask = self._prepare_input(wav, lengths)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.freeze != "all"):
            if self._conv_needs_grad():
                out = self.model(wav, **self._model_kwargs(sample_mask))
            else:
                out = self._run_transformer(self.conv_features(wav), wav, sample_mask)
        x = self._select(out)
        mask = self._frame_mask(lengths, x.shape[1])
        x = x * mask[..., None].to(x.dtype)
        return AudioFeatures(x=x, mask=mask, frame_rate=self.frame_rate)

    def encode_long(self, wav: Tensor, window_seconds: float, context_seconds: float) -> AudioFeatures:
        """Encode unpadded waveforms with the transformer run window by window (linear cost in the length).

        Only the transformer is windowed. The input normalisation and the convolutional features are computed
        over the whole input exactly as :meth:`forward` does (:meth:`conv_features`); the transformer then runs on
        windows of about ``window_seconds`` of frames (the length split evenly, so no window is a sliver) plus up to
        ``context_seconds`` of frames on each side, and keeps each window's own frames. A context that covers the
        whole input gives exactly :meth:`forward`. Inference only: the convolutional encoder gets no gradient.

        Args:
            wav: ``[B, N]`` float waveforms, all N samples valid.
            window_seconds: Frames per window, context excluded, in seconds (> 0).
            context_seconds: Context on each side of a window (>= 0).

        Returns:
            AudioFeatures with x ``[B, num_frames(N), output_dim]`` and an all-True mask.
        """
        if not window_seconds > 0 or not context_seconds >= 0:
            raise ValueError(
                f"HFSpeechEncoder.encode_long needs window_seconds > 0 and context_seconds >= 0, got "
                f"{window_seconds} and {context_seconds}."
            )
        wav, lengths = self._check_input(wav, None)
        wav, sample_mask = self._prepare_input(wav, lengths)
        stride, field = self._conv_geometry()
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.freeze != "all"):
            features = self.conv_features(wav)  # [B, C, Ta]
            total = features.shape[-1]
            windows = max(1, math.ceil(total / max(1, round(window_seconds * self.frame_rate))))
            size = math.ceil(total / windows)
            context = math.ceil(round(context_seconds * self.frame_rate, 6))
            parts = []
            for start in range(0, total, size):
                end = min(total, start + size)
                lo, hi = max(0, start - context), min(total, end + context)
                samples = slice(lo * stride, (hi - 1) * stride + field)
                out = self._run_transformer(features[:, :, lo:hi], wav[:, samples], sample_mask[:, samples])
                parts.append(self._select(out)[:, start - lo : end - lo])
        x = torch.cat(parts, dim=1)
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return AudioFeatures(x=x, mask=mask, frame_rate=self.frame_rate)

    # ------------------------------------------------------------------------------------------------ internals

    def _prepare_input(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Cast to the model's dtype, normalise per utterance when the checkpoint asks for it, zero the padding;
        returns the waveforms and their sample mask ``[B, N]``."""
        param = next(self.model.parameters())
        wav = wav.to(param.dtype)
        sample_mask = torch.arange(wav.shape[1], device=wav.device)[None, :] < lengths[:, None]  # [B, N]
        keep = sample_mask.to(wav.dtype)
        if self.normalize:
            count = lengths.clamp(min=1).to(wav.dtype)[:, None]
            mean = (wav * keep).sum(dim=1, keepdim=True) / count
            var = ((wav - mean).square() * keep).sum(dim=1, keepdim=True) / count
            wav = (wav - mean) / torch.sqrt(var + 1e-7)  # 1e-7 as in Wav2Vec2FeatureExtractor
        return wav * keep, sample_mask  # padding is zero, as the feature extractor's padding_value

    def _model_kwargs(self, sample_mask: Tensor) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "output_hidden_states": self.layer is not None or self.layer_weights is not None
        }
        if self.use_attention_mask:
            kwargs["attention_mask"] = sample_mask.long()
        return kwargs

    def _select(self, out: Any) -> Tensor:
        """The requested representation ``[B, Ta, output_dim]`` from a model output."""
        if self.layer_weights is not None:
            states = torch.stack(tuple(out.hidden_states), dim=0)  # [L+1, B, Ta, H]
            weights = torch.softmax(self.layer_weights, dim=0).to(states.dtype)
            x = torch.einsum("l,lbth->bth", weights, states)
        elif self.layer is not None:
            x = out.hidden_states[self.layer]
        else:
            x = out.last_hidden_state
        return self.proj(x) if self.proj is not None else x

    def _run_transformer(self, features: Tensor, wav: Tensor, sample_mask: Tensor) -> Any:
        """The model's own forward with its convolutional encoder replaced by ``features`` ``[B, C, Ta]``.

        Going through the model's forward keeps everything after the convolutions (feature projection, attention
        mask, positional convolution, layers, hidden-state outputs) exactly the library's.
        """
        conv = self.model.feature_extractor
        self.model.feature_extractor = _GivenFeatures(features)
        try:
            return self.model(wav, **self._model_kwargs(sample_mask))
        finally:
            self.model.feature_extractor = conv

    def _conv_needs_grad(self) -> bool:
        conv = self.model.feature_extractor
        return torch.is_grad_enabled() and any(p.requires_grad for p in conv.parameters())

    def _conv_geometry(self) -> tuple[int, int]:
        """(total stride, receptive field) of the convolutional encoder in samples."""
        return conv_geometry(self.conv_kernel, self.conv_stride)

    @torch.no_grad()
    def conv_features(self, wav: Tensor) -> Tensor:
        """The convolutional feature encoder's output ``[B, C, num_frames(N)]``, computed in pieces, no autograd.

        Equals ``model.feature_extractor(wav)`` to float rounding: pieces of ``CONV_CHUNK_FRAMES`` frames are
        evaluated from their own samples, a GroupNorm first layer with statistics of the whole input (see
        :func:`audio.hf_conv.conv_in_pieces`).

        Args:
            wav: ``[B, N]`` waveforms, already normalised and zero-padded as the model expects.
        """
        stride, field = self._conv_geometry()
        frames = self.num_frames(wav.shape[1])
        return conv_in_pieces(self.model.feature_extractor, wav, frames, stride, field, CONV_CHUNK_FRAMES)
