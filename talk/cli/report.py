"""``talk report RUN_DIR [RUN_DIR ...] [--out DIR]``: compares `talk test` runs side by side."""

from __future__ import annotations

import sys

from talk.cli.signature import OneLineArgumentParser


def report_command(argv: list[str]) -> None:
    """Parses the arguments, writes ``report.md`` and the per-sequence box plot, prints the table."""
    parser = OneLineArgumentParser(
        prog="talk report",
        description="Compare `talk test` runs: a markdown table of every metric (with units, dataset, split, "
        "region set and its sha256) and a PNG box plot of per-sequence LVE and MVE. Warns when the runs used "
        "different region sets, datasets, splits or test sequences.",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="folders holding metrics.json")
    parser.add_argument(
        "--out", default="report", help="output folder for report.md and the plot (default report)"
    )
    args = parser.parse_args(argv)
    from talk.report import write_report

    result = write_report(args.run_dirs, args.out)
    print(result.markdown.split("\n## Runs")[0].strip())
    for note in result.warnings:
        print(f"warning: {note}", file=sys.stderr)
    print(f"\nreport: {result.report_path}\nplot: {result.plot_path}")
