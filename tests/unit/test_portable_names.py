"""The plugin's check of a folder's names before sending (``nbgrader_plugin.portable_names``)
agrees with the service's (``lti_exchange.archives.names``): a name the plugin lets through is
one the service keeps, and one it stops is one the service would refuse after the upload.
Names come from the hostile lists of the archive agreement test and from random text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lti_exchange.archives.names import NameTree, normalise_member_name
from lti_exchange.errors import InvalidArchive
from nbgrader_plugin.archive import pack_directory
from nbgrader_plugin.portable_names import UnportableNames, component_problem, unportable_names
from tests.unit.test_archive_agreement import NASTY, SAFE

COMPONENTS = [
    raw.decode("utf-8", "surrogateescape")
    for raw in SAFE + NASTY
    if raw not in (b"", b".", b"..") and b"/" not in raw and b"\x00" not in raw
]


def service_keeps(name: str) -> bool:
    """Whether the service keeps a file named ``name`` (its bytes must be UTF-8 first)."""
    try:
        name.encode("utf-8")
        normalise_member_name(name)
    except (UnicodeEncodeError, InvalidArchive):
        return False
    return True


@pytest.mark.parametrize("name", COMPONENTS)
def test_each_hostile_name_is_judged_as_the_service_judges_it(name: str):
    assert (component_problem(name) is None) == service_keeps(name), name


TOKENS = [*'aZé.: <>|?*"\\\x01\x7fßKk\u212a\U0001f642-_', "COM1", "aux", "Con", "lpt\u00b2", "nul "]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=6).map("".join))
def test_random_names_are_judged_as_the_service_judges_them(name: str):
    if name in (".", "..") or "/" in name:
        return
    assert (component_problem(name) is None) == service_keeps(name), name


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["a", "A", "b", "a/b", "A/b", "é", "e\u0301", "ss/x", "ß"]), max_size=4
    )
)
def test_clashes_are_found_as_the_service_finds_them(files: list[str]):
    files = list(dict.fromkeys(files))  # a folder lists a name once
    tree, refused = NameTree(), False
    try:
        for name in files:
            tree.add(name, False)
    except InvalidArchive:
        refused = True
    assert bool(unportable_names(files)) == refused, files


def test_a_folder_is_named_once_and_every_problem_is_listed(tmp_path):
    (tmp_path / "aux").mkdir()
    for n in range(3):
        (tmp_path / "aux" / f"f{n}.txt").write_text("x")
    (tmp_path / "data:1.csv").write_text("x")
    (tmp_path / "Notes.md").write_text("x")
    (tmp_path / "notes.md").write_text("x")
    open(bytes(tmp_path) + b"/\xffname.txt", "wb").close()
    (tmp_path / "fine.ipynb").write_text("{}")

    with pytest.raises(UnportableNames) as refused:
        pack_directory(tmp_path)

    problems = refused.value.problems
    assert len(problems) == 4, problems
    assert any(p.startswith("aux: 'aux' is a reserved name on Windows") for p in problems)
    assert any(p.startswith("data:1.csv: ':' is not allowed") for p in problems)
    assert any(p.startswith("notes.md: the same name as Notes.md") for p in problems)
    assert any(p.startswith("\\xffname.txt: its name is not valid UTF-8") for p in problems)


def test_a_long_list_is_cut_with_a_count():
    problems = unportable_names([f"con{n}.txt" if n else "con.txt" for n in range(30)])
    assert len(problems) == 1  # con1.txt … are fine: only CON itself (and COM1 …) are reserved
    many = UnportableNames([f"x{n}: bad" for n in range(25)])
    assert str(many).count("\n  - ") == 20 and str(many).endswith("  - and 5 more")


def test_empty_folders_are_checked_as_folders():
    """Two folders that are one on Windows and macOS merge (the service accepts them); an empty
    folder with a file's name does not; a reserved name is refused in a folder too."""
    assert unportable_names(["figures/plot.png"], ["Figures"]) == []
    assert unportable_names([], ["Out", "out"]) == []
    [clash] = unportable_names(["out"], ["Out"])
    assert clash.startswith("out: a file with the name of a folder (Out)")
    [reserved] = unportable_names(["a.ipynb"], ["con"])
    assert reserved.startswith("con: 'con' is a reserved name on Windows")
