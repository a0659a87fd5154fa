"""``talk fit|validate|test|predict``: LightningCLI with talk's links, run directory and test report."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from talk.checkpoint_io import AtomicCheckpointIO
from talk.report import print_metrics_table


class TalkCLI(LightningCLI):
    """LightningCLI whose model and data are chosen by ``class_path`` in YAML.

    Values that must agree are linked, so they are set in one place: every talk model takes ``motion_dim``,
    ``num_styles`` and ``fps`` from the data and builds its submodules (given in YAML as factories: a
    ``class_path`` plus the remaining ``init_args``) from them.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for name in ("motion_dim", "num_styles", "fps"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")

    def instantiate_trainer(self, **kwargs: Any):  # noqa: ANN201 - Trainer
        trainer = super().instantiate_trainer(**kwargs)
        io = trainer.strategy.checkpoint_io
        if type(io).__name__ == "TorchCheckpointIO":
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def after_fit(self) -> None:
        ckpt = self.trainer.checkpoint_callback
        if ckpt is not None and getattr(ckpt, "best_model_path", ""):
            print(f"best checkpoint: {ckpt.best_model_path}")
            if getattr(ckpt, "last_model_path", ""):
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


def run_lightning_cli(args: list[str] | None = None) -> None:
    """Runs ``talk fit|validate|test|predict``."""
    import sys

    from lightning.pytorch import LightningDataModule

    from talk.models.base import TalkModule

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
