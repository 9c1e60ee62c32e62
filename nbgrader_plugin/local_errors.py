"""What a failure of the user's own file system means for them, and what to do about it: a full
disk or a used-up quota (common on JupyterHub's small home volumes), a folder they may not write,
a read-only mount. Network failures never reach here: the client turns them into
``ExchangeClientError``."""

from __future__ import annotations

import errno
import os


def free_space(cache: str | None) -> str:
    """What to do about a full disk (``cache``: where a student's submission copies are)."""
    examples = (
        f" (old assignment folders, or the copies of your submissions nbgrader keeps in {cache})"
        if cache
        else ""
    )
    return (
        f"Delete files you no longer need{examples}, or ask your administrator for more space, "
        "then try again."
    )


def describe(exc: OSError, cache: str | None = None) -> str:
    """A sentence or two for ``exc``: what happened to which file, and what to do next
    (``cache``, for a student's command, is named among what may be deleted)."""
    where = f" {exc.filename}" if exc.filename else ""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        full = "the disk is full"
    elif exc.errno == errno.EDQUOT:
        full = "your disk quota is used up"
    else:
        full = ""
    if full:
        return f"{full}: there was no room to write{where} ({reason}). {free_space(cache)}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (
            f"permission was refused for{where or ' a local file'} ({reason}). Check that you "
            "own that file or folder, or run the command in a folder you own, then try again."
        )
    blocker = _in_the_way(exc) if exc.errno in _IN_THE_WAY else None
    if blocker:
        path, kind = blocker
        needed = "" if exc.errno == errno.EEXIST else " where a folder is needed"
        return f"{path} is {kind}{needed} ({reason}). Move or rename it, then try again."
    if exc.errno == errno.EROFS:
        return (
            f"{where.strip() or 'the folder'} is on a read-only file system ({reason}). Run the "
            "command in a folder you can write, then try again."
        )
    what = where.strip() or "a local file"
    return f"{what} could not be used ({reason}). Check it, then try again."


# What a file where a folder should be gives: mkdir over it, a path through it, a rename onto it.
_IN_THE_WAY = frozenset({errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY})


def _in_the_way(exc: OSError) -> tuple[str, str] | None:
    """What is in the way, and what it is ("a file", "a symbolic link"): at the failed path
    (for a rename, the path it went to, ``filename2``: the source is the plugin's own temporary
    folder), or a parent that is not a folder. None when nothing there is in the way."""
    target = exc.filename2 or exc.filename
    if not isinstance(target, str) or not target:
        return None
    path = os.path.abspath(target)
    if os.path.islink(path):  # even one to a folder: a rename does not go through it
        return path, "a symbolic link"
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    if os.path.isdir(path):
        return None
    return path, "a symbolic link" if os.path.islink(path) else "a file"
