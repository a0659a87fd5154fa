"""A dependency-light log-mel + Conv1d audio encoder with a bounded, documented receptive field."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audio.encoder import AudioEncoder
from audio.features import AudioFeatures
from audio.filterbank import mel_filterbank

# Fixed normalisation of log(mel power + LOG_EPS), measured on the bundled CMU ARCTIC utterance (16 kHz
# speech, peak about -4 dBFS, pauses included) so that its frames land near zero mean and unit variance.
# Fixed constants (not per-utterance statistics) keep every frame independent of the rest of the utterance and
# of the other batch elements, which streaming and padding invariance both need; loudness is therefore kept in
# the features (useful for jaw opening) and the learned layers absorb any remaining offset.
LOG_EPS = 1e-6
LOG_MEL_MEAN = -8.5
LOG_MEL_STD = 4.0


class MelEncoder(AudioEncoder):
    """Log-mel spectrogram followed by a small Conv1d stack.

    Frame convention (exact): for N input samples the encoder produces ``Ta = N // hop_length`` frames at
    ``frame_rate = sample_rate / hop_length`` (50 Hz by default). Spectral frame i is the Hann-windowed STFT of
    the ``win_length`` samples ending at sample ``(i + 1) * hop_length`` (exclusive), i.e. it looks only at the
    past and at the current hop; samples before the start of the signal count as zeros. A trailing partial hop
    (``N % hop_length`` samples) produces no frame. So spectral frame i depends only on samples
    ``[(i + 1) * hop_length - win_length, (i + 1) * hop_length)``.

    Normalisation: ``(log(mel + 1e-6) - LOG_MEL_MEAN) / LOG_MEL_STD`` with fixed constants, so no statistic is
    shared between frames, utterances or batch elements.

    Conv stack: ``num_layers`` Conv1d layers with odd ``kernel_size`` and symmetric "same" zero padding, GELU and
    dropout; the first maps n_mels -> output_dim, the rest are residual output_dim -> output_dim; a final
    LayerNorm acts per frame. Padded frames are zeroed before every convolution, so a padded sequence sees the
    same zeros at its end as when encoded alone: its valid frames equal the unpadded result (up to float error).

    Receptive field (bounded, for streaming): with ``P = num_layers * (kernel_size - 1) // 2`` output frame i
    depends only on samples ``[(i - P + 1) * hop_length - win_length, (i + P + 1) * hop_length)``, i.e.
    ``receptive_field_samples = 2 * P * hop_length + win_length`` samples, of which ``lookahead_frames = P``
    hops (``P * hop_length`` samples, 40 ms by default) lie after the end of frame i's own hop. A streaming
    encoder must therefore delay output by P frames and keep ``P * hop_length + win_length - hop_length``
    samples of left context. The bound is tight up to the first sample of each window (weight exactly 0 in a
    periodic Hann window) and, when win_length < hop_length, the samples between windows, which no frame sees.

    Args:
        sample_rate: Expected input sample rate in Hz.
        n_mels: Number of mel bands (librosa Slaney mel filterbank from 0 Hz to sample_rate / 2).
        n_fft: FFT size; each windowed frame is zero-padded to n_fft. Must be >= win_length.
        hop_length: Samples between frames; sets frame_rate = sample_rate / hop_length.
        win_length: Hann window length in samples (400 = 25 ms at 16 kHz).
        output_dim: Feature size D of the output.
        num_layers: Number of Conv1d layers (>= 1).
        kernel_size: Temporal kernel size of every Conv1d layer (odd).
        dropout: Dropout probability after each layer (training only).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 80,
        n_fft: int = 512,
        hop_length: int = 320,
        win_length: int = 400,
        output_dim: int = 128,
        num_layers: int = 2,
        kernel_size: int = 3,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        for name, value in (
            ("sample_rate", sample_rate),
            ("n_mels", n_mels),
            ("n_fft", n_fft),
            ("hop_length", hop_length),
            ("win_length", win_length),
            ("output_dim", output_dim),
            ("num_layers", num_layers),
            ("kernel_size", kernel_size),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"MelEncoder argument {name} must be a positive integer, got {value!r}.")
        if win_length > n_fft:
            raise ValueError(f"MelEncoder win_length ({win_length}) must not exceed n_fft ({n_fft}).")
        if kernel_size % 2 != 1:
            raise ValueError(
                f"MelEncoder kernel_size must be odd for symmetric 'same' padding, got {kernel_size}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MelEncoder dropout must lie in [0, 1), got {dropout}.")

        self.sample_rate = int(sample_rate)
        self.n_mels = int(n_mels)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.win_length = int(win_length)
        self.output_dim = int(output_dim)
        self.frame_rate = self.sample_rate / self.hop_length
        self.lookahead_frames = num_layers * (kernel_size - 1) // 2
        self.receptive_field_samples = 2 * self.lookahead_frames * self.hop_length + self.win_length

        # Derived from the config, so not saved in checkpoints (persistent=False).
        self.register_buffer("window", torch.hann_window(win_length, periodic=True), persistent=False)
        mel_fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin=0.0, fmax=sample_rate / 2)
        # [n_mels, n_fft // 2 + 1]
        self.register_buffer("mel_fb", torch.from_numpy(mel_fb).float(), persistent=False)

        pad = (kernel_size - 1) // 2
        self.convs = nn.ModuleList(
            nn.Conv1d(n_mels if i == 0 else output_dim, output_dim, kernel_size, padding=pad)
            for i in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(output_dim)

    def num_frames(self, num_samples: int) -> int:
        """``num_samples // hop_length``: one frame per complete hop (see the class docstring)."""
        return max(int(num_samples), 0) // self.hop_length

    def log_mel(self, wav: Tensor) -> Tensor:
        """Normalised log-mel spectrogram.

        Args:
            wav: Waveforms [B, N] at ``sample_rate``.

        Returns:
            [B, Ta, n_mels] with Ta = N // hop_length (see the class docstring for the framing).
        """
        wav = wav.to(self.window.dtype)
        # Left-pad so that frame i ends exactly at sample (i + 1) * hop; when win < hop, skip the leading
        # samples that no window covers instead.
        pad_left = max(self.win_length - self.hop_length, 0)
        start = max(self.hop_length - self.win_length, 0)
        padded = F.pad(wav, (pad_left, 0))[:, start:]
        frames = padded.unfold(-1, self.win_length, self.hop_length)  # [B, Ta, win]
        spec = torch.fft.rfft(frames * self.window, n=self.n_fft)  # [B, Ta, n_fft//2+1]
        power = spec.real.square() + spec.imag.square()
        mel = power @ self.mel_fb.T  # [B, Ta, n_mels]
        return (torch.log(mel + LOG_EPS) - LOG_MEL_MEAN) / LOG_MEL_STD

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> AudioFeatures:
        """Encode waveforms.

        Args:
            wav: [B, N] float waveforms at ``sample_rate``, right-padded.
            lengths: [B] valid sample counts; None = all N valid.

        Returns:
            AudioFeatures(x [B, N // hop_length, output_dim], mask, frame_rate), padded frames zeroed.
        """
        wav, lengths = self._check_input(wav, lengths)
        feats = self.log_mel(wav)  # [B, Ta, n_mels]
        mask = self._frame_mask(lengths, feats.shape[1])
        keep = mask[:, None, :].to(feats.dtype)  # [B, 1, Ta]
        h = feats.transpose(1, 2)  # [B, n_mels, Ta]
        for i, conv in enumerate(self.convs):
            # Zeroing padding before each conv makes the padded tail look like the conv's own zero padding.
            y = self.dropout(F.gelu(conv(h * keep)))
            h = y if i == 0 else h + y
        x = self.norm(h.transpose(1, 2)) * mask[..., None].to(h.dtype)
        return AudioFeatures(x=x, mask=mask, frame_rate=self.frame_rate)
