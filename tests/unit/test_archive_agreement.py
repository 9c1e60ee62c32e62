"""Property: every archive the server's upload check accepts is one the nbgrader plugin unpacks.

Random small tar archives (names from a hostile alphabet: empty, ``.``, ``..``, ``/``, ``\\``,
Windows-reserved, case and Unicode-form pairs, 255/256-byte components, invalid UTF-8; files,
folders old and new, links, duplicates; names in the header, a ustar prefix, a PAX ``path`` or a
GNU long name; plain or gzip) go through ``scan_archive`` (what the upload routes call). Whenever
it accepts one, ``extract_stream`` must unpack it into a fresh folder without error, writing
exactly the accepted files with their contents. No server.
"""

from __future__ import annotations

import gzip
import io
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lti_exchange.archives.upload import ArchiveLimits, scan_archive
from lti_exchange.errors import ApiError
from nbgrader_plugin.archive import extract_stream
from tests.tar_headers import header, long_name, pad, pax, record, tar

LIMITS = ArchiveLimits(max_upload_bytes=1024 * 1024, max_unpacked_bytes=64 * 1024, max_members=12)

SAFE = [
    b"a",
    b"A",
    b"b",
    b"data",
    b"Data",
    b"x.csv",
    b"X.CSV",
    "é".encode(),  # NFC
    "e\u0301".encode(),  # NFD of the same name
    "ß".encode(),
    b"ss",
    "\u212a".encode(),  # KELVIN SIGN, which folds to k
    b"k",
    "\U0001f642".encode(),
    b".hidden",
    b"n" * 255,
    "é".encode() * 127,
]
NASTY = [
    b"",
    b".",
    b"..",
    b"\\",
    b"a\\b",
    b"con",
    b"aux.txt",
    b"x.",
    b"x ",
    b"a:b",
    b"\x01",
    b"\xff",
    b"a\x00b",
    b"n" * 256,
]
WHOLE = [b"", b".", b"./", b".//", b"/", b"//", b"..", b"../x", b"a/./b", b"a//b", b"a/.."]
KINDS = {"file": b"0", "dir": b"5", "old-dir": b"\0", "symlink": b"2", "hardlink": b"1"}


@dataclass(frozen=True)
class Member:
    name: bytes
    kind: str
    encoding: str  # header, prefix, pax, long-name
    data: bytes


@st.composite
def names(draw: st.DrawFn, hostile: bool) -> bytes:
    if hostile and draw(st.booleans()):
        return draw(st.sampled_from(WHOLE))
    component = st.one_of(st.sampled_from(SAFE), st.sampled_from(NASTY))
    parts = draw(st.lists(component if hostile else st.sampled_from(SAFE), min_size=1, max_size=3))
    lead = draw(st.sampled_from([b"", b"./", b"/"] if hostile else [b"", b"", b"./"]))
    trail = draw(st.sampled_from([b"", b"", b"/"]))
    return lead + b"/".join(parts) + trail


def members(hostile: bool) -> st.SearchStrategy[Member]:
    kinds = ["file"] * 3 + ["dir"] * 2 + ["old-dir"] + (["symlink", "hardlink"] if hostile else [])
    return st.builds(
        Member,
        name=names(hostile),
        kind=st.sampled_from(kinds),
        encoding=st.sampled_from(["header", "header", "prefix", "pax", "long-name"]),
        data=st.binary(max_size=700),
    )


def _split_for_prefix(name: bytes) -> tuple[bytes, bytes] | None:
    """``(prefix, name)`` fields holding ``name`` in a ustar header, if it can be split so."""
    for cut in range(len(name) - 1, -1, -1):
        if name[cut : cut + 1] == b"/" and cut <= 155 and len(name) - cut - 1 <= 100:
            return name[:cut], name[cut + 1 :]
    return None


def encode(member: Member) -> bytes:
    """One member as tar bytes: extension header (if any), header, data."""
    kind = KINDS[member.kind]
    data = member.data if member.kind == "file" else b""
    name = member.name + (b"/" if member.kind == "old-dir" else b"")
    encoding = member.encoding
    split = _split_for_prefix(name) if encoding == "prefix" else None
    if split is None and encoding in ("header", "prefix") and len(name) <= 100:
        split = (b"", name)
    if split is not None:
        prefix, short = split
        return header(short, size=len(data), kind=kind, prefix=prefix) + pad(data)
    placeholder = b"placeholder/" if member.kind == "old-dir" else b"placeholder"
    if encoding == "long-name":
        extension = long_name(name)
    else:
        extension = pax(record(b"path", name), record(b"mtime", b"1700000000.25"))
    return extension + header(placeholder, size=len(data), kind=kind) + pad(data)


@st.composite
def archives(draw: st.DrawFn) -> tuple[list[Member], bool]:
    """A few ordinary members and up to two from the hostile alphabet, in any order; and
    whether to gzip them."""
    ordinary = draw(st.lists(members(hostile=False), max_size=5))
    hostile = draw(st.lists(members(hostile=True), min_size=0 if ordinary else 1, max_size=2))
    return draw(st.permutations(ordinary + hostile)), draw(st.booleans())


def check(spec: tuple[list[Member], bool]) -> str:
    """Scan the archive as the upload routes do; if accepted, the plugin must unpack it."""
    member_list, gzipped = spec
    data = tar(*(encode(m) for m in member_list))
    if gzipped:
        data = gzip.compress(data, mtime=0)
    contents: dict[str, bytes] = {}
    try:
        manifest = scan_archive(
            io.BytesIO(data), LIMITS, on_file=lambda n, fh, _size: contents.update({n: fh.read()})
        )
    except ApiError:
        return "refused"
    files = sorted(m.name for m in manifest.members if not m.is_dir)
    folders = [m.name for m in manifest.members if m.is_dir]
    with tempfile.TemporaryDirectory() as scratch:
        dest = Path(scratch) / "fresh"
        written = extract_stream(io.BytesIO(data), dest)
        assert sorted(str(p) for p in written) == files
        on_disk = [p for p in dest.rglob("*") if p.is_file()]
        assert len(on_disk) == len(files)
        for name in files:
            assert (dest / name).read_bytes() == contents[name]
        for name in folders:
            assert (dest / name).is_dir()
    return "accepted"


def test_every_archive_the_server_accepts_the_plugin_unpacks():
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=200,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(archives())
    def run(spec: tuple[list[Member], bool]) -> None:
        outcomes[check(spec)] += 1

    run()
    # Both sides of the property were exercised, not only refusals.
    assert outcomes["accepted"] >= 40 and outcomes["refused"] >= 40, outcomes
