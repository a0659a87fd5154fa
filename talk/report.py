"""Human-readable metric tables, and the side-by-side comparison of `talk test` runs (``talk report``).

A run directory holds what ``talk test`` wrote: ``metrics.json`` (pooled metrics per method, units, split,
dataset, region set and its sha256, checkpoint, config hash) and ``metrics_per_sequence.csv``. Comparing runs is
only meaningful on the same sequences with the same region vertex sets, so the comparison warns when either
differs.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from talk.errors import UserError
from talk.metrics import DISPLAY

PLOT_FILENAME = "per_sequence.png"
REPORT_FILENAME = "report.md"


class ReportError(UserError, ValueError):
    """A run directory does not hold readable ``talk test`` results."""


def _markdown(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    )


def _label(key: str, units: dict[str, str] | None = None) -> str:
    """Column label with its unit: ``DISPLAY``'s label, plus ``(unit)`` when that label carries none."""
    label = DISPLAY[key][0]
    unit = (units or {}).get(key) or ("mm" if key == "lve_mm" else "")
    return label if "(" in label or not unit else f"{label} ({unit})"


def _cell(key: str, values: dict[str, Any]) -> str:
    _, scale, fmt = DISPLAY[key]
    return fmt.format(values[key] * scale) if values.get(key) is not None else ""


def format_metrics_table(metrics: dict[str, dict[str, Any]]) -> str:
    """Markdown table: one row per method, one column per metric (display units from ``talk.metrics.DISPLAY``)."""
    keys = [k for k in DISPLAY if any(k in m for m in metrics.values())]
    header = ["method", *[DISPLAY[k][0] for k in keys], "sequences"]
    rows = [header, ["---"] * len(header)]
    for method, values in metrics.items():
        rows.append([method, *[_cell(k, values) for k in keys], str(values.get("sequences", ""))])
    return _markdown(rows)


def print_metrics_table(metrics: dict[str, dict[str, Any]], title: str = "") -> None:
    """Prints :func:`format_metrics_table` under an optional title."""
    if title:
        print(title)
    print(format_metrics_table(metrics))


# ------------------------------------------------------------------------------------------ comparing runs
@dataclass(frozen=True)
class RunResult:
    """The results of one ``talk test`` run.

    Attributes:
        label: Short name of the run in tables and plots (its folder name, made unique).
        path: The run directory.
        report: ``metrics.json`` as written by ``talk test``.
        per_sequence: Method -> rows of ``metrics_per_sequence.csv`` (``name``, ``frames``, ``lve``, ``fdd``,
            ``mve`` in SI units).
    """

    label: str
    path: Path
    report: dict[str, Any]
    per_sequence: dict[str, list[dict[str, Any]]]

    @property
    def methods(self) -> list[str]:
        return list(self.report.get("metrics", {}))

    @property
    def regions(self) -> dict[str, Any] | None:
        return self.report.get("regions")

    @property
    def region_name(self) -> str:
        """``file [lip region / upper-face regions]``, e.g. ``FLAME_masks.pkl [lips / forehead+eye_region]``."""
        r = self.regions
        if not r:
            return "(not recorded)"
        return f"{Path(str(r.get('file', '?'))).name} [{r.get('lips', '?')} / {'+'.join(r.get('upper_face', []))}]"

    @property
    def data_key(self) -> tuple[str, str, frozenset[str]]:
        """(dataset, split, evaluated sequence names): equal keys mean the runs saw the same test data."""
        dataset = (self.report.get("dataset") or {}).get("name") or "?"
        method = "model" if "model" in self.per_sequence else next(iter(self.per_sequence), "")
        names = frozenset(r["name"] for r in self.per_sequence.get(method, []))
        return str(dataset), str(self.report.get("split", "?")), names


def load_run(run_dir: str | Path, label: str | None = None) -> RunResult:
    """Reads ``metrics.json`` and ``metrics_per_sequence.csv`` of a ``talk test`` run directory.

    Args:
        run_dir: The directory (``--trainer.default_root_dir`` of ``talk test``).
        label: Name in tables; default the directory name.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise ReportError(
            f"run directory {path} does not exist; pass the folder `talk test` wrote metrics.json to."
        )
    metrics_path, csv_path = path / "metrics.json", path / "metrics_per_sequence.csv"
    for p in (metrics_path, csv_path):
        if not p.is_file():
            raise ReportError(f"{p} not found; run `talk test ... --trainer.default_root_dir {path}` first.")
    try:
        report = json.loads(metrics_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{metrics_path} is not valid JSON ({exc}); re-run `talk test`.") from None
    if not isinstance(report, dict) or not isinstance(report.get("metrics"), dict) or not report["metrics"]:
        raise ReportError(f"{metrics_path} has no 'metrics' section; it was not written by `talk test`.")
    per_sequence: dict[str, list[dict[str, Any]]] = {}
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        needed = {"method", "name", "frames", "lve", "fdd", "mve"}
        if not needed <= set(reader.fieldnames or []):
            raise ReportError(
                f"{csv_path} lacks columns {sorted(needed - set(reader.fieldnames or []))}; re-run `talk test`."
            )
        for line, row in enumerate(reader, start=2):
            try:
                values = {"name": row["name"], "frames": int(row["frames"])}
                values.update({k: float(row[k]) for k in ("lve", "fdd", "mve")})
            except (TypeError, ValueError):
                raise ReportError(
                    f"{csv_path}:{line}: non-numeric metric values; re-run `talk test`."
                ) from None
            per_sequence.setdefault(row["method"], []).append(values)
    return RunResult(label or path.resolve().name, path, report, per_sequence)


def _unique_labels(paths: list[Path]) -> list[str]:
    labels = [p.resolve().name for p in paths]
    if len(set(labels)) < len(labels):  # same folder names: add the parent
        labels = [f"{p.resolve().parent.name}/{p.resolve().name}" for p in paths]
    if len(set(labels)) < len(labels):
        labels = [f"{label} ({i + 1})" for i, label in enumerate(labels)]
    return labels


def comparison_warnings(runs: list[RunResult]) -> list[str]:
    """Reasons the runs' numbers may not be comparable: different region sets, datasets, splits or sequences."""
    out = []
    hashes = {r.label: (r.regions or {}).get("sha256") for r in runs}
    for label, digest in hashes.items():
        if digest is None:
            out.append(
                f"run {label} records no region set; its LVE/FDD cannot be checked against the others."
            )
    if len({d for d in hashes.values() if d}) > 1:
        detail = "; ".join(
            f"{r.label}: {r.region_name} sha256 {hashes[r.label][:12]}" for r in runs if hashes[r.label]
        )
        out.append(f"runs used different region vertex sets, so LVE and FDD are not comparable ({detail}).")
    keys = {r.label: r.data_key for r in runs}
    if len({k[:2] for k in keys.values()}) > 1:
        detail = "; ".join(f"{label}: {k[0]} {k[1]}" for label, k in keys.items())
        out.append(f"runs were evaluated on different datasets or splits ({detail}).")
    elif len({k[2] for k in keys.values()}) > 1:
        common = frozenset.intersection(*(k[2] for k in keys.values()))
        detail = "; ".join(f"{label}: {len(k[2])}" for label, k in keys.items())
        out.append(
            f"runs were evaluated on different test sequences ({detail} sequences, {len(common)} in common); "
            "pooled metrics are not directly comparable."
        )
    return out


def format_run_table(runs: list[RunResult]) -> str:
    """Markdown table with one row per (run, method): every metric with units, data, split and region set."""
    keys = [k for k in DISPLAY if any(k in m for r in runs for m in r.report["metrics"].values())]
    units = next((r.report.get("units") for r in runs if r.report.get("units")), {})
    header = ["run", "method", *[_label(k, units) for k in keys], "sequences", "frames", "dataset", "split",
              "regions", "regions sha256"]  # fmt: skip
    rows = [header, ["---"] * len(header)]
    for r in runs:
        for method, values in r.report["metrics"].items():
            regions = r.regions or {}
            rows.append([
                r.label, method, *[_cell(k, values) for k in keys], str(values.get("sequences", "")),
                str(values.get("frames", "")), str((r.report.get("dataset") or {}).get("name") or ""),
                str(r.report.get("split", "")), r.region_name, str(regions.get("sha256", ""))[:12],
            ])  # fmt: skip
    return _markdown(rows)


REAL_SPEECH_COLUMNS = (
    ("bilabial closure", "bilabial_closure_rate"),
    ("open-vowel / closure gap", "gap_ratio"),
    ("gap-phone correlation", "gap_phone_corr"),
    ("lip speed silence / speech", "silence_speech_lip_speed_ratio"),
)


def format_real_speech(sections: dict[str, dict[str, Any]]) -> str:
    """Markdown table of ``talk test --lipsync.set`` figures: one row per run (label -> metrics.json section)."""
    header = ["run", "set", "subject", "bilabials", *[name for name, _ in REAL_SPEECH_COLUMNS]]
    rows = [header, ["---"] * len(header)]
    for label, section in sections.items():
        pooled = section.get("pooled", {})
        closure = pooled.get("bilabial_closure_rate")
        cells = []
        for _name, key in REAL_SPEECH_COLUMNS:
            value = pooled.get(key)
            text = "" if value is None else f"{value:.2f}"
            if key == "bilabial_closure_rate" and value is not None:
                text = f"{pooled.get('bilabials_closed')}/{pooled.get('bilabials_judged')} = {closure:.2f}"
            cells.append(text)
        rows.append([label, Path(str(section.get("set", ""))).name, str(section.get("subject", "")),
                     str(pooled.get("bilabials", "")), *cells])  # fmt: skip
    return _markdown(rows)


def plot_per_sequence(runs: list[RunResult], path: str | Path) -> Path:
    """Box plots of per-sequence LVE and MVE, one box per (run, method), written as a PNG.

    Args:
        runs: The runs.
        path: Output ``.png``.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ReportError("the plot needs matplotlib; install it with `pip install matplotlib`.") from None
    boxes = [(f"{r.label}\n{m}", rows) for r in runs for m, rows in r.per_sequence.items() if rows]
    if not boxes:
        raise ReportError("no per-sequence rows to plot; the runs' metrics_per_sequence.csv files are empty.")
    fig = Figure(figsize=(max(6.0, 1.6 * len(boxes) + 2.0), 4.2), dpi=100)
    FigureCanvasAgg(fig)  # the Agg canvas, without touching pyplot's global backend
    panels = (("lve", "per-sequence LVE (x1e-5 m^2)", 1e5), ("mve", "per-sequence MVE (mm)", 1e3))
    for i, (key, title, scale) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.boxplot([[row[key] * scale for row in rows] for _, rows in boxes])
        ax.set_xticks(range(1, len(boxes) + 1), [label for label, _ in boxes], fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png")
    return out


@dataclass(frozen=True)
class RunReport:
    """What :func:`write_report` produced.

    Attributes:
        markdown: The report text (table, run details, warnings, plot link).
        warnings: Comparability warnings (also in the markdown).
        report_path: The written ``report.md``.
        plot_path: The written PNG.
    """

    markdown: str
    warnings: tuple[str, ...]
    report_path: Path
    plot_path: Path


def write_report(run_dirs: list[str | Path], out_dir: str | Path) -> RunReport:
    """Compares ``talk test`` runs: writes ``report.md`` and ``per_sequence.png`` into ``out_dir``.

    Args:
        run_dirs: Run directories, one table row per (run, method).
        out_dir: Output folder (created if needed).
    """
    if not run_dirs:
        raise ReportError("give at least one run directory.")
    out = Path(out_dir)
    for folder in [out, *out.parents]:  # checked before anything is read
        if folder.exists():
            if not folder.is_dir():
                where = "is a file" if folder == out else f"is under {folder}, a file"
                raise ReportError(f"--out {out} {where}; name a folder for report.md and the plot.")
            break
    paths = [Path(p) for p in run_dirs]
    runs = [load_run(p, label) for p, label in zip(paths, _unique_labels(paths), strict=True)]
    out.mkdir(parents=True, exist_ok=True)
    plot = plot_per_sequence(runs, out / PLOT_FILENAME)
    notes = comparison_warnings(runs)
    lines = ["# talk report", "", format_run_table(runs), ""]
    real = {r.label: r.report["real_speech"] for r in runs if isinstance(r.report.get("real_speech"), dict)}
    if real:  # talk test --lipsync.set
        lines += ["## Lip sync on real speech", "", format_real_speech(real), ""]
    lines += ["## Runs", ""]
    for r in runs:
        regions = r.regions or {}
        lines.append(
            f"- **{r.label}**: `{r.path}`; checkpoint `{r.report.get('checkpoint')}`; config sha256 "
            f"`{r.report.get('config_sha256')}`; regions {r.region_name} ({regions.get('num_lip_vertices', '?')} "
            f"lip, {regions.get('num_upper_face_vertices', '?')} upper-face vertices) sha256 "
            f"`{regions.get('sha256')}`"
        )
    if notes:
        lines += ["", "## Warnings", "", *[f"- {n}" for n in notes]]
    lines += ["", f"![per-sequence LVE and MVE]({PLOT_FILENAME})", ""]
    markdown = "\n".join(lines)
    report_path = out / REPORT_FILENAME
    report_path.write_text(markdown)
    return RunReport(markdown, tuple(notes), report_path, plot)
