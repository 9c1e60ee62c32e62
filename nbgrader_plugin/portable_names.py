"""File names the exchange keeps: names that unpack the same way on Linux, macOS and Windows.

The service refuses an archive holding any other name (``lti_exchange/archives/names.py``), after
the upload. Checking the folder's names here first lets ``submit`` and ``release_assignment``
name every file to rename at once and send nothing in vain; the rules are the service's, and
``tests/unit/test_portable_names.py`` checks that the two agree.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

MAX_COMPONENT_BYTES = 255
MAX_LISTED = 20  # problems listed in a message; the rest are counted
_FORBIDDEN = re.compile(r'[\x00-\x1f<>:"|?*\\]')
_RESERVED = re.compile(r"(CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|(COM|LPT)[1-9¹²³])", re.IGNORECASE)


class UnportableNames(Exception):
    """Names in a folder that the exchange would refuse; ``str()`` lists them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = problems[:MAX_LISTED]
        more = len(problems) - len(shown)
        lines = "\n".join(f"  - {problem}" for problem in shown)
        if more:
            lines += f"\n  - and {more} more"
        super().__init__(lines)


def component_problem(part: str) -> str | None:
    """Why one file or folder name cannot be kept, or None."""
    try:
        encoded = part.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not valid UTF-8 (rename it with ordinary characters)"
    bad = _FORBIDDEN.search(part)
    if bad:
        return (
            f"{bad.group()!r} is not allowed in names on Windows "
            '(<>:"|?* \\ and control characters)'
        )
    if len(encoded) > MAX_COMPONENT_BYTES:
        return f"the name is longer than {MAX_COMPONENT_BYTES} bytes"
    if len(unicodedata.normalize("NFD", part).encode("utf-16-le")) > 2 * MAX_COMPONENT_BYTES:
        return "the name is too long for macOS"
    if part[-1] in ". ":
        return "the name ends in a dot or a space, which Windows cannot store"
    if _RESERVED.fullmatch(part.split(".", 1)[0].rstrip(" ")):
        return (
            f"{part.split('.', 1)[0]!r} is a reserved name on Windows (CON, PRN, AUX, NUL, "
            "COM1-9, LPT1-9, with any extension)"
        )
    return None


def fold(name: str) -> str:
    """The key two names share when macOS or Windows would store them as the same path."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def unportable_names(files: Iterable[str], empty_folders: Iterable[str] = ()) -> list[str]:
    """``"name: why"`` for each of ``files`` (relative POSIX paths of files) and
    ``empty_folders`` the exchange would refuse: a bad file or folder name (each folder once),
    two files that are one on Windows and macOS (names differing only in upper/lower case or
    Unicode form), or a file with a folder's name. Folders that are one merge: no problem."""
    problems: dict[str, str] = {}
    seen: dict[str, str] = {}  # folded file path -> the first name
    folders: dict[str, str] = {}  # folded folder path -> the first name

    def kept(name: str, *, is_folder: bool) -> bool:
        """Whether every part of ``name`` can be kept (else its problem is listed); if so, the
        folders it makes are registered: its parents, and itself when it is a folder."""
        parts = name.split("/")
        bad = _bad_component(parts)
        if bad is not None:
            problems.setdefault(*bad)
            return False
        for depth in range(1, len(parts) + is_folder):
            folder = "/".join(parts[:depth])
            folders.setdefault(fold(folder), folder)
        return True

    for name in files:
        if kept(name, is_folder=False):
            key = fold(name)
            if key in seen or key in folders:
                other = seen.get(key) or folders[key]
                problems.setdefault(
                    key,
                    f"{_shown(name)}: the same name as {_shown(other)} on Windows and macOS "
                    "(names that differ only in upper/lower case or accents' form are one file)",
                )
            seen.setdefault(key, name)
    for name in empty_folders:
        kept(name, is_folder=True)
    for key, name in seen.items():  # a file where another name needs a folder
        if key in folders and key not in problems:
            problems[key] = (
                f"{_shown(name)}: a file with the name of a folder ({_shown(folders[key])}) on "
                "Windows and macOS"
            )
    return list(problems.values())


def _bad_component(parts: list[str]) -> tuple[str, str] | None:
    """The first of a path's ``parts`` that cannot be kept: the path up to it as shown (the key
    that lists each bad folder once) and ``"shown: why"``; None when every part can be kept."""
    for depth, part in enumerate(parts):
        why = component_problem(part)
        if why is not None:
            shown = _shown("/".join(parts[: depth + 1]))
            return shown, f"{shown}: {why}"
    return None


def _shown(name: str) -> str:
    """The name as the user can find it (undecodable bytes as \\x escapes)."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return repr(name.encode("utf-8", "surrogateescape"))[2:-1]
