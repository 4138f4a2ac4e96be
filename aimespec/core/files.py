"""Output paths checked before any work starts, and atomic writes that never replace what is not a file.

An atomic save writes a temporary file beside the target and renames it into place. As root,
that rename replaces *anything* at the path (a device, a FIFO): so every target is checked
first, when the command starts (`output_file`, `output_folder`) and again right before the
rename (`replace_into`). A folder that cannot be written is found by writing a probe file in it,
which also catches read-only mounts where `os.access` says yes.
"""

import errno
import os
import stat
import tempfile
from pathlib import Path

from aimespec.core.errors import UsageError

NOT_A_FILE = "{path} is {kind}, not a regular file: give a file path for {what}"
NOT_A_FOLDER = "{path} is {kind}, not a folder: give a folder path for {what}"
CANNOT_WRITE = "cannot write {what} in {folder} ({reason}): choose a folder you can write to"


class OutputError(UsageError):
    """An output path that cannot be written (exit 2), said before any work starts."""


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def _mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode  # follows a symlink: what a write would reach
    except (FileNotFoundError, NotADirectoryError):  # absent (a file above it is found by the caller)
        return None
    except OSError as exc:
        raise OutputError(f"cannot inspect {path} ({exc.strerror or exc})") from None


def _existing_ancestor(folder: Path, what: str) -> Path:
    """The nearest folder at or above `folder` that exists (it must be a folder)."""
    probe = folder
    while True:
        mode = _mode(probe)
        if mode is not None:
            if not stat.S_ISDIR(mode):
                raise OutputError(NOT_A_FOLDER.format(path=probe, kind=kind_of(mode), what=what))
            return probe
        if probe.parent == probe:
            return probe
        probe = probe.parent


def _probe_write(folder: Path, what: str) -> None:
    try:
        fd, name = tempfile.mkstemp(prefix=".aimespec-probe-", dir=folder)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OutputError(CANNOT_WRITE.format(what=what, folder=folder, reason=reason)) from None
    os.close(fd)
    os.unlink(name)


def output_file(path: str | os.PathLike[str], what: str = "the output") -> Path:
    """Check that `path` can be written as a regular file: it is one or absent, and its folder is writable.

    Raises `OutputError` (exit 2) naming the problem. Creates nothing that stays.
    """
    target = Path(path)
    mode = _mode(target)
    if mode is not None and not stat.S_ISREG(mode):
        raise OutputError(NOT_A_FILE.format(path=target, kind=kind_of(mode), what=what))
    folder = target.resolve().parent if mode is not None else target.parent
    _probe_write(_existing_ancestor(folder, what), what)
    return target


def output_folder(path: str | os.PathLike[str], what: str = "the output", files: tuple[str, ...] = ()) -> Path:
    """Check that `path` is (or can become) a writable folder whose `files` are regular files or absent."""
    folder = Path(path)
    mode = _mode(folder)
    if mode is not None and not stat.S_ISDIR(mode):
        raise OutputError(NOT_A_FOLDER.format(path=folder, kind=kind_of(mode), what=what))
    for name in files:
        inner = _mode(folder / name)
        if inner is not None and not stat.S_ISREG(inner):
            raise OutputError(NOT_A_FILE.format(path=folder / name, kind=kind_of(inner), what=what))
    _probe_write(_existing_ancestor(folder, what), what)
    return folder


def replace_into(tmp: str | os.PathLike[str], target: str | os.PathLike[str], what: str = "the output") -> None:
    """Rename `tmp` over `target`, unless `target` is something other than a regular file (a device, a folder).

    A symlink to a regular file is followed: the file it points to is replaced, the link kept.
    """
    path = Path(target)
    if path.is_symlink():
        path = path.resolve()
    mode = _mode(path)
    if mode is not None and not stat.S_ISREG(mode):
        raise OutputError(NOT_A_FILE.format(path=target, kind=kind_of(mode), what=what))
    os.replace(tmp, path)


def disk_reason(exc: OSError) -> str:
    """An OSError in words: 'No space left on device', 'Read-only file system', ..."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    return exc.strerror or str(exc)


__all__ = ["OutputError", "disk_reason", "kind_of", "output_file", "output_folder", "replace_into"]
