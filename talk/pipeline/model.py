"""``AudioToMotion``: the inference model of ``talk``, wav -> face motion, with no training code inside.

One audio encoder, one generator (:mod:`talk.pipeline.generators`), an optional face model whose parameters the
generator speaks, the dataset's :class:`~talk.pipeline.assets.Assets` and one :class:`~motion.lm.Sampling`. The
LightningModules of :mod:`talk.training` hold one of these plus their losses and metrics; users load one with
:func:`talk.pipeline.Pipeline.from_checkpoint` and never import Lightning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from audio.encoder import AudioEncoder
from audio.features import AudioFeatures
from motion.lm import Sampling
from talk.errors import CheckpointError
from talk.pipeline.assets import Assets


def motion_offsets(face_model: nn.Module | None, motion: Tensor, template: Tensor) -> Tensor:
    """Motion ``[B, T, D]`` -> vertex offsets ``[B, T, V*3]`` from ``template`` ``[B, V, 3]``: through the face model
    when the motion is its parameters, unchanged when it already is vertex offsets (``face_model`` None)."""
    if face_model is None:
        return motion
    return face_model.motion_offsets(motion, template).flatten(2)


@dataclass(frozen=True)
class Motion:
    """A generated animation.

    Attributes:
        vertices: ``[B, T, V, 3]`` meshes (metres).
        params: ``[B, T, D]`` face-model parameters when the generator speaks a face model's parameters (FLAME
            expression + jaw, ARKit weights, BFM expression coefficients), else None.
    """

    vertices: Tensor
    params: Tensor | None = None


class AudioToMotion(nn.Module):
    """Speech -> face motion. Pure torch: every method works without Lightning.

    Args:
        audio_encoder: Waveform encoder.
        generator: A :class:`~talk.pipeline.generators.TokenGenerator` or
            :class:`~talk.pipeline.generators.RegressionGenerator`.
        face_model: The face model whose parameters the generator produces (``motion.face.flame.FLAME``), or
            None when it produces vertex offsets.
        num_styles: Number of training speakers (style conditions).
        fps: Motion frame rate.
        sampling: How a token generator chooses codes (ignored by regression); default greedy.
        test_condition: Training subject whose style drives unseen subjects; None averages all training styles.
        encoder_window_seconds: At inference, a single input longer than this is encoded in windows of this length
            with ``encoder_context_seconds`` of context on each side (``AudioEncoder.encode_long``), so that the
            cost of a self-attention encoder grows linearly with the length; None encodes every input whole.
        encoder_context_seconds: Left context and look-ahead of each window.
        assets: The dataset's subjects, templates, faces, regions and rates (set by training, stored in
            checkpoints).
    """

    def __init__(
        self,
        audio_encoder: AudioEncoder,
        generator: nn.Module,
        face_model: nn.Module | None = None,
        num_styles: int = 8,
        fps: float = 30.0,
        sampling: Sampling | None = None,
        test_condition: str | None = None,
        encoder_window_seconds: float | None = None,
        encoder_context_seconds: float = 0.5,
        assets: Assets | None = None,
    ) -> None:
        super().__init__()
        self.audio_encoder = audio_encoder
        self.generator = generator
        self.face_model = None if face_model is None else face_model.eval().requires_grad_(False)
        self.num_styles = num_styles
        self.fps = float(fps)
        self.sampling = sampling or Sampling(temperature=0.0)
        self.test_condition = test_condition
        self.encoder_window_seconds = encoder_window_seconds
        self.encoder_context_seconds = encoder_context_seconds
        self.assets = assets
        # The ``{"class_path", "init_args"}`` this model was built from (set by ``talk fit`` and by loading), which
        # ``talk.pipeline.export`` writes next to the weights; None for a model built in Python.
        self.config: dict | None = None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def train(self, mode: bool = True) -> AudioToMotion:
        super().train(mode)
        if self.face_model is not None:
            self.face_model.eval()
        return self

    def require_assets(self) -> Assets:
        """The model's :class:`Assets`; a one-line error for a model that carries none."""
        if self.assets is None:
            raise CheckpointError(
                "this model carries no dataset assets; load it from a `talk fit` checkpoint."
            )
        return self.assets

    # -------------------------------------------------------------------------------------------------- style
    def style_weights(self, subject: str | None) -> Tensor:
        """``[S]`` style weights for a subject: one-hot for training subjects, else the test condition (or the
        average of all training styles)."""
        subjects = list(self.assets.train_subjects) if self.assets is not None else []
        n = self.num_styles
        if subject in subjects:
            return nn.functional.one_hot(torch.tensor(subjects.index(subject)), n).float()
        if self.test_condition is not None:
            if self.test_condition not in subjects:
                raise CheckpointError(
                    f"test_condition '{self.test_condition}' is not a training subject; choose one of {subjects}."
                )
            return self.style_weights(self.test_condition)
        return torch.full((n,), 1.0 / n)

    def style_for(self, subjects: list[str], ids: Tensor) -> Tensor:
        """Style ids ``[B]`` when every subject was seen in training (``ids >= 0``), else weights ``[B, S]``."""
        if bool((ids >= 0).all()):
            return ids
        return torch.stack([self.style_weights(s) for s in subjects]).to(ids.device)

    # ------------------------------------------------------------------------------------------------ features
    def features(self, wav: Tensor, lengths: Tensor | None = None) -> AudioFeatures:
        """Encoder features of waveforms ``[B, N]``; a long single input at inference is encoded window by window
        (linear cost)."""
        window = self.encoder_window_seconds
        encoder = self.audio_encoder
        if (
            self.training
            or window is None
            or wav.shape[0] != 1
            or wav.shape[1] <= window * encoder.sample_rate
        ):
            return encoder(wav, lengths)
        valid = wav if lengths is None else wav[:, : int(lengths[0])]
        return encoder.encode_long(valid, window, self.encoder_context_seconds)

    def constrain(self, motion: Tensor) -> Tensor:
        """Generated motion ``[B, T, D]`` in its valid range: a face model's own bounds (ARKit weights in [0, 1]),
        unchanged for vertex offsets and unbounded parameters."""
        return motion if self.face_model is None else self.face_model.constrain(motion)

    def to_offsets(self, motion: Tensor, template: Tensor) -> Tensor:
        """Generated motion ``[B, T, D]`` -> vertex offsets ``[B, T, V*3]`` from ``template`` ``[B, V, 3]``, after
        :meth:`constrain` (every inference path goes through here: offline, in pieces, streaming)."""
        return motion_offsets(self.face_model, self.constrain(motion), template)

    # ---------------------------------------------------------------------------------------------- generation
    def generate_motion(
        self,
        wav: Tensor,
        lengths: Tensor,
        num_frames: Tensor,
        style: Tensor,
        sampling: Sampling | None = None,
    ) -> Tensor:
        """Generated motion ``[B, T, D]`` in the generator's space (offsets in metres, or face-model parameters
        within their bounds: :meth:`constrain`)."""
        features = self.features(wav, lengths)
        return self.constrain(
            self.generator.generate(features, num_frames, style, sampling or self.sampling, self.fps)
        )

    def generate(
        self,
        wav: Tensor,
        lengths: Tensor | None = None,
        num_frames: Tensor | None = None,
        template: Tensor | None = None,
        style: Tensor | None = None,
        subject: str | None = None,
        sampling: Sampling | None = None,
    ) -> Motion:
        """Animates waveforms ``[B, N]`` (or one ``[N]``) at the model's sample rate.

        Args:
            wav: Mono waveforms ``[B, N]``, right-padded, or one waveform ``[N]``.
            lengths: ``[B]`` valid samples (default: all).
            num_frames: ``[B]`` motion frames to produce (default: enough to cover each waveform).
            template: ``[B, V, 3]`` (or ``[V, 3]``) neutral meshes (default: ``subject``'s template).
            style: ``[B]`` style ids or ``[B, S]`` weights (default: ``subject``'s style).
            subject: Subject whose template and style are used when not given (default: the first training
                subject).
            sampling: Overrides the model's sampling for this call.

        Returns:
            :class:`Motion` with vertices ``[B, T, V, 3]``, ``T = num_frames.max()``.
        """
        wav, lengths, num_frames, template, style = self._inputs(
            wav, lengths, num_frames, template, style, subject
        )
        motion = self.generate_motion(wav, lengths, num_frames, style, sampling)
        offsets = self.to_offsets(motion, template)
        b, t = motion.shape[:2]
        vertices = offsets.view(b, t, -1, 3).add_(template[:, None])  # in place: offsets are ours
        return Motion(vertices, motion if self.face_model is not None else None)

    def generate_pieces(
        self,
        wav: Tensor,
        subject: str | None = None,
        sampling: Sampling | None = None,
        piece_seconds: float = 10.0,
        template: Tensor | None = None,
        style: Tensor | None = None,
        on_params: Callable[[Tensor], None] | None = None,
    ) -> Iterator[Tensor]:
        """Animates one waveform ``[N]`` piece by piece: vertices ``[m, V, 3]`` of consecutive frames, about
        ``piece_seconds`` at a time, each computed (in inference mode) when the next one is asked for.

        Memory stays bounded by the piece length however long the audio is, and the pieces concatenate to
        :meth:`generate`'s vertices (the generators' ``generate_pieces``): for token models exactly when the
        animation fits in one piece (it is then :meth:`generate`'s own computation) and to float rounding beyond
        (the same codes and draws, decoded in exact windows); for the regression baseline exactly (both attend
        the last ``attention_window`` frames, with full attention up to that length).

        Args:
            wav: Mono waveform ``[N]`` (or ``[1, N]``) at the model's sample rate.
            subject: Subject whose template and style are used when not given (default: the first training
                subject).
            sampling: Overrides the model's sampling.
            piece_seconds: Audio per piece, in seconds (a memory / overhead trade-off; results do not depend on
                it beyond float rounding).
            template: ``[V, 3]`` neutral mesh (default: ``subject``'s template).
            style: ``[S]`` style weights or a ``[1]`` style id (default: ``subject``'s style).
            on_params: Called with each piece's face-model parameters ``[m, D]`` (within their bounds) before its
                vertices are yielded, when the model generates parameters (ARKit weights, FLAME, BFM).
        """
        wav = wav.reshape(1, -1)
        style = (
            None if style is None else style.reshape(1, -1) if style.is_floating_point() else style.reshape(1)
        )
        wav, lengths, num_frames, template, style = self._inputs(wav, None, None, template, style, subject)
        piece_frames = max(1, round(piece_seconds * self.fps))

        def pieces() -> Iterator[Tensor]:
            features = self.features(wav, lengths)
            sample = sampling or self.sampling
            generator = self.generator.generate_pieces(
                features, num_frames, style, sample, self.fps, piece_frames
            )
            for motion in generator:
                if on_params is not None and self.face_model is not None:
                    on_params(self.constrain(motion)[0])
                offsets = self.to_offsets(motion, template)
                yield offsets.view(*motion.shape[:2], -1, 3).add_(template[:, None])[0]

        work = pieces()
        while True:  # inference mode while a piece is computed, not while the caller holds the iterator
            with torch.inference_mode():
                piece = next(work, None)
            if piece is None:
                return
            yield piece

    def _inputs(
        self,
        wav: Tensor,
        lengths: Tensor | None,
        num_frames: Tensor | None,
        template: Tensor | None,
        style: Tensor | None,
        subject: str | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """:meth:`generate`'s arguments completed: ``(wav [B, N], lengths [B], num_frames [B], template [B, V, 3],
        style)`` on the model's device."""
        device = self.device
        wav = wav.float().to(device)
        wav = wav[None] if wav.dim() == 1 else wav
        b = wav.shape[0]
        if lengths is None:
            lengths = torch.full((b,), wav.shape[1], device=device)
        if num_frames is None:
            num_frames = torch.tensor(
                [self.require_assets().num_frames(int(n)) for n in lengths], device=device
            )
        if template is None or style is None:
            subject = self.require_assets().subject(subject)
        if template is None:
            template = self.require_assets().template(subject)
        template = template.float().to(device)
        template = template[None].expand(b, -1, -1) if template.dim() == 2 else template
        if style is None:
            style = self.style_weights(subject)[None].expand(b, -1).to(device)
        return wav, lengths, num_frames, template, style.to(device)

    def stream(
        self,
        chunks: Iterable[Tensor],
        subject: str | None = None,
        chunk_seconds: float = 0.2,
        sampling: Sampling | None = None,
    ) -> Iterator[Tensor]:
        """Vertices ``[m, V, 3]`` while waveform chunks ``[n]`` arrive; see :class:`talk.pipeline.streaming.Streamer`.
        Concatenated, they equal :meth:`generate` on the whole waveform."""
        from talk.pipeline.streaming import Streamer

        return Streamer(self, subject, chunk_seconds=chunk_seconds, sampling=sampling).stream(chunks)
