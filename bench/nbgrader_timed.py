"""``nbgrader`` as its console script runs it, printing to stderr the CPU the command itself
took once nbgrader was imported (``nbgrader-cpu-after-import: <seconds>``).

Starting Python and importing nbgrader costs 2 to 3 s of CPU on the bench machine and varies by
a tenth of a second from run to run, more than a listing's own work; this leaves it out.

    .venv/bin/python bench/nbgrader_timed.py list --inbound --course c1
"""

from __future__ import annotations

import sys
import time

from nbgrader.apps.nbgraderapp import main

if __name__ == "__main__":
    sys.argv[0] = "nbgrader"
    start = time.process_time()
    try:
        status = main()
    finally:
        print(f"nbgrader-cpu-after-import: {time.process_time() - start:.4f}", file=sys.stderr)
    sys.exit(status)
