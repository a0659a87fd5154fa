"""Commands built from a function's signature and docstring (jsonargparse, as LightningCLI builds its options), and
jsonargparse's errors in one line for every talk command.

The function is the single statement of a command's options: names, types, defaults and help all come from it.
``--flag-name`` is accepted for ``--flag_name``, and a bare boolean flag (``--stream``) means true, as the
documented commands have always been written.

jsonargparse answers a mistake with the whole usage (fifty lines for ``talk fit``) before a multi-line message;
:class:`OneLineErrors` prints ``talk fit: error: <the line that matters>`` and where to find the options instead.
The commands still on plain argparse (``talk data``, ``talk report``) use :class:`OneLineArgumentParser`, which
answers in the same two lines.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
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

    class Parser(OneLineErrors, ArgumentParser):
        pass

    parser = Parser(prog=prog, description=description)
    parser.add_function_arguments(func, as_positional=False)
    ns = parser.parse_args(normalise_argv(func, argv))
    kwargs = {name: ns[name] for name in inspect.signature(func).parameters if name in ns}
    return func(**kwargs)


class OneLineErrors:
    """Mixin of a jsonargparse ``ArgumentParser``: a mistake prints two lines, ``<prog>: error: <summary>`` (see
    :func:`summarise_parse_error`) and ``(<prog> --help for the options)``, and exits with code 2. With
    ``exit_on_error=False`` or ``JSONARGPARSE_DEBUG`` set it raises jsonargparse's full message as before."""

    def error(self, message: str, ex: Exception | None = None) -> Any:
        from jsonargparse._common import debug_mode_active

        if not self.exit_on_error or debug_mode_active():
            return super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        command = sys.argv[1] if len(sys.argv) > 1 else ""
        if " " not in prog and command and not command.startswith("-"):
            prog = f"{prog} {command}"  # an error of the root parser of `talk fit|validate|test|predict`
        summary = summarise_parse_error(message, sys.argv[1:], parser)
        sys.stderr.write(f"{prog}: error: {summary}\n({prog} --help for the options)\n")
        self.exit(2)


class OneLineArgumentParser(argparse.ArgumentParser):
    """A plain ``argparse`` parser whose mistakes print the two lines every other talk command prints,
    ``<prog>: error: <message>[; did you mean ...?]`` and ``(<prog> --help for the options)``, and exit with code
    2, instead of the usage before the message. Subparsers (``add_subparsers``) are of the same class, and an
    unknown option is reported by the subcommand that was chosen (``talk data synth: error: unrecognized
    arguments: --outt; did you mean '--out'?``), with its options as the suggestions."""

    def parse_known_args(
        self, args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        # kept for the hint when a required option is missing (often because it is misspelt)
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self._chosen(parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def error(self, message: str) -> Any:
        prog = self.prog
        sys.stderr.write(f"{prog}: error: {self._summary(message)}\n({prog} --help for the options)\n")
        self.exit(2)

    def _subcommands(self) -> list[argparse._SubParsersAction]:
        return [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]

    def _chosen(self, parsed: argparse.Namespace) -> OneLineArgumentParser:
        """The deepest subcommand parser that ``parsed`` chose (``self`` without subcommands)."""
        for action in self._subcommands():
            sub = action.choices.get(getattr(parsed, action.dest, None) or "")
            if isinstance(sub, OneLineArgumentParser):
                return sub._chosen(parsed)
        return self

    def _summary(self, message: str) -> str:
        """argparse's message with ``; did you mean '--out'?`` for a misspelt option or subcommand, or the
        subcommands to choose from when none was given."""
        for action in self._subcommands():
            names = list(action.choices)
            either = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
            if message == f"the following arguments are required: {action.dest}":
                return f"a subcommand is required: {either}"
            if message.startswith(f"argument {action.dest}: invalid choice: "):
                given = re.search(r"invalid choice: '([^']*)'", message)
                given = given[1] if given else ""
                close = difflib.get_close_matches(given, names, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else f"choose {either}"
                return f"unknown subcommand '{given}'; {hint}"
        options = [o for o in self._option_string_actions if o.startswith("--")]
        if match := re.match(r"unrecognized arguments: (\S+)", message):
            close = difflib.get_close_matches(match[1].partition("=")[0], options, n=1, cutoff=0.6)
            return message + (f"; did you mean '{close[0]}'?" if close else "")
        if message.startswith("the following arguments are required: "):  # often a misspelt required option
            for arg in getattr(self, "_given", []):
                flag = arg.partition("=")[0]
                if flag.startswith("--") and flag not in options:
                    close = difflib.get_close_matches(flag, options, n=1, cutoff=0.6)
                    if close and close[0] in message:
                        return f"unrecognized arguments: {flag}; did you mean '{close[0]}'?"
        return message


# Lines of a jsonargparse message that only repeat the structure of the type (a Union with None, ...).
_NOISE = re.compile(
    r"^-?\s*(Does not validate against any of the Union subtypes|Subtypes:|Errors:|Given value type:"
    r"|Expected a <class 'NoneType'>|Expected a path but .* either not accessible or invalid)"
)


def summarise_parse_error(message: str, argv: list[str], parser: Any = None) -> str:
    """The line that matters of a jsonargparse error message, with where it comes from and a suggestion.

    Args:
        message: jsonargparse's (multi-line) message.
        argv: The command line after ``talk`` (its ``-c`` files are searched for the offending key or YAML).
        parser: The subcommand's parser (its options are the suggestions for an unknown one).

    Returns:
        One line: ``--trainer.max_epochs: expected int, got 'abc'``, ``x.yaml line 3: mapping values are not
        allowed here``, ``Subcommand 'fit' does not accept option 'trainer.max_epohcs' (x.yaml line 2); did you
        mean 'trainer.max_epochs'?``.
    """
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()] or ["invalid arguments"]
    configs = _config_files(argv, parser)
    if '"<unicode string>"' in message:  # a YAML syntax error: name the file and line yaml reports
        import yaml

        for path in configs:
            try:
                yaml.safe_load(Path(path).read_text())
            except (OSError, UnicodeDecodeError):
                continue
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                where = f" line {mark.line + 1}" if mark is not None else ""
                return f"{path}{where}: {getattr(err, 'problem', None) or err}"
        return lines[0].replace("Problems parsing config: ", "invalid YAML: ")
    if lines[0].startswith("Unexpected config:"):  # a -c file that is not a mapping of options
        return _not_a_mapping(configs)
    key, cls, given, detail = "", "", "", ""
    for line in lines:
        if match := re.match(r'-?\s*Parser key "([^"]+)":\s*(.*)', line):
            key = f"{key}.init_args.{match[1]}" if cls else match[1]
            detail = match[2] or detail
        elif match := re.match(r"-?\s*Problem with given class_path '([^']+)':", line):
            cls = match[1]
        elif line.startswith("Given value:"):
            given = line.partition(":")[2].strip()
        elif not _NOISE.match(line):
            detail = line.lstrip("- ")  # the innermost reason is the last one given
    if key == "config" and detail.startswith("File does not exist"):
        return f"config file {detail.partition(':')[2].strip()} does not exist; check the path given with -c"
    if key == "config" and detail.startswith("Path is not a file"):
        folder = detail.partition(":")[2].strip().strip("'")
        example = next(iter(sorted(Path(folder).glob("*.yaml"))), Path(folder) / "config.yaml")
        return f"config file {folder} is a directory; pass a YAML file with -c, such as {example}"
    detail = re.sub(r"<class '([\w.]+)'>", r"\1", detail).replace("Expected a ", "expected ")
    detail = re.sub(r"\. Got value: (.*)$", r", got '\1'", detail)
    if (
        given
        and detail.startswith("expected")
        and "Got value" not in detail
        and not given.startswith("NestedArg(")
    ):
        detail += f", got {given!r}"
    # where in the -c files an unknown key is written
    if unknown := re.search(r"[Oo]ption '([\w.]+)'", detail):
        detail += _locate(unknown[1].rpartition(".")[2], configs)
    detail += _suggestion(detail, cls, parser)
    where = f"--{key} ({cls})" if cls else f"--{key}" if key else ""
    return f"{where}: {detail}" if where else detail


def _not_a_mapping(configs: list[str]) -> str:
    """The message for a ``-c`` file whose YAML is not a mapping (empty, a list, a bare word)."""
    import yaml

    for path in configs:
        try:
            content = yaml.safe_load(Path(path).read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if not isinstance(content, dict):
            what = "empty" if content is None else f"a YAML {type(content).__name__}, not a mapping"
            return (f"config file {path} is {what}; a config maps sections (trainer:, model:, data:) to their "
                    "options, as the files in experiments/ do")  # fmt: skip
    return "a config file is not a YAML mapping of options; see the files in experiments/"


def _config_files(argv: list[str], parser: Any) -> list[str]:
    """The files given with ``-c`` / ``--config`` (in order), then the parser's default config files."""
    import glob

    files = []
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if flag in ("-c", "--config"):
            files.append(value if eq else (argv[i + 1] if i + 1 < len(argv) else ""))
    defaults = getattr(parser, "default_config_files", None) or []
    return files + [path for pattern in defaults for path in sorted(glob.glob(pattern))]


def _suggestion(detail: str, cls: str, parser: Any) -> str:
    """``; did you mean 'd_model'?`` for an unknown option of a class or of the subcommand's parser."""
    unknown = re.search(r"[Oo]ption '([\w.]+)'|unrecognized arguments: (--[\w.]+)", detail)
    if not unknown:
        return ""
    candidates: list[str] = []
    if cls and unknown[1]:
        try:
            module, _, name = cls.rpartition(".")
            candidates = list(inspect.signature(getattr(importlib.import_module(module), name)).parameters)
        except (ImportError, AttributeError, ValueError, TypeError):
            pass
    elif parser is not None:
        candidates = [o for o in getattr(parser, "_option_string_actions", {}) if o.startswith("--")]
        if unknown[1]:
            candidates = [o[2:] for o in candidates]
    name = (unknown[1] or unknown[2]).rpartition(".")[2] if cls else unknown[1] or unknown[2]
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    return f"; did you mean '{close[0]}'?" if close else ""


def _locate(key: str, files: list[str]) -> str:
    """`` (x.yaml line 4)``: the first of ``files`` that writes ``key:``, or nothing."""
    pattern = re.compile(rf"^\s*(- )?{re.escape(key)}\s*:")
    for path in files:
        try:
            text = Path(path).read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for number, line in enumerate(text, 1):
            if pattern.match(line):
                return f" ({path} line {number})"
    return ""
