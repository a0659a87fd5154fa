"""LightningModule for the flagship: audio -> RVQ motion tokens (autoregressive MotionLM) -> frozen decoder."""

from __future__ import annotations

from collections.abc import Callable

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from audio.align import resample_features
from audio.encoder import AudioEncoder
from audio.features import AudioFeatures
from motion.face.flame import FLAME
from motion.lm.model import MotionLM
from motion.tokens.tokenizer import MotionTokenizer
from talk.data.batch import Batch
from talk.errors import CheckpointError
from talk.training.base import TalkModule
from talk.training.motion_space import MotionSpace

DECODE_LATENTS = ("codes", "expected")


class AudioToMotionModule(MotionSpace, TalkModule):
    """Audio encoder + MotionLM over the codes of a trained, frozen motion tokenizer.

    Audio reaches the LM at the token rate: the encoder's features are resampled at fixed rate to the motion
    frames (:func:`audio.align.resample_features`, causal, so streaming equals offline) and the ``stride`` motion
    frames of each token are stacked, so the LM reads ``stride * audio_encoder.output_dim`` features per token
    frame and loses none of the motion-rate detail to downsampling.

    Training is teacher-forced cross-entropy on the tokenizer's codes (logged per codebook). Validation also
    generates motion every ``val_generate_every`` epochs and reports LVE/FDD; ``talk test`` generates with the
    sampling settings below.

    Args:
        audio_encoder: Waveform encoder.
        lm: Factory of the language model, called as
            ``lm(num_codebooks, codebook_size, stride * audio_encoder.output_dim, num_styles=num_styles)``.
        tokenizer_checkpoint: ``talk fit`` checkpoint of a ``TokenizerModule`` (frozen here; its weights are also
            stored in this model's checkpoints).
        motion_dim: ``V * 3`` (linked from the data); must match the tokenizer's.
        num_styles: Training speakers (linked from the data).
        fps: Motion frame rate (linked from the data).
        optimizer: Optimizer factory.
        scheduler: Optional learning-rate scheduler factory.
        temperature: Sampling temperature for generation.
        top_k: Top-k filter (0: off).
        top_p: Nucleus filter (0: off).
        cfg_scale: Classifier-free guidance scale (1: conditional only).
        greedy: Greedy decoding (overrides temperature / top-k / top-p).
        seed: Seed of sampled decoding: every generation draws from a fresh generator seeded with it, so
            validation selection, test metrics and animations are reproducible, and streaming draws exactly what
            offline generation does. None draws from torch's global generator (``seed_everything``).
        val_generate_every: Generate and compute LVE in validation every n epochs (0: never).
        test_condition: Training subject whose style drives unseen subjects; None averages all styles.
        encoder_window_seconds: At inference, audio longer than this is encoded in windows of this length with
            ``encoder_context_seconds`` of context on each side (``AudioEncoder.encode_long``), so the cost of a
            self-attention encoder (wav2vec2, HuBERT, WavLM) grows linearly with the length instead of
            quadratically; exact for the mel encoder, and for the speech encoders everything but the transformer's
            view past each window is exact. None encodes every input whole.
        encoder_context_seconds: Left context and look-ahead of each window.
        tokenizer_config: Architecture of the tokenizer (its ``talk fit`` config); filled in automatically from
            ``tokenizer_checkpoint`` and stored in this model's checkpoints, so that reloading them never needs the
            tokenizer's file (its weights are part of this model's state dict).
        tokenizer: For use from Python (benchmarks, notebooks): a trained tokenizer object instead of
            ``tokenizer_checkpoint``.
        decode_codebooks: Decode generated motion from the first n codebooks only (the LM still generates all K,
            which it reads back); None decodes all. Quantizer dropout trains the tokenizer to decode any prefix.
        decode_latent: ``"codes"`` decodes the generated codes; ``"expected"`` decodes, for every token frame, the
            expectation of each codebook's code vectors under the LM's predictive distribution (given the codes
            generated before it), the least-squares estimate of the latent where the LM is unsure. Streaming
            decodes the same way.
        face_model_config: Config of the tokenizer's face model when it tokenizes FLAME parameters; filled in
            automatically from ``tokenizer_checkpoint`` and stored in this model's checkpoints (rebuilding it reads
            the FLAME file it names).
        face_model: For use from Python: the face model of a tokenizer given as ``tokenizer``.
    """

    def __init__(
        self,
        audio_encoder: AudioEncoder,
        lm: Callable[[int, int, int], MotionLM],
        tokenizer_checkpoint: str | None = None,
        motion_dim: int = 15069,
        num_styles: int = 8,
        fps: float = 30.0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 0.0,
        cfg_scale: float = 1.0,
        greedy: bool = True,
        seed: int | None = 0,
        val_generate_every: int = 5,
        test_condition: str | None = None,
        encoder_window_seconds: float | None = 10.0,
        encoder_context_seconds: float = 0.5,
        tokenizer_config: dict | None = None,
        tokenizer: MotionTokenizer | None = None,
        decode_codebooks: int | None = None,
        decode_latent: str = "codes",
        face_model_config: dict | None = None,
        face_model: FLAME | None = None,
    ) -> None:
        super().__init__(motion_dim=motion_dim, num_styles=num_styles, fps=fps, test_condition=test_condition)
        self.save_config(["audio_encoder", "lm", "optimizer", "scheduler", "tokenizer", "face_model"])
        if tokenizer is None and tokenizer_config is not None:  # reloading one of our checkpoints
            from talk.checkpoints import instantiate

            if face_model_config is not None:
                face_model = instantiate(face_model_config)
            dim = motion_dim if face_model is None else face_model.num_motion_params
            tokenizer = instantiate(tokenizer_config, dim)  # weights follow from the state dict
        elif tokenizer is None:
            loaded = self._load_tokenizer(tokenizer_checkpoint, motion_dim)
            tokenizer, tokenizer_config, face_model, face_model_config = loaded
        dim = motion_dim if face_model is None else face_model.num_motion_params
        if tokenizer.motion_dim != dim:
            raise CheckpointError(f"tokenizer has motion_dim={tokenizer.motion_dim}, the model {dim}.")
        if face_model is not None and face_model.num_vertices * 3 != motion_dim:
            raise CheckpointError(
                f"the tokenizer's face model has {face_model.num_vertices} vertices but the data has "
                f"{motion_dim // 3}; train the tokenizer on the same dataset."
            )
        self.tokenizer = tokenizer.eval().requires_grad_(False)
        self.tokenizer_config = tokenizer_config
        self.face_model = None if face_model is None else face_model.eval().requires_grad_(False)
        self.face_model_config = face_model_config
        self.audio_encoder = audio_encoder
        q = self.tokenizer
        self.lm = lm(
            q.num_quantizers, q.codebook_size, q.stride * audio_encoder.output_dim, num_styles=num_styles
        )
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "cfg_scale": cfg_scale,
                         "greedy": greedy}  # fmt: skip
        self.seed = seed
        self.val_generate_every = val_generate_every
        self.encoder_window_seconds = encoder_window_seconds
        self.encoder_context_seconds = encoder_context_seconds
        k = q.num_quantizers
        if decode_codebooks is not None and not 1 <= decode_codebooks <= k:
            raise ValueError(
                f"decode_codebooks={decode_codebooks} must lie in [1, {k}] (the tokenizer's codebooks)."
            )
        if decode_latent not in DECODE_LATENTS:
            raise ValueError(f"decode_latent={decode_latent!r} must be one of {DECODE_LATENTS}.")
        self.decode_codebooks = decode_codebooks or k
        self.decode_latent = decode_latent

    @staticmethod
    def _load_tokenizer(
        path: str | None, motion_dim: int
    ) -> tuple[MotionTokenizer, dict | None, FLAME | None, dict | None]:
        from talk.checkpoints import load_model
        from talk.training.tokenizer import TokenizerModule

        if path is None:
            raise CheckpointError(
                "AudioToMotionModule needs tokenizer_checkpoint (a `talk fit` tokenizer checkpoint)."
            )
        tok = load_model(path)
        if not isinstance(tok, TokenizerModule):
            raise CheckpointError(
                f"tokenizer_checkpoint {path} holds a {type(tok).__name__}, not a TokenizerModule."
            )
        if tok.motion_dim != motion_dim:
            raise CheckpointError(
                f"tokenizer_checkpoint {path} was trained on motion_dim={tok.motion_dim} but the data has "
                f"{motion_dim}; train the tokenizer on the same dataset."
            )
        # the config as `talk fit` saved it (class_path + init_args), not the objects built from it
        # (mmap: only the small hyperparameter dict is read, not the tensors load_model just read)
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        config = ckpt["hyper_parameters"].get("tokenizer")
        face_config = ckpt["hyper_parameters"].get("face_model")
        return (tok.tokenizer, config if isinstance(config, dict) else None, tok.face_model,
                face_config if isinstance(face_config, dict) else None)  # fmt: skip

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        # Saved with the hyperparameters: reloading never needs the file.
        if self.tokenizer_config is not None:
            checkpoint.setdefault("hyper_parameters", {})["tokenizer_config"] = self.tokenizer_config
        if self.face_model_config is not None:
            checkpoint.setdefault("hyper_parameters", {})["face_model_config"] = self.face_model_config

    def train(self, mode: bool = True) -> AudioToMotionModule:
        super().train(mode)
        self.tokenizer.eval()  # frozen: no EMA codebook updates, no quantizer dropout
        return self

    def _token_audio(self, audio: Tensor, audio_lengths: Tensor, num_frames: Tensor) -> tuple[Tensor, Tensor]:
        """Audio features aligned to the token rate: ``[B, Tq, D]`` and the token counts ``[B]``."""
        stride = self.tokenizer.stride
        tokens = torch.div(num_frames + stride - 1, stride, rounding_mode="floor")
        return self.token_features(self._encode(audio, audio_lengths), tokens), tokens

    def _encode(self, audio: Tensor, audio_lengths: Tensor) -> AudioFeatures:
        """Encoder features; long single inputs at inference are encoded window by window (linear cost)."""
        window = self.encoder_window_seconds
        encoder = self.audio_encoder
        if (
            self.training
            or window is None
            or audio.shape[0] != 1
            or audio.shape[1] <= window * encoder.sample_rate
        ):
            return encoder(audio, audio_lengths)
        valid = audio[:, : int(audio_lengths[0])]
        return encoder.encode_long(valid, window, self.encoder_context_seconds)

    def token_features(self, features: AudioFeatures, tokens: Tensor | int) -> Tensor:
        """Encoder features -> LM input ``[B, Tq, stride * D]`` (token frame q stacks motion frames qs..qs+s-1)."""
        stride = self.tokenizer.stride
        counts = tokens * stride
        x = resample_features(features, counts, fps=self.fps).x
        b, t, d = x.shape
        return x.reshape(b, t // stride, stride * d)

    def _loss(self, batch: Batch) -> tuple[Tensor, Tensor]:
        t = batch.motion.shape[1]
        with torch.no_grad():
            codes = self.tokenizer.encode(self.motion(batch), batch.motion_mask)
        token_mask = self.tokenizer.token_mask(batch.motion_mask, t)
        audio, _ = self._token_audio(batch.audio, batch.audio_lengths, batch.motion_lengths)
        return self.lm.loss(codes, audio, self.style_for(batch), token_mask)

    def generate(
        self, audio: Tensor, audio_lengths: Tensor, num_frames: Tensor, template: Tensor, style: Tensor
    ) -> Tensor:
        """Vertices ``[B, T, V, 3]``."""
        features, tokens = self._token_audio(audio, audio_lengths, num_frames)
        t = int(num_frames.max())
        expected = self.decode_latent == "expected"
        generator = self.sampling_generator(self.sampling["greedy"], self.seed)
        out = self.lm.generate(features, style, int(tokens.max()), return_probs=expected, generator=generator,
                               **self.sampling)  # fmt: skip
        if expected:
            motion = self.tokenizer.decode_latent(self.expected_latent(out[1]), t)
        else:
            motion = self.tokenizer.decode(out[:, : self.decode_codebooks], length=t)
        offsets = self.to_offsets(motion, template)
        return offsets.view(offsets.shape[0], t, -1, 3).add_(template[:, None])  # in place: offsets are ours

    def sampling_generator(self, greedy: bool, seed: int | None) -> torch.Generator | None:
        """A fresh generator on this module's device seeded with ``seed``, for one generation (offline or streamed);
        None when decoding greedily or when ``seed`` is None (torch's global generator)."""
        if greedy or seed is None:
            return None
        return torch.Generator(self.device).manual_seed(seed)

    def expected_latent(self, probs: Tensor) -> Tensor:
        """``[B, Tq, latent]``: the expected sum of the first ``decode_codebooks`` code vectors under ``probs``
        ``[B, K, Tq, C]`` (the LM's per-codebook distributions)."""
        n = self.decode_codebooks
        vectors = self.tokenizer.quantizer.codebooks[:n].to(probs.dtype)  # [n, C, latent]
        return torch.einsum("bkqc,kcd->bqd", probs[:, :n], vectors)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss, per_codebook = self._loss(batch)
        b = batch.audio.shape[0]
        self.log("train/loss", loss, batch_size=b, prog_bar=True)
        self.log_dict({f"train/ce/{k}": v for k, v in enumerate(per_codebook)}, batch_size=b)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, per_codebook = self._loss(batch)
        b = batch.audio.shape[0]
        self.log("val/loss", loss, batch_size=b, prog_bar=True)
        self.log_dict({f"val/ce/{k}": v for k, v in enumerate(per_codebook)}, batch_size=b)
        every = self.val_generate_every
        if every and (self.current_epoch + 1) % every == 0 or self.trainer.sanity_checking:
            self._val_metrics_step(batch)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("tokenizer.")]
