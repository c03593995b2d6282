"""A disk that cannot be written (full, read-only, failing), said as what to do: StorageError.

SQLite, Chroma and the OS each word it their own way ("database or disk is full", "attempt to write
a readonly database", ENOSPC, EROFS); `disk_errors(where)` turns any of them into one StorageError
that names the place and what to do, for the entry points to print without a traceback.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from errors import UserError


class StorageError(UserError, RuntimeError):
    """DATA_DIR cannot be written (a full disk, a read-only folder); what was being written was not."""


def storage_error(exc: BaseException, path: Path | str) -> StorageError | None:
    """The error a full or read-only disk raised, as a StorageError that says what to do; None for others."""
    text = str(exc).lower()
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC or "disk is full" in text or "no space left" in text:
        problem = "the disk is full: free some space"
    elif code == errno.EFBIG or "file too large" in text:
        problem = "a file cannot grow (the disk is full, or a file size limit): free some space or lift the limit"
    elif code in (errno.EROFS, errno.EACCES, errno.EPERM) or "readonly" in text or "read-only" in text:
        problem = "it is read-only for this process: make it writable, or set DATA_DIR to a writable folder"
    elif "disk i/o error" in text:
        problem = "writing failed (the disk is full or failing, or a file size limit was reached)"
    elif "unable to open database" in text:
        problem = "it cannot be opened (permissions, or a missing folder)"
    else:
        return None
    error = StorageError(
        f"cannot write {path}: {problem}, then run it again. What was being written was not "
        f"(the store and the index stay as they were; pending index work resumes). ({exc})"
    )
    error.__cause__ = exc
    return error


@contextmanager
def disk_errors(location: Path | str) -> Iterator[None]:
    """The errors a full or read-only disk raises (SQLite's, Chroma's, the OS's) as StorageError."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        error = storage_error(exc, location)
        if error is None:
            raise
        raise error from exc
