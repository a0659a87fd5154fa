"""``talk test --lipsync.set default|PATH``: lip sync on real speech measured beside the test split's metrics.

The test split of every configured dataset is synthetic or TTS speech; how a model does on a human voice is
measured on recordings with phone labels (:mod:`talk.lipsync_eval`, the bundled ``assets/speech/eval`` by default).
This callback runs that evaluation once the test loop has ended, with the model being tested (its own sampling,
the chosen subject's template and style), and hands the pooled figures to ``metrics.json`` (section
``real_speech``), ``lipsync.json`` / ``lipsync_per_utterance.csv`` to the run directory, and the figures to the
loggers (``real_speech/<figure>``) and to ``talk report``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl

__all__ = ["RealSpeechLipSync"]


class RealSpeechLipSync(pl.Callback):
    """Measures lip sync on real recordings with phone labels after ``talk test`` (see the module docstring).

    Args:
        set: ``default`` for the bundled evaluation set, a folder of ``<name>.wav`` + ``<name>.lab``, or an
            ``eval.jsonl`` manifest; None (the default) measures nothing.
        subject: Subject whose template and style are animated (default: the first training subject).
    """

    def __init__(self, set: str | None = None, subject: str | None = None) -> None:  # noqa: A002 (the CLI name)
        super().__init__()
        self.set = set
        self.subject = subject

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.set is None or not trainer.is_global_zero:
            return
        from talk.lipsync_eval import BUNDLED_SET, evaluate_model, read_eval_set, write_evaluation

        model = getattr(pl_module, "model", None)
        if model is None or not hasattr(model, "generate") or getattr(model, "assets", None) is None:
            raise_for = type(pl_module).__name__
            from talk.errors import UserError

            raise UserError(
                f"--lipsync.set measures lip sync of a speech-to-motion model; {raise_for} is not one: drop the option."
            )
        source = BUNDLED_SET if self.set == "default" else Path(self.set)
        recordings = read_eval_set(source)
        was_training = model.training
        model.eval()
        try:
            evaluation = evaluate_model(model, recordings, subject=self.subject)
        finally:
            model.train(was_training)
        run_dir = Path(trainer.default_root_dir)
        about = {"set": str(source), "checkpoint": str(trainer.ckpt_path) if trainer.ckpt_path else None}
        json_path, csv_path = write_evaluation(evaluation, run_dir, about)
        pooled = evaluation.report.as_dict()
        section: dict[str, Any] = {"set": str(source), "subject": evaluation.subject, "pooled": pooled,
                                   "files": [str(json_path), str(csv_path)]}  # fmt: skip
        results = getattr(pl_module, "test_results", None)
        if isinstance(results, dict):
            results["real_speech"] = section
        scalars = {f"real_speech/{k}": float(v) for k, v in pooled.items() if isinstance(v, (int, float)) and v == v}
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=trainer.global_step)
