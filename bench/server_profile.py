"""Where the server's time goes: merge the workers' profiles (``LTI_EXCHANGE_PROFILE_DIR``,
``lti_exchange/serving/profiling.py``) and print the top functions."""

from __future__ import annotations

import pstats
from pathlib import Path

from common import ROOT

SITE = "site-packages/"


def merged_stats(directory: Path) -> pstats.Stats | None:
    """All ``worker-*.pstats`` files in ``directory`` added up; None when there are none."""
    files = sorted(directory.glob("worker-*.pstats"))
    if not files:
        return None
    stats = pstats.Stats(str(files[0]))
    for file in files[1:]:
        stats.add(str(file))
    return stats


def short_name(key: tuple[str, int, str]) -> str:
    """``file:line(function)`` with the repository or site-packages prefix cut off."""
    file, line, function = key
    if SITE in file:
        file = file.split(SITE, 1)[1]
    elif file.startswith(str(ROOT)):
        file = file[len(str(ROOT)) + 1 :]
    elif file == "~":  # built-in functions
        return function
    return f"{file}:{line}({function})"


def print_top(stats: pstats.Stats, requests: int, clock: str, top: int = 20) -> None:
    """The ``top`` functions by cumulative and by own time, with milliseconds per request."""
    entries = stats.stats  # type: ignore[attr-defined]
    total = getattr(stats, "total_tt", 0.0)
    print(
        f"\nServer profile ({clock} clock): {requests} requests in the burst, {total:.2f} s "
        "profiled in all workers' request threads (ms/req: per request of the burst)"
    )
    for title, index in (("cumulative", 3), ("own time (tottime)", 2)):
        print(f"\nTop {top} by {title}")
        print(f"{'calls':>9} {'tottime':>8} {'cumtime':>8} {'ms/req':>7}  function")
        ranked = sorted(entries.items(), key=lambda item: item[1][index], reverse=True)
        for key, (_cc, calls, tottime, cumtime, _callers) in ranked[:top]:
            per_request = (cumtime if index == 3 else tottime) * 1000 / max(requests, 1)
            print(f"{calls:>9} {tottime:8.3f} {cumtime:8.3f} {per_request:7.2f}  {short_name(key)}")
