"""Commands built from a function's signature and docstring (jsonargparse, as LightningCLI builds its options).

The function is the single statement of a command's options: names, types, defaults and help all come from it.
``--flag-name`` is accepted for ``--flag_name``, and a bare boolean flag (``--stream``) means true, as the
documented commands have always been written.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def normalise_argv(func: Callable[..., Any], argv: list[str]) -> list[str]:
    """``--a-b`` -> ``--a_b`` for the function's parameters; a bare boolean flag gets ``true``."""
    params = inspect.signature(func).parameters
    bools = {name for name, p in params.items() if p.annotation in (bool, "bool")}
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg.startswith("--") and not arg.startswith("---"):
            flag, eq, value = arg[2:].partition("=")
            name = flag.replace("-", "_")
            if name in params:
                arg = f"--{name}{eq}{value}"
                following = argv[i + 1] if i + 1 < len(argv) else None
                if name in bools and not eq and (following is None or following.startswith("--")):
                    out += [arg, "true"]
                    continue
        out.append(arg)
    return out


def run_function(func: Callable[..., Any], argv: list[str], prog: str, description: str) -> Any:
    """Parses ``argv`` into ``func``'s arguments and calls it."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(prog=prog, description=description)
    parser.add_function_arguments(func, as_positional=False)
    ns = parser.parse_args(normalise_argv(func, argv))
    kwargs = {name: ns[name] for name in inspect.signature(func).parameters if name in ns}
    return func(**kwargs)
