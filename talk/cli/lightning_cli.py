"""``talk fit|validate|test|predict``: LightningCLI with talk's links, run directory and test report."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from talk.report import print_metrics_table
from talk.training.checkpoint_io import AtomicCheckpointIO


class TalkCLI(LightningCLI):
    """LightningCLI whose model and data are chosen by ``class_path`` in YAML.

    Values that must agree are linked, so they are set in one place: every talk model takes ``motion_dim``,
    ``num_styles`` and ``fps`` from the data and builds its submodules (given in YAML as factories: a
    ``class_path`` plus the remaining ``init_args``) from them.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for name in ("motion_dim", "num_styles", "fps"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        """Checkpoint hyperparameters define the model, but ``--model.*`` flags given explicitly still win.

        LightningCLI rebuilds the model from the hyperparameters stored in ``--ckpt_path`` and lets them override
        the parsed config, which silently dropped inference settings such as
        ``talk test --ckpt_path best.ckpt --model.init_args.temperature=0.7``. The flags the user typed are
        applied again on top, so what was asked for is what runs.
        """
        super()._parse_ckpt_path()
        subcommand = self.config.get("subcommand")
        if not subcommand or not self.config[subcommand].get("ckpt_path"):
            return
        overrides = _explicit_model_flags(sys.argv[1:])
        if overrides:
            overrides["class_path"] = self.config[subcommand]["model"]["class_path"]
            self.config = self.parser.parse_object({subcommand: {"model": overrides}}, self.config)

    def instantiate_trainer(self, **kwargs: Any):  # noqa: ANN201 - Trainer
        trainer = super().instantiate_trainer(**kwargs)
        io = trainer.strategy.checkpoint_io
        if type(io).__name__ == "TorchCheckpointIO":
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def after_fit(self) -> None:
        from lightning.pytorch.callbacks import ModelCheckpoint

        for ckpt in self.trainer.checkpoint_callbacks:
            if not isinstance(ckpt, ModelCheckpoint) or not ckpt.best_model_path:
                continue
            kind = "best" if ckpt.monitor else "last"  # an unmonitored checkpoint keeps the latest epoch
            print(f"{kind} checkpoint: {ckpt.best_model_path}")
            if ckpt.last_model_path:
                print(f"last checkpoint: {ckpt.last_model_path}")

    def after_test(self) -> None:
        results = getattr(self.model, "test_results", None)
        if not results:
            return
        run_dir = Path(self.trainer.default_root_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        sub_cfg = self.config[self.config.subcommand]
        config_yaml = self.parser.dump(self.config, skip_none=False)
        dm = self.datamodule
        report: dict[str, Any] = {
            "split": "test",
            "checkpoint": str(sub_cfg.get("ckpt_path")) if sub_cfg.get("ckpt_path") else None,
            "config_sha256": hashlib.sha256(config_yaml.encode()).hexdigest(),
            "dataset": {"name": getattr(dm, "dataset_name", None), "root": str(getattr(dm, "root", ""))},
            "units": {"lve": "m^2", "lve_mm": "mm", "fdd": "m^2", "abs_fdd": "m^2", "mve": "m"},
            "metrics": results["metrics"],
        }
        regions = getattr(dm, "regions", None)
        if callable(regions):
            ids = regions()
            digest = hashlib.sha256(
                b"".join(np.asarray(ids[k], np.int64).tobytes() for k in sorted(ids))
            ).hexdigest()
            report["regions"] = {
                "file": str(dm.regions_path or Path(dm.root) / "FLAME_masks.pkl"),
                "lips": dm.lip_region,
                "upper_face": list(dm.upper_face_regions),
                "num_lip_vertices": int(len(ids["lips"])),
                "num_upper_face_vertices": int(len(ids["upper_face"])),
                "sha256": digest,
            }
        path = run_dir / "metrics.json"
        path.write_text(json.dumps(report, indent=2))
        seq_path = run_dir / "metrics_per_sequence.csv"
        with open(seq_path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["method", "name", "frames", "lve", "fdd", "mve"])
            for method, rows in results["per_sequence"].items():
                for r in rows:
                    writer.writerow([method, r["name"], r["frames"], r["lve"], r["fdd"], r["mve"]])
        print_metrics_table(results["metrics"], title=f"test metrics ({report['dataset']['root']})")
        print(f"metrics: {path}")
        print(f"per-sequence metrics: {seq_path}")


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


def run_lightning_cli(args: list[str] | None = None) -> None:
    """Runs ``talk fit|validate|test|predict``."""
    from lightning.pytorch import LightningDataModule

    from talk.training.base import TalkModule

    if args is not None:
        sys.argv = ["talk", *args]  # LightningCLI reads sys.argv; keeps its error messages naming `talk`
    TalkCLI(
        TalkModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "talk"},
    )
