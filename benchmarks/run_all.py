#!/usr/bin/env python3
"""Run every benchmark, one after the other, and print their tables.

    python benchmarks/run_all.py                  # the full set (about 20 minutes on 2 cores)
    python benchmarks/run_all.py --quick          # every script with --quick (about 2 minutes): a smoke check
    python benchmarks/run_all.py --only accuracy,latency --out /tmp/bench

Each script runs as its own process (``python benchmarks/<name>.py [--quick]``), so one failing does not stop the
others; its output is shown as it comes and, with ``--out DIR``, also written to ``DIR/<name>.txt`` (and its figures
to ``DIR/<name>.json``). The summary at the end gives each script's exit status, wall time and the load average
before and after it: the figures depend on what else runs on the machine.
"""

import argparse
import os
import subprocess
import sys
import time
from typing import List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
# cheapest first; the issue-6 scripts, then the testbed's own start-up / failover benchmark
SCRIPTS = ["latency", "accuracy", "expiry", "overhead", "experiments", "scale", "testbed", "heartbeat_loss", "fanout"]
WITH_JSON = {"latency", "accuracy", "expiry", "overhead", "experiments", "scale", "heartbeat_loss", "fanout"}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="run every script with --quick")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SCRIPTS)}")
    parser.add_argument("--out", metavar="DIR", help="also write each script's output (and figures) to DIR")
    args = parser.parse_args(argv)
    names = SCRIPTS if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in SCRIPTS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(SCRIPTS)}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    summary = []
    for name in names:
        argv_ = [sys.executable, "-u", os.path.join(HERE, f"{name}.py")] + (["--quick"] if args.quick else [])
        if args.out and name in WITH_JSON:
            argv_ += ["--json", os.path.join(args.out, f"{name}.json")]
        print(f"===== {name}: {' '.join(argv_[2:])}", flush=True)
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        lines = []
        try:
            proc = subprocess.Popen(argv_, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for line in proc.stdout:
                print(line, end="", flush=True)
                lines.append(line)
            code = proc.wait()
        except KeyboardInterrupt:  # the child got the same SIGINT and cleans up after itself
            proc.wait()
            print("interrupted", file=sys.stderr)
            return 130
        summary.append((name, code, time.monotonic() - started, load_before, os.getloadavg()[0]))
        if args.out:
            with open(os.path.join(args.out, f"{name}.txt"), "w") as handle:
                handle.writelines(lines)
        print(flush=True)
    print("===== summary")
    for name, code, seconds, before, after in summary:
        print(f"{name:<12} exit {code:<3} {seconds:7.1f} s   load (1 min) {before:.2f} -> {after:.2f}")
    return 0 if all(code == 0 for _, code, _, _, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
