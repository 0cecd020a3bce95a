"""Run every benchmarks/bench_*.py in turn (each prints its figures against a named baseline)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    status = 0
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        status |= subprocess.run([sys.executable, str(script), *sys.argv[1:]]).returncode
    sys.exit(status)
