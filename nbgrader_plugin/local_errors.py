"""What a failure of the user's own file system means for them, and what to do about it: a full
disk or a used-up quota (common on JupyterHub's small home volumes), a folder they may not write,
a read-only mount. Network failures never reach here: the client turns them into
``ExchangeClientError``."""

from __future__ import annotations

import errno

FREE_SPACE = (
    "Delete files you no longer need (old assignment folders, or the cache of your submissions "
    "in ~/.local/share/jupyter/nbgrader_cache), or ask your administrator for more space, then "
    "try again."
)


def describe(exc: OSError) -> str:
    """A sentence or two for ``exc``: what happened to which file, and what to do next."""
    where = f" {exc.filename}" if exc.filename else ""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        return f"the disk is full: there was no room to write{where} ({reason}). {FREE_SPACE}"
    if exc.errno == errno.EDQUOT:
        return f"your disk quota is used up: there was no room to write{where} ({reason}). " + (
            FREE_SPACE
        )
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
