"""``python -m talk.data.synthetic OUT_DIR [--speakers N] [--sentences M] [--seed S] [--workers W]``."""

from __future__ import annotations

import argparse

from talk.data.synthetic.writer import synthesize_dataset


def main(argv: list[str] | None = None) -> None:
    """Parses the command line and writes the dataset, then prints a one-line summary."""
    parser = argparse.ArgumentParser(prog="python -m talk.data.synthetic", description=__doc__)
    parser.add_argument("out_dir", help="dataset root to write")
    parser.add_argument("--speakers", type=int, default=10)
    parser.add_argument("--sentences", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample-rate", type=int, default=16000)
    args = parser.parse_args(argv)
    s = synthesize_dataset(
        args.out_dir,
        speakers=args.speakers,
        sentences=args.sentences,
        seed=args.seed,
        workers=args.workers,
        sample_rate=args.sample_rate,
    )
    print(
        f"wrote {s.n_sequences} sequences ({s.total_seconds:.1f} s of speech, {len(s.subjects)} speakers, "
        f"{s.total_bytes / 1e6:.1f} MB) to {s.out_dir} in {s.elapsed_seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
