#!/usr/bin/env python3
"""The interruption matrix: stop real ``chaos run`` processes with SIGINT, SIGTERM and SIGKILL at every phase of the
three experiments, and report what each left behind.

    python benchmarks/reliability_matrix.py                         # all 36 cells (~10 min), prints the table
    python benchmarks/reliability_matrix.py --json matrix.json      # also every measurement as JSON
    python benchmarks/reliability_matrix.py --update-doc            # rewrite the table in docs/reliability.md
    python benchmarks/reliability_matrix.py --from-json matrix.json [--update-doc]   # re-render a saved run
    python benchmarks/reliability_matrix.py --experiments worker-disconnect --signals SIGKILL --phases injected

Needs root, etcd and nftables/iptables/ipset (``scripts/setup``). Each cell starts its own embedded cluster under a
temporary state home, installs the operator's sentinel rules (root namespace: unique names, removed by name
afterwards), interrupts the run, follows every fault until it is gone — at once (rollbacks, control) or at its
deadline (self-expiry: the overshoot is measured by polling the hosts every 10 ms) —, runs ``chaosscheduler heal``,
checks that nothing of ours is left and that the sentinels are byte-for-byte unchanged, and removes the cluster by
its own record. Faults last 10-15 s instead of 60 s (the experiments' ``fault_duration`` key, via a var file).

The same cells run as tests: ``scripts/test -m slow tests/reliability`` (the CI subset runs in ``scripts/test``).
Exit status: 0 when every cell is clean, 1 otherwise.
"""

import argparse
import dataclasses
import json
import os
import re
import signal
import sys
import time
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.reliability import harness  # noqa: E402 - needs the repository on sys.path

DOC = os.path.join(harness.ROOT, "docs", "reliability.md")
BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"


def _interrupt(signum, frame):  # SIGTERM to this script: let the current cell clean up, then stop
    raise KeyboardInterrupt


def update_doc(table: str, command: str) -> None:
    with open(DOC) as handle:
        text = handle.read()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC} has no {BEGIN} ... {END} section to replace")
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    block = f"{BEGIN}\nMeasured {stamp} with `{command}`:\n\n{table}\n{END}"
    text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    with open(DOC, "w") as handle:
        handle.write(text)


def _command(argv: Optional[List[str]]) -> str:
    """The command line that reruns this measurement (without the output options)."""
    words, skip = [], False
    for word in (argv if argv is not None else sys.argv[1:]):
        if skip:
            skip = False
        elif word in ("--json", "--from-json"):
            skip = True
        elif word != "--update-doc":
            words.append(word)
    return " ".join(["python", "benchmarks/reliability_matrix.py"] + words)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiments", nargs="+", choices=list(harness.EXPERIMENTS),
                        default=list(harness.EXPERIMENTS))
    parser.add_argument("--signals", nargs="+", choices=harness.SIGNALS, default=list(harness.SIGNALS))
    parser.add_argument("--phases", nargs="+", choices=harness.PHASES, default=list(harness.PHASES))
    parser.add_argument("--json", default="", metavar="PATH", help="write every cell's measurements here")
    parser.add_argument("--update-doc", action="store_true", help=f"replace the matrix section of {DOC}")
    parser.add_argument("--from-json", default="", metavar="PATH",
                        help="render the table of an earlier run's --json file instead of running the cells")
    args = parser.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as handle:
            saved = json.load(handle)
        fields = {f.name for f in dataclasses.fields(harness.Cell)}
        cells = [harness.Cell(**{k: v for k, v in c.items() if k in fields}) for c in saved["cells"]]
        table = harness.markdown(cells)
        print(table)
        if args.update_doc:
            update_doc(table, saved.get("command", "python benchmarks/reliability_matrix.py"))
        return 0 if all(not c.problems for c in cells) else 1
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, nft, iptables, ipset)")
    signal.signal(signal.SIGTERM, _interrupt)
    plan = [(e, s, p) for e in args.experiments for s in args.signals for p in args.phases]
    print(f"{len(plan)} cell(s)", flush=True)
    cells: List[harness.Cell] = []
    try:
        for i, (experiment, sig, phase) in enumerate(plan, start=1):
            cell = harness.run_cell(experiment, sig, phase)
            cells.append(cell)
            verdict = "ok" if not cell.problems else "PROBLEMS: " + "; ".join(cell.problems)
            print(f"[{i}/{len(plan)}] {experiment} {sig} {phase}: exit {cell.exit_code}, "
                  f"{harness._ended(cell)}, {cell.seconds:.0f} s, {verdict}", flush=True)
    except KeyboardInterrupt:
        print("interrupted: the cell in progress removed what it started", file=sys.stderr)
    table = harness.markdown(cells)
    print()
    print(table)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"summary": harness.summarise(cells), "command": _command(argv),
                       "cells": [c.to_dict() for c in cells]}, handle, indent=2, default=str)
    if args.update_doc and len(cells) == len(plan):
        update_doc(table, _command(argv))
    return 0 if cells and len(cells) == len(plan) and all(not c.problems for c in cells) else 1


if __name__ == "__main__":
    sys.exit(main())
