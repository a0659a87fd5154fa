"""talk.files: atomic writes leave the old file or the whole new one, never a part, and no temporary file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from talk.files import (
    atomic_write,
    commit_temp,
    temp_beside,
    write_atomic,
    write_bytes_atomic,
    write_text_atomic,
)


def test_writes_create_folders_and_replace(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "x.bin"
    assert write_bytes_atomic(target, b"one") == target and target.read_bytes() == b"one"
    write_bytes_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    write_text_atomic(tmp_path / "t.json", '{"k": 1}\n', encoding="utf-8")
    assert (tmp_path / "t.json").read_text(encoding="utf-8") == '{"k": 1}\n'
    rows = np.arange(6, dtype=np.float32).reshape(2, 3)
    write_atomic(tmp_path / "r.npy", lambda f: np.save(f, rows))
    assert np.array_equal(np.load(tmp_path / "r.npy"), rows)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["r.npy", "t.json", "x.bin"]


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as f:
        f.write(b"partial")
        raise KeyboardInterrupt  # killed mid-write
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_permissions_follow_the_umask_like_a_plain_open(tmp_path: Path) -> None:
    if os.name != "posix":
        pytest.skip("POSIX permission bits")
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    write_bytes_atomic(tmp_path / "atomic", b"")
    assert stat.S_IMODE((tmp_path / "atomic").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_temp_beside_and_commit(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "video.mp4"
    tmp = temp_beside(target, suffix=".video.mp4")
    assert (
        tmp.parent == target.parent and tmp.name.startswith(".video.mp4.") and tmp.name.endswith(".video.mp4")
    )
    tmp.write_bytes(b"frames")
    assert commit_temp(tmp, target) == target and target.read_bytes() == b"frames" and not tmp.exists()


def test_suffix_names_the_temporary_file(tmp_path: Path) -> None:
    seen = []
    write_atomic(
        tmp_path / "a.npy", lambda f: seen.extend(p.name for p in tmp_path.iterdir()), suffix=".partial"
    )
    assert seen[0].startswith(".a.npy.") and seen[0].endswith(".partial")
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_bad_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"), atomic_write(tmp_path / "x", mode="ab"):
        pass
