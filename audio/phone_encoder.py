"""Speech features that work on any voice: phone posteriors of an acoustic model trained on real speech.

The models ``talk`` trains out of the box learn from synthetic and TTS voices; a log-mel front end learns those
voices, and on a human voice it misses what matters for the lips (closures of p/b/m). ``PhoneEncoder`` starts from
the CMU Sphinx US English acoustic model that ships inside the ``pocketsphinx`` wheel (trained on real speech; read
and scored by the project's own runtime, :mod:`audio.sphinx`, with no pocketsphinx import): every 10 ms frame
becomes the log-posteriors of its 42 phones (39 ARPAbet phones, silence, two noises) plus its loudness relative to
the utterance, and a small learned Conv1d stack maps them to ``output_dim`` features at 50 Hz. The acoustic model is
frozen and not stored in checkpoints (its files come from the installed wheel; a fingerprint of them is, so a
checkpoint refuses a different model in one line).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audio.encoder import AudioEncoder
from audio.features import AudioFeatures
from talk.errors import UserError

__all__ = ["PhoneEncoder", "PhonePosteriors", "AcousticModelMismatchError"]

HOP = 160  # the acoustic model's frame shift at 16 kHz (100 frames/s)
_WINDOW = 410  # its window (0.025625 s)
_LEFT = _WINDOW // 2 - HOP // 2  # 125: pads so that 100 Hz frame j is centred on sample j * 160 + 80
_FLOOR = -30.0  # log-posterior floor (nats): below it a phone is simply absent


class AcousticModelMismatchError(UserError):
    """A checkpoint's PhoneEncoder was trained on another acoustic model than the one installed."""


def _model_fingerprint(model_dir: Path) -> Tensor:
    """First 8 bytes of the SHA-256 of the model files, as a [8] uint8 tensor (stored in checkpoints)."""
    digest = hashlib.sha256()
    for name in ("feat.params", "mdef", "means", "variances", "sendump", "transition_matrices"):
        digest.update((model_dir / name).read_bytes())
    return torch.tensor(list(digest.digest()[:8]), dtype=torch.uint8)


class PhonePosteriors(AudioEncoder):
    """The frozen part of :class:`PhoneEncoder` on its own: 43 acoustic values per 10 ms frame, 100 frames/s.

    Frames (exact): ``num_frames(N) = N // 160``; frame ``j`` is the acoustic model's 25.6 ms window centred on
    sample ``160 j + 80`` (the waveform is reflected at its ends). Per frame: the 42 phone log-posteriors of
    :class:`~audio.sphinx.SphinxAcousticModel` (equal phone priors, floored at -30 nats, divided by 10) and the
    c0 cepstrum after cepstral mean normalisation, divided by 5 (see :class:`PhoneEncoder`). No learned weights:
    the features a phone decoder reads (:class:`talk.pipeline.phonetic.PhoneticGenerator`). Each batch row is
    encoded alone over its valid samples; the output for a waveform is memoised (``memo`` utterances).

    Args:
        model_dir: Folder of the Sphinx acoustic model; None: the one inside the installed pocketsphinx wheel.
        memo: Utterances whose features are memoised (0: none).
    """

    sample_rate = 16000
    frame_rate = 100.0

    def __init__(self, model_dir: str | None = None, memo: int = 4096) -> None:
        super().__init__()
        self._init_acoustic(model_dir, memo)
        self.output_dim = self.input_dim
        self.hop_length = HOP

    def _init_acoustic(self, model_dir: str | None, memo: int) -> None:
        from audio.sphinx.model_io import default_model_dir
        from audio.sphinx.scorer import SphinxAcousticModel

        directory = default_model_dir() if model_dir is None else Path(model_dir)
        # frozen, non-persistent buffers; equal priors per phone: silence is not drowned by phones with many states
        self.acoustic = SphinxAcousticModel.load(directory, equal_phone_priors=True)
        self.register_buffer("acoustic_fingerprint", _model_fingerprint(directory))
        self.phones = self.acoustic.phones
        self.input_dim = len(self.phones) + 1
        self.memo = int(memo)
        self._memo: OrderedDict[bytes, Tensor] = OrderedDict()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:  # fmt: skip
        stored = state_dict.get(prefix + "acoustic_fingerprint")
        if stored is not None and not torch.equal(stored.cpu(), self.acoustic_fingerprint.cpu()):
            raise AcousticModelMismatchError(
                "this checkpoint's PhoneEncoder was trained with another Sphinx acoustic model than the one "
                "installed; install the pocketsphinx version it was trained with (pip install 'pocketsphinx>=5,<6') "
                "or pass its model folder as audio_encoder.init_args.model_dir"
            )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def num_frames(self, num_samples: int) -> int:
        """``num_samples // 160``: one frame per complete 10 ms hop."""
        return max(int(num_samples), 0) // HOP

    def _fine_frames(self, num_samples: int) -> int:
        """100 Hz acoustic frames computed for ``num_samples`` samples."""
        return self.num_frames(num_samples)

    @torch.no_grad()
    def frame_features(self, wav: Tensor) -> Tensor:
        """The frozen features of one unpadded waveform ``[N]``: ``[n, 43]`` at 100 Hz (class docstrings)."""
        n = self._fine_frames(wav.shape[0])
        if n == 0:
            return torch.zeros(0, self.input_dim)
        samples = wav.detach().float().cpu()
        key = hashlib.blake2b(samples.numpy().tobytes(), digest_size=16).digest() if self.memo > 0 else b""
        hit = self._memo.get(key) if self.memo > 0 else None
        if hit is not None:
            self._memo.move_to_end(key)
            return hit
        right = _WINDOW + HOP  # enough that the acoustic model yields at least n frames
        padded = F.pad(samples[None, None], (_LEFT, right), mode="reflect" if len(samples) > right else "replicate")
        padded = padded[0, 0]
        feats = self.acoustic.features(padded)[:n]  # [n, 39]: CMN'd cepstra first
        post = self.acoustic.phone_log_posteriors_from_features(feats).float().clamp(min=_FLOOR) / 10.0
        out = torch.cat([post, feats[:, :1].float() / 5.0], dim=1)
        if self.memo > 0:
            self._memo[key] = out
            if len(self._memo) > self.memo:
                self._memo.popitem(last=False)
        return out

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> AudioFeatures:
        """``AudioFeatures(x [B, N // 160, 43], mask, 100 Hz)`` of waveforms ``[B, N]`` at 16 kHz (padded frames
        zeroed)."""
        wav, lengths = self._check_input(wav, lengths)
        t = self.num_frames(wav.shape[1])
        x = wav.new_zeros(wav.shape[0], t, self.input_dim, dtype=torch.float32)
        for b in range(wav.shape[0]):
            rows = self.frame_features(wav[b, : int(lengths[b])])
            x[b, : len(rows)] = rows.to(x)
        return AudioFeatures(x=x, mask=self._frame_mask(lengths, t), frame_rate=self.frame_rate)

class PhoneEncoder(PhonePosteriors):
    """Frozen acoustic-model phone posteriors + a learned Conv1d stack, 50 frames/s.

    Frames (exact): ``num_frames(N) = N // 320``. Output frame m covers the 20 ms hop ``[320 m, 320 m + 320)``: it
    is computed from the acoustic model's two 10 ms frames centred on samples ``320 m + 80`` and ``320 m + 240``
    (each a 25.6 ms window; the waveform is reflected at its ends to centre the first and last windows).

    Per 10 ms frame the frozen part gives 43 values: the 42 phone log-posteriors of :class:`SphinxAcousticModel`
    (senone likelihoods averaged per phone, i.e. equal phone priors; floored at -30 nats and divided by 10) and
    the frame's c0 cepstrum after the acoustic model's cepstral mean normalisation, divided by 5 (loudness relative
    to the utterance, so silences read as silences at any recording level). The acoustic model normalises
    cepstra by the utterance's mean (batch CMN, as it was trained), so a frame depends on the whole
    utterance: each batch row is encoded alone over its valid samples (padding never changes a row), and
    streaming (``encode_long``) approximates with each window's own mean. Then Conv1d(43 -> output_dim, kernel 4,
    stride 2) brings the frames to 50 Hz, ``num_layers - 1`` residual Conv1d layers (``kernel_size``, same padding,
    GELU, dropout) and a LayerNorm follow; padded frames are zeroed before every convolution.

    The frozen part's output for a waveform is memoised (``memo`` utterances, 4096 by default, keyed by the
    waveform's bytes): epochs after the first re-use it.

    Args:
        output_dim: Feature size D of the output.
        num_layers: Number of Conv1d layers (>= 1).
        kernel_size: Temporal kernel of the residual layers (odd).
        dropout: Dropout after each layer (training only).
        model_dir: Folder of the Sphinx acoustic model; None: the one inside the installed pocketsphinx wheel.
        memo: Utterances whose frozen features are memoised (0: none, e.g. to time the encoder).
    """

    sample_rate = 16000
    frame_rate = 50.0

    def __init__(
        self,
        output_dim: int = 128,
        num_layers: int = 3,
        kernel_size: int = 3,
        dropout: float = 0.1,
        model_dir: str | None = None,
        memo: int = 4096,
    ) -> None:
        for name, value in (("output_dim", output_dim), ("num_layers", num_layers), ("kernel_size", kernel_size)):
            if int(value) != value or value < 1:
                raise ValueError(f"PhoneEncoder argument {name} must be a positive integer, got {value!r}.")
        if kernel_size % 2 != 1:
            raise ValueError(f"PhoneEncoder kernel_size must be odd for symmetric 'same' padding, got {kernel_size}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"PhoneEncoder dropout must lie in [0, 1), got {dropout}.")
        AudioEncoder.__init__(self)
        self._init_acoustic(model_dir, memo)
        self.output_dim = int(output_dim)
        self.hop_length = 2 * HOP
        self.first = nn.Conv1d(self.input_dim, output_dim, kernel_size=4, stride=2, padding=1)
        pad = (kernel_size - 1) // 2
        self.convs = nn.ModuleList(
            nn.Conv1d(output_dim, output_dim, kernel_size, padding=pad) for _ in range(num_layers - 1)
        )
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(output_dim)

    def num_frames(self, num_samples: int) -> int:
        """``num_samples // 320``: one frame per complete 20 ms hop (see the class docstring)."""
        return max(int(num_samples), 0) // self.hop_length

    def _fine_frames(self, num_samples: int) -> int:
        return 2 * self.num_frames(num_samples)

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> AudioFeatures:
        """Encode waveforms.

        Args:
            wav: [B, N] float waveforms at 16 kHz, right-padded.
            lengths: [B] valid sample counts; None = all N valid.

        Returns:
            AudioFeatures(x [B, N // 320, output_dim], mask, 50 Hz), padded frames zeroed.
        """
        wav, lengths = self._check_input(wav, lengths)
        ta = self.num_frames(wav.shape[1])
        feats = wav.new_zeros(wav.shape[0], 2 * ta, self.input_dim, dtype=self.first.weight.dtype)
        for b in range(wav.shape[0]):
            rows = self.frame_features(wav[b, : int(lengths[b])])
            feats[b, : len(rows)] = rows.to(feats)
        mask = self._frame_mask(lengths, ta)
        fine = mask.repeat_interleave(2, dim=1)[:, None, :].to(feats.dtype)  # [B, 1, 2 Ta]
        keep = mask[:, None, :].to(feats.dtype)
        h = self.dropout(F.gelu(self.first(feats.transpose(1, 2) * fine)))  # [B, D, Ta]
        for conv in self.convs:
            h = h + self.dropout(F.gelu(conv(h * keep)))
        x = self.norm(h.transpose(1, 2)) * mask[..., None].to(h.dtype)
        return AudioFeatures(x=x, mask=mask, frame_rate=self.frame_rate)
