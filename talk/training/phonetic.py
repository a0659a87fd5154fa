"""LightningModule of the phonetic generator: phone posteriors refined on labelled speech, decoded, articulated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torch.nn import functional as F

from audio.phone_encoder import PhonePosteriors
from motion.face.flame import FLAME
from talk.data.batch import Batch
from talk.errors import UserError
from talk.pipeline.model import AudioToMotion
from talk.pipeline.phonetic import PhoneClassifier, PhoneticGenerator
from talk.training.base import LossParts, TalkModule

IGNORE = -100  # frames without a label (padding)


class PhoneLabelError(UserError, FileNotFoundError):
    """A training sequence has no phone label file."""


def frame_labels(path: Path, phones: tuple[str, ...], frames: int, frame_rate: float = 100.0) -> Tensor:
    """Phone index ``[frames]`` of each frame (frame ``t`` centred on ``(t + 0.5) / frame_rate``) from a label
    file (``talk.synth.phones.read_lab``: stress digits dropped, pauses to ``SIL``); uncovered frames are ``SIL``."""
    from talk.synth.phones import read_lab, strip_stress

    index = {p: i for i, p in enumerate(phones)}
    labels = np.full(frames, index["SIL"], dtype=np.int64)
    centres = (np.arange(frames) + 0.5) / frame_rate
    for phone in read_lab(path):
        name = strip_stress(phone.label)
        name = "SIL" if name == "sil" else name
        if name not in index:
            raise PhoneLabelError(f"{path}: phone {phone.label!r} is not one of the acoustic model's phones.")
        labels[(centres >= phone.start) & (centres < phone.end)] = index[name]
    return torch.from_numpy(labels)


@torch.no_grad()
def calibrate_contact(face_model: FLAME, template: Tensor, upper: np.ndarray, lower: np.ndarray) -> Tensor:
    """``[K]`` lip_press that brings the middle half of the lips into vertical contact at each jaw angle of
    ``CONTACT_JAW`` for the face ``template`` ``[V, 3]``: :func:`talk.synth.face.calibrate_lip_contact`, the
    calibration that made the training data, on the identity fitted to the template."""
    from talk.synth.face import JawFace, calibrate_lip_contact

    shape = face_model.fit_shape(template.float()[None])[0].double().numpy()
    contact = calibrate_lip_contact(JawFace.from_flame(face_model), shape, upper, lower)
    return torch.from_numpy(contact.press).float()


class PhoneticModule(TalkModule):
    """Trains the phone classifier of a :class:`~talk.pipeline.phonetic.PhoneticGenerator` with a cross-entropy
    loss against the phone labels of the training speech (``<phones_dir>/<sequence name>.lab``, as ``talk data
    speech`` and ``talk data synth`` write them), at the acoustic model's 100 Hz frames. Validation and test
    animate the split through the whole generator (decode + articulation) and score the vertices like every model.

    Args:
        audio_encoder: :class:`audio.PhonePosteriors`.
        face_model: The face model the data was made with (its expression coefficients and jaw are the motion).
        classifier_hidden: Channels of the classifier's hidden layers.
        classifier_layers: Its Conv1d layers.
        kernel_size: Frames per convolution.
        dropout: Dropout in the classifier.
        min_frames: Shortest decoded viseme, 10 ms frames.
        switch_penalty: Cost of each change of viseme in the decode, nats.
        blinks: Seeded blinks and brow motion in generated animations.
        closure_weight: Weight of the frames labelled P, B or M in the loss (1: every frame alike). A missed lip
            closure is the error viewers notice most, so the loss may charge it more than a spurious one.
        phones_dir: Folder of the label files; None: ``<data root>/phones``.
        optimizer: Optimizer factory.
        scheduler: Optional learning-rate scheduler factory.
        motion_dim, num_styles, fps, test_condition: Linked from the data (see :class:`TalkModule`).
    """

    def __init__(
        self,
        audio_encoder: PhonePosteriors,
        face_model: FLAME,
        classifier_hidden: int = 128,
        classifier_layers: int = 3,
        kernel_size: int = 5,
        dropout: float = 0.1,
        min_frames: int = 1,
        switch_penalty: float = 0.0,
        blinks: bool = True,
        closure_weight: float = 1.0,
        phones_dir: str | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        motion_dim: int = 15069,
        num_styles: int = 8,
        fps: float = 30.0,
        test_condition: str | None = None,
    ) -> None:
        super().__init__(motion_dim=motion_dim, num_styles=num_styles, fps=fps, test_condition=test_condition)
        from_configs = self.save_config(["audio_encoder", "face_model", "optimizer", "scheduler"])
        if not isinstance(audio_encoder, PhonePosteriors) or type(audio_encoder).frame_rate != 100.0:
            raise UserError("PhoneticModule needs audio_encoder: audio.PhonePosteriors (100 Hz phone posteriors).")
        if face_model.num_vertices * 3 != motion_dim:
            raise UserError(
                f"face_model has {face_model.num_vertices} vertices but the data has {motion_dim // 3}; use the "
                "face_model.pkl of the dataset."
            )
        phones = tuple(audio_encoder.phones)
        classifier_args = dict(hidden_dim=classifier_hidden, num_layers=classifier_layers,
                               kernel_size=kernel_size, dropout=dropout)  # fmt: skip
        generator_args = dict(phones=list(phones), n_expression=face_model.n_expression, num_styles=num_styles,
                              min_frames=min_frames, switch_penalty=switch_penalty, blinks=blinks)  # fmt: skip
        generator = PhoneticGenerator(PhoneClassifier(len(phones), **classifier_args), **generator_args)
        self.model = AudioToMotion(
            audio_encoder, generator, face_model=face_model, num_styles=num_styles, fps=fps,
            test_condition=test_condition,
        )  # fmt: skip
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.phones_dir = phones_dir
        self._labels: dict[tuple[str, int], Tensor] = {}  # frame labels by (sequence, frames)
        if closure_weight <= 0:
            raise UserError(f"closure_weight must be positive, got {closure_weight}.")
        weights = torch.ones(len(phones))
        for p in ("P", "B", "M"):
            weights[phones.index(p)] = closure_weight
        self.register_buffer("class_weights", weights, persistent=False)
        if from_configs:
            classifier = {
                "class_path": "talk.pipeline.phonetic.PhoneClassifier",
                "init_args": {"num_phones": len(phones), **classifier_args},
            }
            generator = {
                "class_path": "talk.pipeline.phonetic.PhoneticGenerator",
                "init_args": {"classifier": classifier, **generator_args},
            }
            self.record_pipeline(
                generator, face_model=self.hparams["face_model"], num_styles=num_styles, fps=float(fps),
                test_condition=test_condition,
            )  # fmt: skip

    @property
    def generator(self) -> PhoneticGenerator:
        return self.model.generator

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.generator.classifier.parameters())

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.assets is None or bool(self.generator.contact_ready):
            return
        from talk.lipsync_eval import model_lip_pairs

        presses = []
        for subject in self.assets.train_subjects:
            pairs = model_lip_pairs(self.assets, subject)
            presses.append(
                calibrate_contact(self.model.face_model, self.assets.template(subject), pairs.upper, pairs.lower)
            )
        self.generator.set_contact(torch.stack(presses))

    def _labels_dir(self) -> Path:
        if self.phones_dir is not None:
            return Path(self.phones_dir)
        root = getattr(getattr(self.trainer, "datamodule", None), "root", None)
        if root is None:
            raise PhoneLabelError("set model.init_args.phones_dir: the data module has no root folder to look in.")
        return Path(root) / "phones"

    def _targets(self, batch: Batch, frames: int) -> Tensor:
        folder = self._labels_dir()
        phones = self.generator.phones
        out = torch.full((len(batch.names), frames), IGNORE, dtype=torch.long)
        valid = [self.model.audio_encoder.num_frames(int(n)) for n in batch.audio_lengths]
        for b, name in enumerate(batch.names):
            path = folder / f"{name}.lab"
            if (name, valid[b]) not in self._labels and not path.is_file():
                raise PhoneLabelError(
                    f"{path} is missing: the phonetic model trains on phone labels; build the data with "
                    "`talk data speech` (or `talk data synth`), or set model.init_args.phones_dir."
                )
            key = (name, valid[b])
            if key not in self._labels:  # read once: every epoch asks for the same sequences
                self._labels[key] = frame_labels(path, phones, valid[b])
            out[b, : valid[b]] = self._labels[key]
        return out.to(batch.audio.device)

    def _loss(self, batch: Batch) -> LossParts:
        features = self.model.features(batch.audio, batch.audio_lengths)
        logits = self.generator.logits(features)
        targets = self._targets(batch, logits.shape[1])
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), weight=self.class_weights,
            ignore_index=IGNORE,
        )  # fmt: skip
        with torch.no_grad():
            keep = targets != IGNORE
            accuracy = (logits.argmax(-1)[keep] == targets[keep]).float().mean()
        return LossParts(loss, {"cross_entropy": loss, "frame_accuracy": accuracy})
