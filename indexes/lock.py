"""One process at a time on an embedded index: a lock on DATA_DIR.

Embedded Chroma (`PersistentClient`) is not safe across processes: a process that did not make a
change keeps serving stale vectors (a member forgotten by `python -m app forget` could still be
retrieved by the running bot). So a process that opens the embedded index (the bot, the console,
`index rebuild|update`, `forget`, `backfill`) holds DATA_DIR's lock for as long as it runs, and a
second one is refused with a message naming the holder and what to do instead. With a Chroma
server (CHROMA_HOST) several processes may share the index, and no lock is taken. The operating
system releases the lock when its holder ends, even killed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from filelock import FileLock, Timeout

from errors import UserError
from indexes.disk import disk_errors

LOCK_NAME = ".data.lock"
HOLDER_NAME = ".data.lock.json"


class DataDirBusy(UserError, RuntimeError):
    """Another process holds DATA_DIR; the message names it and what to do instead."""


class DataLock:
    """DATA_DIR's lock, held by this process until `release()` (or its end)."""

    def __init__(self, data_dir: Path, role: str) -> None:
        self.data_dir, self.role = data_dir, role
        self._lock = FileLock(str(data_dir / LOCK_NAME))

    def acquire(self) -> DataLock:
        """Take the lock; DataDirBusy if another process holds it, StorageError if DATA_DIR cannot be written."""
        with disk_errors(self.data_dir):
            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                self._lock.acquire(timeout=0)
            except Timeout:
                raise DataDirBusy(self._refusal()) from None
            holder = {"role": self.role, "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
            try:
                (self.data_dir / HOLDER_NAME).write_text(json.dumps(holder), encoding="utf-8")
            except BaseException:
                self._lock.release(force=True)
                raise
        return self

    def release(self) -> None:
        if self._lock.is_locked:
            (self.data_dir / HOLDER_NAME).unlink(missing_ok=True)
            self._lock.release(force=True)

    def _refusal(self) -> str:
        try:
            holder = json.loads((self.data_dir / HOLDER_NAME).read_text(encoding="utf-8"))
            who = f"{holder['role']} (pid {holder['pid']}, since {holder['since']})"
        except (OSError, ValueError, KeyError):
            who = "another process"
        advice = (
            "stop the bot first, or do it from Discord (!forgetme for forgetting)"
            if who.startswith("the bot")
            else "wait for it to finish, or stop it"
        )
        return (
            f"{who} is using DATA_DIR={self.data_dir} with the embedded lore index, which two processes cannot share; "
            f"{advice}. To run both at once, use a Chroma server (CHROMA_HOST)."
        )


def hold_data_dir(data_dir: Path, shared_index: bool, role: str) -> DataLock | None:
    """Take DATA_DIR's lock when the index is embedded (None when `shared_index`, on a Chroma server); DataDirBusy
    if another process holds it. `role` names this process in the refusal another one gets ("the bot")."""
    if shared_index:
        return None
    return DataLock(data_dir, role).acquire()
