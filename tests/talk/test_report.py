"""`talk report`: run comparison table values, comparability warnings, the PNG, and CLI errors."""

from __future__ import annotations

import csv
import json
import math

import pytest

from talk.report import ReportError, format_metrics_table, load_run, write_report

SHA_A = "a" * 64
SHA_B = "b" * 64


def fake_run(run, per_sequence, *, sha=SHA_A, split="test", dataset="vocaset", regions=True):
    """A run directory as `talk test` writes it (metrics.json + metrics_per_sequence.csv).

    ``per_sequence``: method -> list of (name, frames, per-sequence mean lip max sq error, fdd, mve).
    Pooled values are computed here the way talk.metrics does: LVE pooled over frames, the rest per sequence.
    """
    run.mkdir(parents=True)
    metrics = {}
    for method, rows in per_sequence.items():
        frames = sum(r[1] for r in rows)
        lve = sum(r[1] * r[2] for r in rows) / frames
        metrics[method] = {
            "lve": lve, "lve_mm": math.sqrt(lve) * 1000, "fdd": sum(r[3] for r in rows) / len(rows),
            "abs_fdd": sum(abs(r[3]) for r in rows) / len(rows), "mve": sum(r[4] for r in rows) / len(rows),
            "sequences": len(rows), "frames": frames,
        }  # fmt: skip
    report = {
        "split": split,
        "checkpoint": str(run / "last.ckpt"),
        "config_sha256": "c" * 64,
        "dataset": {"name": dataset, "root": "data/x"},
        "units": {"lve": "m^2", "lve_mm": "mm", "fdd": "m^2", "abs_fdd": "m^2", "mve": "m"},
        "metrics": metrics,
    }
    if regions:
        report["regions"] = {"file": "data/x/FLAME_masks.pkl", "lips": "lips", "upper_face": ["forehead", "eye_region"],
                             "num_lip_vertices": 4, "num_upper_face_vertices": 4, "sha256": sha}  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(report, indent=2))
    with open(run / "metrics_per_sequence.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "name", "frames", "lve", "fdd", "mve"])
        for method, rows in per_sequence.items():
            for row in rows:
                writer.writerow([method, *row])
    return run


SEQS = ["s1", "s2"]


def two_runs(tmp_path, **b_kwargs):
    a = fake_run(tmp_path / "lm", {
        "model": [("s1", 10, 2.0e-5, -1.0e-7, 1.0e-3), ("s2", 30, 3.0e-5, -2.0e-7, 1.5e-3)],
        "static_template": [("s1", 10, 9.0e-5, 3.0e-7, 2.0e-3), ("s2", 30, 8.0e-5, 3.0e-7, 2.0e-3)],
    })  # fmt: skip
    names = b_kwargs.pop("names", SEQS)
    b = fake_run(tmp_path / "faceformer", {
        "model": [(n, 20, 4.0e-5, 1.0e-7, 1.2e-3) for n in names],
    }, **b_kwargs)  # fmt: skip
    return a, b


def table_rows(markdown):
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return header, [
        dict(zip(header, [c.strip() for c in line.strip("|").split("|")], strict=True)) for line in lines[2:]
    ]


def test_table_values_units_and_region_columns(tmp_path):
    a, b = two_runs(tmp_path)
    result = write_report([a, b], tmp_path / "out")
    header, rows = table_rows(result.markdown)
    assert header[:7] == ["run", "method", "LVE (x1e-5 m^2)", "LVE-mm (mm)", "FDD (x1e-7 m^2)",
                          "ABS-FDD (x1e-7 m^2)", "MVE (mm)"]  # fmt: skip
    assert header[-2:] == ["regions", "regions sha256"]
    assert [(r["run"], r["method"]) for r in rows] == [("lm", "model"), ("lm", "static_template"),
                                                       ("faceformer", "model")]  # fmt: skip
    lm = rows[0]
    # LVE pooled over frames: (10 * 2e-5 + 30 * 3e-5) / 40 = 2.75e-5; LVE-mm = sqrt(2.75e-5) m in mm
    assert (
        lm["LVE (x1e-5 m^2)"] == "2.7500"
        and lm["LVE-mm (mm)"] == f"{math.sqrt(2.75e-5) * 1000:.3f}" == "5.244"
    )
    assert lm["FDD (x1e-7 m^2)"] == "-1.5000" and lm["ABS-FDD (x1e-7 m^2)"] == "1.5000"
    assert lm["MVE (mm)"] == "1.250" and lm["sequences"] == "2" and lm["frames"] == "40"
    assert rows[2]["LVE (x1e-5 m^2)"] == "4.0000" and rows[2]["FDD (x1e-7 m^2)"] == "+1.0000"
    assert (
        lm["regions"] == "FLAME_masks.pkl [lips / forehead+eye_region]" and lm["regions sha256"] == "a" * 12
    )
    assert lm["dataset"] == "vocaset" and lm["split"] == "test"
    assert result.warnings == ()
    assert (tmp_path / "out" / "report.md").read_text() == result.markdown
    assert SHA_A in result.markdown and str(a) in result.markdown  # full hash and path in the run details


def test_png_box_plot_is_valid(tmp_path):
    from PIL import Image

    a, b = two_runs(tmp_path)
    result = write_report([a, b], tmp_path / "out")
    data = result.plot_path.read_bytes()
    assert result.plot_path.name == "per_sequence.png" and data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(result.plot_path) as image:
        image.verify()
    with Image.open(result.plot_path) as image:
        assert image.format == "PNG" and image.size[0] >= 600 and image.size[1] >= 400
        assert len(set(image.convert("L").getdata())) > 10  # something was drawn


@pytest.mark.parametrize(
    ("b_kwargs", "message"),
    [
        ({"sha": SHA_B}, "different region vertex sets, so LVE and FDD are not comparable"),
        ({"regions": False}, "run faceformer records no region set"),
        ({"split": "val"}, r"different datasets or splits \(lm: vocaset test; faceformer: vocaset val\)"),
        ({"dataset": "biwi"}, "different datasets or splits"),
        (
            {"names": ["s1", "s3", "s4"]},
            r"different test sequences \(lm: 2; faceformer: 3 sequences, 1 in common\)",
        ),
    ],
)
def test_warns_when_runs_are_not_comparable(tmp_path, b_kwargs, message):
    a, b = two_runs(tmp_path, **b_kwargs)
    result = write_report([a, b], tmp_path / "out")
    assert len(result.warnings) == 1
    assert __import__("re").search(message, result.warnings[0]), result.warnings
    assert "## Warnings" in result.markdown


def test_same_folder_names_get_unique_labels(tmp_path):
    a = fake_run(tmp_path / "x" / "run", {"model": [("s1", 5, 1e-5, 0.0, 1e-3)]})
    b = fake_run(tmp_path / "y" / "run", {"model": [("s1", 5, 2e-5, 0.0, 1e-3)]})
    _, rows = table_rows(write_report([a, b], tmp_path / "out").markdown)
    assert [r["run"] for r in rows] == ["x/run", "y/run"]


def test_bad_run_directories_are_named(tmp_path):
    with pytest.raises(ReportError, match="run directory .*nope does not exist"):
        load_run(tmp_path / "nope")
    run = fake_run(tmp_path / "r", {"model": [("s1", 5, 1e-5, 0.0, 1e-3)]})
    (run / "metrics_per_sequence.csv").unlink()
    with pytest.raises(ReportError, match="metrics_per_sequence.csv not found; run `talk test"):
        load_run(run)
    (run / "metrics_per_sequence.csv").write_text("method,name\nmodel,s1\n")
    with pytest.raises(ReportError, match=r"lacks columns \['fdd', 'frames', 'lve', 'mve'\]"):
        load_run(run)
    (run / "metrics.json").write_text("{oops")
    with pytest.raises(ReportError, match="metrics.json is not valid JSON"):
        load_run(run)
    (run / "metrics.json").write_text("{}")
    with pytest.raises(ReportError, match="has no 'metrics' section"):
        load_run(run)


def test_format_metrics_table_is_unchanged():
    table = format_metrics_table({"model": {"lve": 2e-5, "lve_mm": 4.472, "mve": 1e-3, "sequences": 3}})
    assert table.splitlines()[0] == "| method | LVE (x1e-5 m^2) | LVE-mm | MVE (mm) | sequences |"
    assert table.splitlines()[2] == "| model  | 2.0000          | 4.472  | 1.000    | 3         |"


def test_cli_prints_table_and_reports_errors_in_one_line(tmp_path, capsys):
    from talk.cli.main import main

    a, b = two_runs(tmp_path, sha=SHA_B)
    main(["report", str(a), str(b), "--out", str(tmp_path / "out")])
    printed = capsys.readouterr()
    assert "| lm " in printed.out and "2.7500" in printed.out and "report.md" in printed.out
    assert "warning: runs used different region vertex sets" in printed.err
    assert (tmp_path / "out" / "per_sequence.png").is_file()
    (a / "metrics.json").unlink()
    with pytest.raises(SystemExit) as info:
        main(["report", str(a), "--out", str(tmp_path / "out2")])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 1 and len(err) == 1 and err[0].startswith("talk report: error: ")
    assert "metrics.json not found" in err[0]
