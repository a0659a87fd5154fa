"""A fork server for the CLI tests: `talk` commands in fresh processes without paying the imports each time.

Every `talk fit|test|animate ...` of the tests used to be a new ``python -m talk.cli.main`` that imports torch,
Lightning, jsonargparse and transformers again (several seconds of CPU each, dozens of times per suite). This
server imports them once and then forks a child per command: the child is a fresh process in every way that the
tests observe (its own working directory, environment, exit code, stdout and stderr files, module state as right
after import), so a command behaves as it does from a shell. The server never computes anything before forking
(no torch op, no thread pool), which keeps ``fork`` safe.

Protocol: one JSON request per line on stdin ``{"args", "cwd", "env", "stdout", "stderr"}``; one JSON answer per
line on stdout ``{"code"}`` once the child has exited.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def _warm_imports() -> None:
    import jsonargparse  # noqa: F401
    import lightning.pytorch  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import Wav2Vec2Model  # noqa: F401  (resolves the lazy module)

    import talk.cli.lightning_cli  # noqa: F401
    import talk.cli.main  # noqa: F401
    import talk.data  # noqa: F401
    import talk.training  # noqa: F401


def _child(request: dict) -> int:
    """Runs one command in the forked child; its exit code."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    # fd 0 is the server's request pipe: a tool the command starts (ffmpeg reads its stdin) must not drain it
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    from talk.cli import main as cli

    sys.argv = [cli.__file__, *request["args"]]
    try:
        cli.main(list(request["args"]))
        return 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:  # as the interpreter does for an uncaught exception
        traceback.print_exc()
        return 1


def serve() -> None:
    _warm_imports()
    answers = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(request)
            finally:
                import atexit

                atexit._run_exitfuncs()  # what interpreter exit runs (e.g. an offline wandb run's finish)
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        answers.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
        answers.flush()


if __name__ == "__main__":
    serve()
