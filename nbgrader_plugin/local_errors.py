"""What a failure of the user's own file system means for them, and what to do about it: a full
disk or a used-up quota (common on JupyterHub's small home volumes), a folder they may not write,
a read-only mount. Network failures never reach here: the client turns them into
``ExchangeClientError``."""

from __future__ import annotations

import errno


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
    if exc.errno == errno.EROFS:
        return (
            f"{where.strip() or 'the folder'} is on a read-only file system ({reason}). Run the "
            "command in a folder you can write, then try again."
        )
    what = where.strip() or "a local file"
    return f"{what} could not be used ({reason}). Check it, then try again."
