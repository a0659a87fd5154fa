"""LightningModule for the flagship: audio -> RVQ motion tokens (autoregressive MotionLM) -> frozen decoder."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from audio.encoder import AudioEncoder
from motion.face.base import FaceModel
from motion.lm import MotionLM, Sampling
from motion.tokens.tokenizer import MotionTokenizer
from talk.data.batch import Batch
from talk.errors import CheckpointError
from talk.pipeline.config import bind, instantiate
from talk.pipeline.generators import TokenGenerator
from talk.pipeline.load import read_checkpoint
from talk.pipeline.model import AudioToMotion
from talk.training.base import LossParts, TalkModule
from talk.training.motion_space import MotionSpace


class AudioToMotionModule(MotionSpace, TalkModule):
    """Trains the flagship's :class:`~talk.pipeline.AudioToMotion` (``self.model``): audio encoder + MotionLM
    (:class:`~talk.pipeline.generators.TokenGenerator`) over the codes of a trained, frozen motion tokenizer.

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
        sampling: How generation chooses codes (``motion.lm.Sampling``: temperature, 0 meaning greedy; top_k;
            top_p; cfg_scale; seed). Every generation draws from a fresh generator seeded with ``seed``, so
            validation selection, test metrics and animations are reproducible, and streaming draws exactly what
            offline generation does; ``seed: null`` draws from torch's global generator (``seed_everything``).
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
        face_model_config: Config of the tokenizer's face model when it tokenizes a face model's parameters; filled in
            automatically from ``tokenizer_checkpoint`` and stored in this model's checkpoints (rebuilding it reads
            the face-model file it names).
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
        sampling: Sampling = Sampling(temperature=0.0),
        val_generate_every: int = 5,
        test_condition: str | None = None,
        encoder_window_seconds: float | None = 10.0,
        encoder_context_seconds: float = 0.5,
        tokenizer_config: dict | None = None,
        tokenizer: MotionTokenizer | None = None,
        decode_codebooks: int | None = None,
        decode_latent: str = "codes",
        face_model_config: dict | None = None,
        face_model: FaceModel | None = None,
    ) -> None:
        super().__init__(motion_dim=motion_dim, num_styles=num_styles, fps=fps, test_condition=test_condition)
        from_configs = self.save_config(
            ["audio_encoder", "lm", "optimizer", "scheduler", "tokenizer", "face_model"]
        )
        if isinstance(
            sampling, dict
        ):  # as stored in checkpoints (plain data: they load with weights_only=True)
            sampling = Sampling(**sampling)
        self.hparams["sampling"] = dataclasses.asdict(sampling)
        if tokenizer is None and tokenizer_config is not None:  # reloading one of our checkpoints
            if face_model_config is not None:
                face_model = instantiate(face_model_config)
            dim = motion_dim if face_model is None else face_model.num_motion_params
            tokenizer = instantiate(tokenizer_config, dim)  # weights follow from the state dict
        elif tokenizer is None:
            tokenizer, tokenizer_config, face_model, face_model_config = load_tokenizer(
                tokenizer_checkpoint, motion_dim
            )
        dim = motion_dim if face_model is None else face_model.num_motion_params
        if tokenizer.motion_dim != dim:
            raise CheckpointError(f"tokenizer has motion_dim={tokenizer.motion_dim}, the model {dim}.")
        if face_model is not None and face_model.num_vertices * 3 != motion_dim:
            raise CheckpointError(
                f"the tokenizer's face model has {face_model.num_vertices} vertices but the data has "
                f"{motion_dim // 3}; train the tokenizer on the same dataset."
            )
        self.tokenizer_config = tokenizer_config
        self.face_model_config = face_model_config
        q = tokenizer
        lm_args = (q.num_quantizers, q.codebook_size, q.stride * audio_encoder.output_dim)
        generator = TokenGenerator(
            lm(*lm_args, num_styles=num_styles), tokenizer, decode_codebooks, decode_latent
        )
        self.model = AudioToMotion(
            audio_encoder,
            generator,
            face_model=face_model,
            num_styles=num_styles,
            fps=fps,
            sampling=sampling,
            test_condition=test_condition,
            encoder_window_seconds=encoder_window_seconds,
            encoder_context_seconds=encoder_context_seconds,
        )
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.val_generate_every = val_generate_every
        if from_configs and tokenizer_config is not None:
            generator = {
                "class_path": "talk.pipeline.generators.TokenGenerator",
                "init_args": {
                    "lm": bind(self.hparams["lm"], *lm_args, num_styles=num_styles),
                    "tokenizer": bind(tokenizer_config, dim),
                    "decode_codebooks": decode_codebooks,
                    "decode_latent": decode_latent,
                },
            }
            self.record_pipeline(
                generator, face_model=face_model_config, num_styles=num_styles, fps=float(fps),
                sampling=dataclasses.asdict(sampling), test_condition=test_condition,
                encoder_window_seconds=encoder_window_seconds, encoder_context_seconds=encoder_context_seconds,
            )  # fmt: skip

    @property
    def generator(self) -> TokenGenerator:
        return self.model.generator

    @property
    def face_model(self) -> FaceModel | None:  # the MotionSpace of the batch
        return self.model.face_model

    def legacy_state_renames(self) -> dict[str, str]:
        return {"tokenizer.": "model.generator.tokenizer.", "lm.": "model.generator.lm.",
                "audio_encoder.": "model.audio_encoder.", "face_model.": "model.face_model."}  # fmt: skip

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        # Saved with the hyperparameters: reloading never needs the tokenizer's file.
        if self.tokenizer_config is not None:
            checkpoint.setdefault("hyper_parameters", {})["tokenizer_config"] = self.tokenizer_config
        if self.face_model_config is not None:
            checkpoint.setdefault("hyper_parameters", {})["face_model_config"] = self.face_model_config

    def _loss(self, batch: Batch) -> LossParts:
        t = batch.motion.shape[1]
        generator = self.generator
        with torch.no_grad():
            codes = generator.tokenizer.encode(self.motion(batch), batch.motion_mask)
        token_mask = generator.tokenizer.token_mask(batch.motion_mask, t)
        features = self.model.features(batch.audio, batch.audio_lengths)
        audio = generator.lm_input(features, batch.motion_lengths, self.model.fps)
        loss = generator.lm.loss(codes, audio, self.style_for(batch), token_mask)
        return LossParts(loss.total, {f"ce/{k}": v for k, v in enumerate(loss.per_codebook)})

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss = self._loss(batch)
        b = batch.audio.shape[0]
        self.log("val/loss", loss.total, batch_size=b, prog_bar=True, sync_dist=True)
        self.log_dict({f"val/{k}": v for k, v in loss.parts.items()}, batch_size=b, sync_dist=True)
        every = self.val_generate_every
        if every and (self.current_epoch + 1) % every == 0 or self.trainer.sanity_checking:
            self._val_metrics_step(batch)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("model.generator.tokenizer.")]


def load_tokenizer(
    path: str | None, motion_dim: int
) -> tuple[MotionTokenizer, dict, FaceModel | None, dict | None]:
    """The trained tokenizer (and its face model) of a ``talk fit`` tokenizer checkpoint, with their configs.

    Read with ``weights_only=True``; the tokenizer is built from the config the checkpoint stores and given its
    weights, without building the checkpoint's LightningModule.
    """
    if path is None:
        raise CheckpointError(
            "AudioToMotionModule needs tokenizer_checkpoint (a `talk fit` tokenizer checkpoint)."
        )
    if not Path(path).is_file():
        raise CheckpointError(
            f"tokenizer_checkpoint {path} not found; train the tokenizer first (`talk fit -c "
            "experiments/<dataset>/tokenizer.yaml`) or point model.init_args.tokenizer_checkpoint at its best.ckpt."
        )
    ckpt = read_checkpoint(path)
    hparams = ckpt.get("hyper_parameters") or {}
    if not str(hparams.get("_class_path", "")).endswith("TokenizerModule"):
        raise CheckpointError(
            f"tokenizer_checkpoint {path} holds a {hparams.get('_class_path', 'non-talk checkpoint')}, not a "
            "TokenizerModule."
        )
    if hparams.get("motion_dim") != motion_dim:
        raise CheckpointError(
            f"tokenizer_checkpoint {path} was trained on motion_dim={hparams.get('motion_dim')} but the data has "
            f"{motion_dim}; train the tokenizer on the same dataset."
        )
    config, face_config = hparams.get("tokenizer"), hparams.get("face_model")
    if not isinstance(config, dict):
        raise CheckpointError(f"tokenizer_checkpoint {path} does not store its tokenizer's config; it was not "
                              "written by `talk fit`.")  # fmt: skip
    face_model = instantiate(face_config) if isinstance(face_config, dict) else None
    tokenizer = instantiate(config, motion_dim if face_model is None else face_model.num_motion_params)
    state = ckpt["state_dict"]
    tokenizer.load_state_dict(
        {k[len("tokenizer.") :]: v for k, v in state.items() if k.startswith("tokenizer.")}
    )
    if face_model is not None:
        face_state = {k[len("face_model.") :]: v for k, v in state.items() if k.startswith("face_model.")}
        face_model.load_state_dict(face_state)
    return tokenizer.eval(), config, face_model, face_config if face_model is not None else None
