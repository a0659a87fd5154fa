"""Self-supervised speech encoders from Hugging Face transformers (wav2vec 2.0, HuBERT, WavLM)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from audio.encoder import AudioEncoder
from audio.features import AudioFeatures

FREEZE_MODES = ("all", "feature_extractor", "none")


class SpeechEncoderLoadError(ValueError, OSError):
    """A speech encoder checkpoint could not be loaded; the message says why and what to do."""


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as err:
        raise ImportError(
            "HFSpeechEncoder needs the transformers package; install it with `pip install transformers`."
        ) from err
    return transformers


def _is_repo_not_found(err: BaseException) -> bool:
    """Whether the hub answered that the repository does not exist (as opposed to being unreachable)."""
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if type(cur).__name__ in ("RepositoryNotFoundError", "GatedRepoError"):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _invalid_repo_id(name: str) -> str | None:
    """Why ``name`` (not an existing directory) cannot be a hub model id, or None when it can."""
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        return "is neither an existing directory nor a valid hub model id"
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(name)
    except ImportError:
        return None  # let from_pretrained decide
    except ValueError:
        return "is neither an existing directory nor a valid hub model id"
    return None


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
    """

    def __init__(
        self,
        name_or_path: str = "facebook/wav2vec2-base-960h",
        freeze: str = "feature_extractor",
        layer: int | None = None,
        weighted_layer_sum: bool = False,
        output_dim: int | None = None,
        normalize_input: bool = True,
    ) -> None:
        super().__init__()
        self._check_options(freeze, layer, weighted_layer_sum, output_dim)  # before a possibly slow download
        model, fe_config = self._load_pretrained(str(name_or_path))
        self._build(model, fe_config, freeze, layer, weighted_layer_sum, output_dim, normalize_input)

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
        model = _transformers().AutoModel.from_config(config)
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

    @staticmethod
    def _load_pretrained(name: str) -> tuple[nn.Module, dict[str, Any]]:
        transformers = _transformers()
        local = Path(name).expanduser()
        if not local.is_dir():
            problem = "is a file, not a checkpoint directory" if local.exists() else _invalid_repo_id(name)
            if problem:
                raise SpeechEncoderLoadError(
                    f"could not load speech encoder '{name}': it {problem}; pass the directory written by "
                    f"save_pretrained or a hub id such as 'facebook/wav2vec2-base-960h'."
                )
        try:
            model = transformers.AutoModel.from_pretrained(str(local) if local.is_dir() else name)
        except (OSError, ValueError) as err:
            reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
            if local.is_dir():
                message = (
                    f"could not load speech encoder '{name}': the directory is not a transformers checkpoint "
                    f"({reason}); save one there with save_pretrained."
                )
            elif isinstance(err, OSError) and _is_repo_not_found(err):
                message = (
                    f"could not load speech encoder '{name}': no such model on the Hugging Face hub or on disk; "
                    f"check the name or pass a local directory."
                )
            elif isinstance(err, OSError):
                message = (
                    f"could not load speech encoder '{name}': the Hugging Face hub is unreachable; download it on "
                    f"a connected machine and pass its local directory"
                )
            else:  # a malformed model id, or a cached checkpoint transformers cannot build
                message = (
                    f"could not load speech encoder '{name}' ({reason}); pass a wav2vec2 / HuBERT / WavLM hub id "
                    f"or local directory."
                )
            error = SpeechEncoderLoadError(message)
            error.original = err  # kept for debugging without printing the hub's traceback to the user
            raise error from None

        try:
            fe = transformers.Wav2Vec2FeatureExtractor.from_pretrained(str(local) if local.is_dir() else name)
            fe_config = {
                "do_normalize": bool(fe.do_normalize),
                "return_attention_mask": bool(fe.return_attention_mask),
                "sampling_rate": int(fe.sampling_rate),
            }
        except (OSError, ValueError):
            # No preprocessor_config.json: use the Wav2Vec2FeatureExtractor defaults for normalisation and
            # Hugging Face's rule (attention mask only for layer-norm feature encoders).
            norm = getattr(model.config, "feat_extract_norm", "group")
            fe_config = {"do_normalize": True, "return_attention_mask": norm == "layer"}
        return model, fe_config

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
        param = next(self.model.parameters())
        wav = wav.to(param.dtype)
        sample_mask = torch.arange(wav.shape[1], device=wav.device)[None, :] < lengths[:, None]  # [B, N]
        keep = sample_mask.to(wav.dtype)
        if self.normalize:
            count = lengths.clamp(min=1).to(wav.dtype)[:, None]
            mean = (wav * keep).sum(dim=1, keepdim=True) / count
            var = ((wav - mean).square() * keep).sum(dim=1, keepdim=True) / count
            wav = (wav - mean) / torch.sqrt(var + 1e-7)  # 1e-7 as in Wav2Vec2FeatureExtractor
        wav = wav * keep  # padding is zero, as the feature extractor's padding_value

        kwargs: dict[str, Any] = {
            "output_hidden_states": self.layer is not None or self.layer_weights is not None
        }
        if self.use_attention_mask:
            kwargs["attention_mask"] = sample_mask.long()
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.freeze != "all"):
            out = self.model(wav, **kwargs)
        if self.layer_weights is not None:
            states = torch.stack(tuple(out.hidden_states), dim=0)  # [L+1, B, Ta, H]
            weights = torch.softmax(self.layer_weights, dim=0).to(states.dtype)
            x = torch.einsum("l,lbth->bth", weights, states)
        elif self.layer is not None:
            x = out.hidden_states[self.layer]
        else:
            x = out.last_hidden_state
        if self.proj is not None:
            x = self.proj(x)

        mask = self._frame_mask(lengths, x.shape[1])
        x = x * mask[..., None].to(x.dtype)
        return AudioFeatures(x=x, mask=mask, frame_rate=self.frame_rate)
