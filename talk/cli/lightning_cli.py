"""``talk fit|validate|test|predict``: LightningCLI with talk's links, run directory and test report.

Configs compose in this order, later ones winning: ``experiments/trainer/default.yaml`` (the trainer every config
shares, read automatically), the files given with ``-c`` (model, data and what differs), the command line.

Every output of a run goes under its run directory, ``trainer.default_root_dir``: logger ``save_dir`` and
``ModelCheckpoint.dirpath`` left empty are filled from it (:func:`resolve_run_dir`), ``talk test`` writes
``metrics.json`` there, ``talk predict`` writes ``predictions/`` there (the test split's sequences), and
``ComparisonVideos`` writes ``videos/`` there. Two runs with different run directories never touch each other's
files.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from talk.cli.checks import check_run_dir, constructor_error
from talk.cli.run_dir import resolve_run_dir
from talk.cli.signature import OneLineErrors
from talk.errors import UserError
from talk.files import atomic_write, write_text_atomic
from talk.report import print_metrics_table
from talk.training.checkpoint_io import AtomicCheckpointIO

# Located from this file, i.e. in the source tree: an editable install (`pip install -e .`, as `make` does) finds
# it from any working directory. A wheel carries no experiments/, so there the file is absent and skipped; pass a
# trainer config with -c instead.
DEFAULT_TRAINER_CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "trainer" / "default.yaml"
SUBCOMMANDS = ("fit", "validate", "test", "predict")


class TalkArgumentParser(OneLineErrors, LightningArgumentParser):
    """talk's parser: validates and prints (``--print_config``) a config with its run directory filled in, and
    reports a config mistake in one line (:class:`~talk.cli.signature.OneLineErrors`).

    A logger's ``save_dir`` may be left out of a config (``CSVLogger`` requires one): what is checked and shown is
    the config as it will run, with :func:`resolve_run_dir` applied, so ``--print_config`` shows the run's real
    paths. ``TalkCLI`` applies the same function to the parsed config before anything is built.
    """

    def validate(self, namespace: Namespace, *args: Any, **kwargs: Any) -> None:
        super().validate(resolve_run_dir(namespace), *args, **kwargs)

    def parse_path(self, cfg_path: Any, *args: Any, **kwargs: Any) -> Namespace:
        """jsonargparse's reading of a ``-c`` file, with a binary file (an audio file or a checkpoint given by
        mistake) reported in one line instead of a ``UnicodeDecodeError`` traceback."""
        try:
            return super().parse_path(cfg_path, *args, **kwargs)
        except UnicodeDecodeError:
            return self.error(f"config file {cfg_path} is not a text YAML file; pass a config such as "
                              "experiments/synthetic/faceformer.yaml with -c")  # fmt: skip

    def dump(self, namespace: Namespace, *args: Any, **kwargs: Any) -> str:
        return super().dump(resolve_run_dir(namespace), *args, **kwargs)


class TalkCLI(LightningCLI):
    """LightningCLI whose model and data are chosen by ``class_path`` in YAML.

    Values that must agree are linked, so they are set in one place: every audio-to-motion model
    (:class:`~talk.training.base.TalkModule`) takes ``motion_dim``, ``num_styles`` and ``fps`` from the data
    (:class:`~talk.data.base.TalkDataModule`) and builds its submodules (given in YAML as factories: a
    ``class_path`` plus the remaining ``init_args``) from them. A link applies only when the data has the value:
    the portrait generator's data (:class:`~talk.data.formats.portraits.PortraitDataModule`) has none of them and
    its model (:class:`~talk.training.portrait.PortraitModule`) takes none (jsonargparse skips a link whose
    source object lacks the attribute).
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for name in ("motion_dim", "num_styles", "fps"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")

    def _prepare_subcommand_parser(
        self, klass: type, subcommand: str, **kwargs: Any
    ) -> LightningArgumentParser:
        """``talk fit|validate|test`` log to the experiment dashboard (:class:`~talk.training.dashboard.Dashboard`,
        options ``--dashboard.*``); ``talk predict`` writes its predictions
        (:class:`~talk.training.prediction.PredictionWriter`, options ``--predictions.*``) instead of holding them in
        memory (``return_predictions`` false)."""
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand in ("fit", "validate", "test"):
            # The experiment dashboard is every run's callback, with its own options (--dashboard.*), outside the
            # trainer.callbacks list: a config that lists its own callbacks replaces that list, and would drop it.
            from talk.training.dashboard import Dashboard

            parser.add_lightning_class_args(Dashboard, "dashboard")
        if subcommand == "test":  # lip sync on real recordings beside the test split (off unless a set is named)
            from talk.training.lipsync_callback import RealSpeechLipSync

            parser.add_lightning_class_args(RealSpeechLipSync, "lipsync")
        if subcommand == "predict":
            from talk.training.prediction import PredictionWriter

            parser.add_lightning_class_args(PredictionWriter, "predictions")
            parser.set_defaults(return_predictions=False)
        return parser

    def after_predict(self) -> None:
        from talk.training.prediction import PredictionWriter

        writers = [c for c in self.trainer.callbacks if isinstance(c, PredictionWriter)]
        if self.trainer.is_global_zero:  # with several processes, each wrote its own sequences
            for writer in writers:
                print(writer.summary() if self.trainer.world_size == 1 else f"predictions: {writer.path}")

    def before_instantiate_classes(self) -> None:
        """The run's outputs go under ``trainer.default_root_dir`` (see :func:`resolve_run_dir`), which must be a
        folder or creatable as one: checked before anything is built or trained."""
        self.config = resolve_run_dir(self.config)
        subcommand = self.config.get("subcommand")
        trainer = self.config[subcommand].get("trainer") if subcommand else None
        run_dir = trainer.get("default_root_dir") if trainer is not None else None
        if run_dir:
            check_run_dir(Path(run_dir))

    def instantiate_classes(self) -> None:
        """Builds the model, data and trainer; a value their constructors refuse (a missing tokenizer checkpoint,
        ``num_heads`` that does not divide ``d_model``) is reported as the constructor's own one-line message.
        jsonargparse wraps it in a multi-line "Does not validate against any of the Union subtypes" error that
        ends the run with a traceback."""
        try:
            super().instantiate_classes()
        except Exception as exc:
            cause = constructor_error(exc)
            if cause is None:
                raise
            if isinstance(cause, UserError):
                raise cause from None
            raise UserError(str(cause).strip()) from None

    def _parse_ckpt_path(self) -> None:
        """Checkpoint hyperparameters define the model, but ``--model.*`` flags given explicitly still win.

        LightningCLI rebuilds the model from the hyperparameters stored in ``--ckpt_path`` and lets them override
        the parsed config, which silently dropped inference settings such as
        ``talk test --ckpt_path best.ckpt --model.init_args.sampling.temperature=0.7``. The flags the user typed are
        applied again on top, so what was asked for is what runs.
        """
        self._parse_checkpoint_hyperparameters()
        subcommand = self.config.get("subcommand")
        if not subcommand or not self.config[subcommand].get("ckpt_path"):
            return
        overrides = _explicit_model_flags(sys.argv[1:])
        if overrides:
            overrides["class_path"] = self.config[subcommand]["model"]["class_path"]
            self.config = self.parser.parse_object({subcommand: {"model": overrides}}, self.config)

    def _parse_checkpoint_hyperparameters(self) -> None:
        """LightningCLI's reading of ``--ckpt_path`` hyperparameters, with one-line errors for a file that is not a
        checkpoint or holds another kind of model than the config, and with checkpoints written before the pipeline
        layout read as they were (old class paths, loose sampling arguments)."""
        from talk.pipeline.config import resolve_class
        from talk.pipeline.load import read_checkpoint
        from talk.training.checkpoints import legacy_sampling, rename_legacy

        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or str(ckpt_path) in LIGHTNING_CKPT_ALIASES or str(ckpt_path).startswith("registry"):
            return  # nothing to read, or a checkpoint Lightning looks up itself ("last": the run's last.ckpt)
        hparams = dict(read_checkpoint(ckpt_path).get("hyper_parameters") or {})  # a missing file: one line
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        hparams, _ = rename_legacy(hparams)
        legacy_sampling(hparams)
        if "_class_path" in hparams:
            stored = resolve_class(hparams["_class_path"])
            configured = self.config[subcommand]["model"].get("class_path")
            if configured and not issubclass(stored, resolve_class(configured)):
                raise UserError(
                    f"--ckpt_path {ckpt_path} holds a {stored.__name__} but the config's model is "
                    f"{configured.rsplit('.', 1)[-1]}; pass the config the checkpoint was trained with."
                )
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)

    def instantiate_trainer(self, **kwargs: Any):  # noqa: ANN201 - Trainer
        trainer = super().instantiate_trainer(**kwargs)
        io = trainer.strategy.checkpoint_io
        if type(io).__name__ == "TorchCheckpointIO":
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def after_fit(self) -> None:
        """Reports the checkpoints (:meth:`_after_fit_checkpoints`), then ends the loggers' runs."""
        self._after_fit_checkpoints()
        self._finish_loggers()

    def _finish_loggers(self) -> None:
        """Ends the run's wandb run (its files complete on disk) and, for an offline one, prints the ``wandb sync``
        command that uploads it (:func:`talk.training.loggers.finish_runs`)."""
        from talk.training.loggers import finish_runs

        if self.trainer.is_global_zero:
            finish_runs(self.trainer.loggers)

    def _after_fit_checkpoints(self) -> None:
        """Prints the checkpoints written. When none was (they are written after validation, and a run shorter
        than ``check_val_every_n_epoch`` never validates), writes ``last.ckpt`` of the trained model anyway, so the
        training is not lost, and says in one line why there is no ``best.ckpt``."""
        from lightning.pytorch.callbacks import ModelCheckpoint

        callbacks = [c for c in self.trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)]
        trainer = self.trainer
        if (
            not callbacks
            or trainer.fast_dev_run
            or any(c.best_model_path or c.last_model_path for c in callbacks)
        ):
            if trainer.is_global_zero:  # (under DDP every process runs this; one reports)
                self._print_checkpoints(callbacks)
            return  # (fast_dev_run: a smoke test, which writes no checkpoint on purpose)
        folder = next((c.dirpath for c in callbacks if c.dirpath), None)
        path = Path(folder or Path(trainer.default_root_dir) / "checkpoints") / "last.ckpt"
        trainer.save_checkpoint(
            path, weights_only=False
        )  # a full checkpoint (rank 0 writes): training resumes
        if not trainer.is_global_zero:
            return
        every = trainer.check_val_every_n_epoch
        print(
            f"talk fit: warning: validation never ran (trainer.max_epochs={trainer.max_epochs}, "
            f"trainer.check_val_every_n_epoch={every}), so no best.ckpt was chosen; the trained model is in {path} "
            "(resume with --ckpt_path, or train at least check_val_every_n_epoch epochs).",
            file=sys.stderr,
        )
        print(f"last checkpoint: {path}")

    @staticmethod
    def _print_checkpoints(callbacks: list) -> None:
        for ckpt in callbacks:
            if not ckpt.best_model_path:
                continue
            kind = "best" if ckpt.monitor else "last"  # an unmonitored checkpoint keeps the latest epoch
            print(f"{kind} checkpoint: {ckpt.best_model_path}")
            if ckpt.last_model_path:
                print(f"last checkpoint: {ckpt.last_model_path}")

    def after_test(self) -> None:
        """Writes and prints the test report (:meth:`_write_test_report`), then ends the loggers' runs."""
        self._write_test_report()
        self._finish_loggers()

    def _write_test_report(self) -> None:
        results = getattr(self.model, "test_results", None)
        if not results or not self.trainer.is_global_zero:  # every process holds the whole split's results
            return
        run_dir = Path(self.trainer.default_root_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        sub_cfg = self.config[self.config.subcommand]
        config_yaml = self.parser.dump(self.config, skip_none=False)
        dm = self.datamodule
        # a model's results may name their own units and per-sequence columns (the portrait generator: PSNR in dB,
        # SSIM); the vertex metrics' are the default
        report: dict[str, Any] = {
            "split": "test",
            "checkpoint": str(sub_cfg.get("ckpt_path")) if sub_cfg.get("ckpt_path") else None,
            "config_sha256": hashlib.sha256(config_yaml.encode()).hexdigest(),
            "dataset": {"name": dm.dataset_name, "root": str(dm.root)},
            "units": results.get(
                "units", {"lve": "m^2", "lve_mm": "mm", "fdd": "m^2", "abs_fdd": "m^2", "mve": "m"}
            ),
            "metrics": results["metrics"],
        }
        if "real_speech" in results:  # talk test --lipsync.set: lip sync on real recordings
            report["real_speech"] = results["real_speech"]
        # the region file the metrics were computed with, by name and hash (image metrics have none)
        if getattr(dm, "has_regions", lambda: False)():
            ids = dm.regions()
            digest = hashlib.sha256(
                b"".join(np.asarray(ids[k], np.int64).tobytes() for k in sorted(ids))
            ).hexdigest()
            report["regions"] = {
                "file": str(dm.regions_path),
                "lips": dm.lip_region,
                "upper_face": list(dm.upper_face_regions),
                "num_lip_vertices": int(len(ids["lips"])),
                "num_upper_face_vertices": int(len(ids["upper_face"])),
                "sha256": digest,
            }
        path = write_text_atomic(run_dir / "metrics.json", json.dumps(report, indent=2))
        seq_path = run_dir / "metrics_per_sequence.csv"
        with atomic_write(seq_path, "w") as f:
            writer = csv.writer(f)
            columns = results.get("columns", ["lve", "fdd", "mve"])
            writer.writerow(["method", "name", "frames", *columns])
            for method, rows in results["per_sequence"].items():
                for r in rows:
                    writer.writerow([method, r["name"], r["frames"], *(r[c] for c in columns)])
        print_metrics_table(results["metrics"], title=f"test metrics ({report['dataset']['root']})")
        if "real_speech" in report:
            from talk.report import format_real_speech

            print(format_real_speech({"this run": report["real_speech"]}))
        print(f"metrics: {path}")
        print(f"per-sequence metrics: {seq_path}")


LIGHTNING_CKPT_ALIASES = ("last", "best", "hpc")  # --ckpt_path values Lightning resolves, not file names


def _explicit_model_flags(argv: list[str]) -> dict[str, Any]:
    """Nested dict of the ``--model.a.b=value`` / ``--model.a.b value`` flags in ``argv`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("--model."):
            continue
        key, eq, value = arg[len("--model.") :].partition("=")
        if not eq:
            if i >= len(argv) or argv[i].startswith("--"):
                continue
            value = argv[i]
            i += 1
        node = out
        *parents, leaf = key.split(".")
        if not parents and leaf == "class_path":
            continue  # the checkpoint decides the model class
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return out


def run_lightning_cli(args: list[str] | None = None, cli_class: type[TalkCLI] | None = None) -> None:
    """Runs ``talk fit|validate|test|predict``.

    Args:
        args: The command line after ``talk``; None reads ``sys.argv``.
        cli_class: A subclass of :class:`TalkCLI` to run instead (tests stop it after parsing).
    """
    import lightning as L

    if args is not None:
        # LightningCLI reads sys.argv (its messages name `talk` through parser_kwargs' prog). The program path is
        # kept: Lightning's DDP launcher starts the other ranks with `python <sys.argv[0]> <args>` (or `python -m`
        # when run as a module), so it must be the console script's real path, not a bare `talk`.
        sys.argv = [sys.argv[0] if sys.argv and sys.argv[0] else "talk", *args]
    # Lightning's notes that are not the user's business: its own use of a deprecated torch API, (talk test of
    # another run's checkpoint, the usual case) that the checkpoint callbacks' folder differs from the training's,
    # and (the LM's frozen tokenizer) that some modules are in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", message=r"The dirpath has changed from")
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
    # per subcommand (the root parser has no trainer); escaped, since the entries are glob patterns
    default_trainer = {"default_config_files": [glob.escape(str(DEFAULT_TRAINER_CONFIG))]}
    subcommands = {name: dict(default_trainer) for name in SUBCOMMANDS}
    subcommands["predict"]["description"] = (
        "Predict the vertices of every sequence of the data's test split and write them to "
        "<run dir>/predictions/<name>.npz (vertices [T, V, 3] float32, fps); --predictions.meshes obj|ply also "
        "writes the meshes of each sequence to <run dir>/predictions/<name>/."
    )
    # the base classes both kinds of model share: audio-to-motion (talk.training.base.TalkModule with a
    # talk.data.base.TalkDataModule) and the portrait generator (talk.training.portrait.PortraitModule with
    # talk.data.formats.portraits.PortraitDataModule)
    (cli_class or TalkCLI)(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        parser_class=TalkArgumentParser,
        parser_kwargs={"prog": "talk", **subcommands},
    )
