"""Writing files that may hold secrets, or that someone else could try to redirect.

Every write goes to a fresh temporary file made by :func:`tempfile.mkstemp` in the target's
own directory (an unpredictable name, created with ``O_CREAT | O_EXCL``, which opens no file
or symlink planted there, as ``O_NOFOLLOW`` would not either), readable by its owner only from
the first byte, and is then renamed over the target with :func:`os.replace`: a symlink planted
at the target is replaced, never followed, and a reader sees the old file or the new one,
never half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str, *, mode: int = 0o600) -> None:
    """Create or replace ``path`` with ``text`` (mode ``mode``), atomically, following no symlink."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_private(path: Path, text: str) -> None:
    """Create (or replace) ``path`` readable by its owner only, before any byte is written.

    A symlink at ``path`` is replaced by the file, never written through.
    """
    write_atomic(path, text, mode=0o600)
