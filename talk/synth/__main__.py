"""``python -m talk.synth OUT_DIR [options]``: the same as ``talk data synth --out OUT_DIR [options]``."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    """Forwards to ``talk data synth`` (one parser, one set of options)."""
    import sys

    from talk.cli.main import main as talk_main

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        talk_main(["data", "synth", *argv])  # prints the usage error for a missing OUT_DIR
        return
    talk_main(["data", "synth", "--out", argv[0], *argv[1:]])


if __name__ == "__main__":
    main()
