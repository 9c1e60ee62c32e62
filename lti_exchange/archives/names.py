"""Member names that unpack the same way on Linux, macOS and Windows.

``normalise_member_name`` turns one stored name into a safe relative POSIX path (or refuses it);
``NameTree`` refuses a second member that would land on the same path once names are folded the
way macOS and Windows fold them (case, Unicode NFC), or a file where a folder is needed.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata

from lti_exchange.errors import InvalidArchive

MAX_COMPONENT_BYTES = 255
_FORBIDDEN = re.compile(r'[\x00-\x1f<>:"|?*\\]')
_RESERVED = re.compile(r"(CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|(COM|LPT)[1-9¹²³])", re.IGNORECASE)
_FIX = "Rename it and submit again."


def _shown(name: str) -> str:
    return repr(name if len(name) <= 300 else name[:300] + "…")


def _check_component(raw: str, part: str) -> None:
    bad = _FORBIDDEN.search(part)
    if bad:
        raise InvalidArchive(
            f"Archive member name {_shown(raw)} contains the forbidden character "
            f'{bad.group()!r} (not allowed on Windows: <>:"|?* \\ and control characters). ' + _FIX
        )
    if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
        raise InvalidArchive(
            f"Archive member {_shown(raw)} has a file or folder name longer than "
            f"{MAX_COMPONENT_BYTES} bytes. Use a shorter name and submit again."
        )
    if len(unicodedata.normalize("NFD", part).encode("utf-16-le")) > 2 * MAX_COMPONENT_BYTES:
        raise InvalidArchive(
            f"Archive member {_shown(raw)} has a name too long for macOS. Use a shorter name "
            "and submit again."
        )
    if part[-1] in ". ":
        raise InvalidArchive(
            f"Archive member {_shown(raw)} has a name ending in a dot or space ({part!r}), "
            "which Windows cannot store. " + _FIX
        )
    if _RESERVED.fullmatch(part.split(".", 1)[0].rstrip(" ")):
        raise InvalidArchive(
            f"Archive member {_shown(raw)} uses the name {part!r}, which is reserved on "
            "Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9, with any extension). " + _FIX
        )


def normalise_member_name(raw: str) -> str:
    """A safe relative POSIX name (``""`` for the archive root), or raise ``InvalidArchive``."""
    if "\x00" in raw:
        raise InvalidArchive(f"Archive member name {_shown(raw)} contains a forbidden NUL byte.")
    if raw.startswith("/"):
        raise InvalidArchive(
            f"Archive member {_shown(raw)} has an absolute path. Pack the folder's contents "
            "with relative names and submit again."
        )
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidArchive(
            f"Archive member {_shown(raw)} points outside the archive ('..'). Pack the folder "
            "with relative names and submit again."
        )
    for part in parts:
        _check_component(raw, part)
    return posixpath.join(*parts) if parts else ""


def fold(name: str) -> str:
    """The key two names share when macOS or Windows would store them as the same path."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


class _Node:
    __slots__ = ("origin", "depth", "is_dir", "children")

    def __init__(self, origin: str, depth: int, is_dir: bool) -> None:
        self.origin = origin  # the member whose name created this node
        self.depth = depth
        self.is_dir = is_dir
        self.children: dict[str, _Node] = {}

    @property
    def name(self) -> str:
        return "/".join(self.origin.split("/")[: self.depth + 1])


class NameTree:
    """The paths seen so far, folded; each ``add`` costs time linear in the name's length."""

    def __init__(self) -> None:
        self._root = _Node("", -1, True)

    def add(self, name: str, is_dir: bool) -> None:
        """Record ``name`` (normalised, non-empty) or raise ``InvalidArchive`` on a clash."""
        parts = name.split("/")
        node = self._root
        for depth, part in enumerate(parts):
            last = depth + 1 == len(parts)
            key = fold(part)
            child = node.children.get(key)
            if child is None:
                child = _Node(name, depth, is_dir or not last)
                node.children[key] = child
            elif not last and not child.is_dir:
                raise InvalidArchive(
                    f"Archive member {_shown(name)} needs {_shown('/'.join(parts[: depth + 1]))} "
                    f"to be a folder, but the archive also holds a file {_shown(child.name)}. "
                    "Rename one of them and submit again."
                )
            elif last and not (is_dir and child.is_dir):
                raise InvalidArchive(self._clash_message(name, is_dir, child))
            node = child

    @staticmethod
    def _clash_message(name: str, is_dir: bool, existing: _Node) -> str:
        if is_dir or existing.is_dir:
            return (
                f"Archive member {_shown(name)} is both a file and a folder (also "
                f"{_shown(existing.name)}). Rename one of them and submit again."
            )
        same = "" if existing.name == name else f" (as {_shown(existing.name)})"
        return (
            f"The archive holds the file {_shown(name)} twice{same}; names that differ only in "
            "upper/lower case or Unicode form are the same file on Windows and macOS. Rename "
            "or remove one of them and submit again."
        )
