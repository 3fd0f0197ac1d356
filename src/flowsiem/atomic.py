"""Outputs written atomically: a run killed at any moment leaves the previous complete file or
the new complete one, never a truncated file that looks like a result.

The new content goes to a hidden temporary file in the same directory (same file system, so the
final rename is atomic), is flushed to disk, then renamed over the old one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def replacing(path: Path):
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _mode_for(path))  # mkstemp makes 0600; outputs keep the usual permissions
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:  # on disk before the rename, so a crash cannot expose an empty file
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def open_replacing(path: Path, mode: str = "w", **kwargs):
    """`open(path, mode)` whose content appears at `path` only once the block completes."""
    with replacing(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


def write_text(path: Path, text: str) -> None:
    with open_replacing(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def _mode_for(path: Path) -> int:
    """The replaced file's permissions, or what a plain open() would give a new file (umask)."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
