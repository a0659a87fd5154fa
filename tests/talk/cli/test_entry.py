"""The ``talk`` console script's own exit (``talk.cli.main.run``), in fresh processes as a shell starts it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tests.talk.clitools import ENV, ROOT, talk

# `run` with `main` replaced: prints its own line, and an atexit handler prints another
SNIPPET = """
import atexit, sys
import talk.cli.main as cli
atexit.register(lambda: print("atexit ran", flush=True))
def main():
    print("main ran")
    if {fail!r}:
        sys.exit(1)
cli.main = main
sys.argv = ["talk", {command!r}]
cli.run()
print("after run")
"""


@pytest.mark.parametrize(
    ("command", "fail", "code"), [("animate", False, 0), ("animate", True, 1), ("fit", False, 0)]
)
def test_run_skips_teardown_only_after_a_quick_exit_command_succeeds(command, fail, code):
    proc = subprocess.run(
        [sys.executable, "-c", SNIPPET.format(command=command, fail=fail)], cwd=ROOT, env=ENV, capture_output=True,
        text=True,
    )  # fmt: skip
    assert proc.returncode == code, proc.stderr
    lines = proc.stdout.splitlines()
    assert (
        lines[0] == "main ran" and lines[-1] == "atexit ran"
    )  # stdout flushed and atexit handlers run either way
    # the interpreter's exit is skipped after a quick command's success, so nothing runs after `run`
    assert ("after run" in lines) == (command == "fit")


def test_animate_from_a_fresh_process_writes_the_whole_video_and_nothing_else(tmp_path):
    # the shipped model, drawn by the render process and ended by os._exit: the mp4 is complete
    from render import probe_video

    t = np.arange(16000) / 16000.0
    sf.write(
        tmp_path / "speech.wav", (0.3 * np.sin(2 * np.pi * 220 * t) * (t > 0.3)).astype(np.float32), 16000
    )
    proc = talk("animate", "--audio", "speech.wav", "--size", "64", cwd=tmp_path, fresh=True)
    assert "wrote speech.mp4 (30 frames" in proc.stdout and proc.stderr == ""
    info = probe_video(tmp_path / "speech.mp4")
    assert info.n_frames == 30 and info.video_codec == "h264" and info.audio_codec == "aac"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "speech.mp4",
        "speech.wav",
    ]  # no temporary file left


def test_run_waits_for_a_non_daemon_thread_instead_of_killing_it():
    snippet = (
        "import sys, threading, time\nimport talk.cli.main as cli\n"
        "def late():\n    time.sleep(0.3)\n    print('thread done', flush=True)\n"
        "cli.main = lambda: threading.Thread(target=late).start()\n"
        "sys.argv = ['talk', 'animate']\ncli.run()\n"
    )
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.splitlines() == ["thread done"], proc.stderr
