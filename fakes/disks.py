"""Disks that fail: a full one for a folder, and a read-only one, for tests and the fault benchmark.

A full disk is a real one where the machine allows it: a small tmpfs mounted over the folder
(root with the right to mount), holding a copy of what the folder held; writes then fail with
ENOSPC as on any full disk. Elsewhere the child process gets a file size limit instead
(RLIMIT_FSIZE: writes fail with EFBIG). A read-only folder is one whose file modes forbid writing,
to a process that cannot override them (root drops that power through setpriv).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


PAGE = 4096


def _used(folder: Path) -> int:
    """What the folder's files and folders take on a tmpfs: whole pages each, not their apparent sizes."""
    pages = 0
    for path in folder.rglob("*"):
        size = path.stat().st_size if path.is_file() else 0
        pages += max(1, -(-size // PAGE))
    return (pages + 1) * PAGE


def _mount(folder: Path, size: int) -> bool:
    command = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)]
    try:
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    except OSError:
        return False


@contextmanager
def full_disk(folder: Path, headroom: int) -> Iterator[int | None]:
    """`folder` on a disk with about `headroom` bytes free while inside.

    Yields None when it is a real small disk (a tmpfs), else the file size limit to give the child
    process (`limiting(bytes)` as its preexec_fn). What is written there is gone afterwards.
    """
    size = _used(folder) + headroom
    with tempfile.TemporaryDirectory() as saved:
        copy = Path(saved) / "copy"
        shutil.copytree(folder, copy)
        if os.geteuid() != 0 or not _mount(folder, size):
            yield max(p.stat().st_size for p in folder.rglob("*") if p.is_file()) + headroom
            return
        try:
            shutil.copytree(copy, folder, dirs_exist_ok=True)
            yield None
        finally:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def limiting(limit_bytes: int | None):
    """A preexec_fn: files the child writes cannot grow past `limit_bytes` (EFBIG, like a full disk)."""

    def limit() -> None:
        if limit_bytes:
            import resource

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return limit


@contextmanager
def read_only(folder: Path) -> Iterator[list[str]]:
    """`folder` and everything in it read-only while inside; yields the prefix a child command needs."""
    modes = {path: path.stat().st_mode for path in [folder, *folder.rglob("*")]}
    for path in modes:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield NO_OVERRIDE if os.geteuid() == 0 else []
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
