"""Checks of the paths and values a user gives a ``talk`` command, made before any work, each failing with one
``UserError`` line that names the argument and the fix."""

from __future__ import annotations

import os
from pathlib import Path

from talk.errors import UserError

TALK_PACKAGES = ("audio", "motion", "render", "talk")


def check_run_dir(run_dir: Path) -> None:
    """Raises a one-line ``UserError`` when ``run_dir`` (``trainer.default_root_dir``) cannot be the run's folder:
    it, or a folder above it, is a file, or the nearest existing folder is not writable."""
    for path in [run_dir, *run_dir.parents]:
        if not path.exists():
            continue
        if not path.is_dir():
            where = "is a file" if path == run_dir else f"is under {path}, a file"
            raise UserError(f"trainer.default_root_dir {run_dir} {where}; name a folder for the run's outputs "
                            "(checkpoints, logs, metrics).")  # fmt: skip
        if not os.access(path, os.W_OK):
            raise UserError(
                f"trainer.default_root_dir {run_dir}: cannot write in {path}; choose a writable folder."
            )
        return


def constructor_error(exc: BaseException) -> Exception | None:
    """The user-facing error inside a chain of wrapped exceptions, or None: the first ``UserError``, else the
    innermost ``ValueError`` raised by talk's own code (a constructor's check of its arguments)."""
    found = None
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, UserError):
            return cur
        tb = cur.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        module = str(tb.tb_frame.f_globals.get("__name__", "")) if tb is not None else ""
        if isinstance(cur, ValueError) and module.partition(".")[0] in TALK_PACKAGES and str(cur).strip():
            found = cur
        cur = cur.__cause__ or cur.__context__
    return found


def check_output_file(output: Path, overwrite: bool, example: str = "model.pt") -> None:
    """Raises a one-line ``UserError`` when ``output`` cannot be written as a new file: it is a directory (the
    message suggests ``output / example``), it exists and ``overwrite`` is not set, a folder above it is a file, or
    the nearest existing folder is not writable."""
    if output.is_dir():
        raise UserError(f"output {output} is a directory; name a file such as {output / example}.")
    if output.exists() and not overwrite:
        raise UserError(f"output {output} exists; pass --overwrite to replace it.")
    for folder in output.parents:
        if folder.exists():
            if not folder.is_dir():
                raise UserError(f"output {output}: {folder} is a file, not a directory.")
            if not os.access(folder, os.W_OK):
                raise UserError(f"output {output}: cannot write in {folder}; choose a writable directory.")
            return
