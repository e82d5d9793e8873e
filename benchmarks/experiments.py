#!/usr/bin/env python3
"""Experiment wall time: each of the three experiments end to end through the real `chaos` CLI on the embedded
cluster, including the cluster's start (by the experiment's control) and its removal.

    python benchmarks/experiments.py              # each experiment once (about 2 minutes)
    python benchmarks/experiments.py --runs 3
    python benchmarks/experiments.py --quick      # master-crash.json only, once

Each run is ``chaos --no-version-check --no-log-file run experiments/<name>.json --journal-path ...`` with a fresh
state home (CHAOSSCHEDULER_HOME) and a unique cluster name (CHAOSSCHEDULER_CLUSTER), timed from the process start
to its exit. The journal gives the run's status, whether it deviated, and the times of the control's work before
the steady state (cluster start + warm-up) and of the method. After each run the benchmark checks that the control
removed the cluster, and removes what is left by its record if not.

Target (issue 6): each experiment under 60 s.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

import _bench
from _bench import Load, Session, median, secs, table, verdict

from chaosscheduler.testbed import network  # noqa: E402

TARGET = 60.0
EXPERIMENTS = ["master-crash.json", "network-partition.json", "worker-disconnect.json"]
CHAOS = os.path.join(os.path.dirname(sys.executable), "chaos")


def _ts(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def phases(journal: Dict[str, Any], started: float) -> Dict[str, Optional[float]]:
    """Seconds before the first activity (control: cluster start, warm-up) and from the first to the last method
    activity, from the journal's activity timestamps."""
    before = (journal.get("steady_states") or {}).get("before") or {}
    first = [_ts(p.get("start")) for p in before.get("probes", [])]
    method = [(_ts(a.get("start")), _ts(a.get("end"))) for a in journal.get("run", [])]
    out: Dict[str, Optional[float]] = {"setup": None, "method": None}
    starts = [t for t in first + [m[0] for m in method] if t]
    if starts:
        out["setup"] = min(starts) - started
    if method and all(a and b for a, b in method):
        out["method"] = max(b for _, b in method) - min(a for a, _ in method)
    return out


def one_run(bench: Session, experiment: str, timeout: float) -> Dict[str, Any]:
    cluster = bench.name()
    state_dir = os.path.join(bench.home, "testbed", cluster)
    bench.state_dirs.append(state_dir)  # removed at the end whatever the control did
    journal_path = os.path.join(bench.home, f"journal-{cluster}.json")
    env = dict(os.environ, CHAOSSCHEDULER_HOME=bench.home, CHAOSSCHEDULER_CLUSTER=cluster)
    argv = [CHAOS, "--no-version-check", "--no-log-file", "run", os.path.join(_bench.ROOT, "experiments", experiment),
            "--journal-path", journal_path]
    started = time.time()
    proc = bench.spawn(argv, cwd=bench.home, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = proc.communicate(timeout=timeout)
    wall = time.time() - started
    try:
        with open(journal_path) as handle:
            journal = json.load(handle)
    except (OSError, ValueError):
        print(output[-3000:], file=sys.stderr)
        raise RuntimeError(f"{experiment}: no journal (chaos exited {proc.returncode})")
    left = [n for n in network.existing_namespaces() if n.startswith(f"cs-{cluster}-")] or \
        (["state"] if os.path.exists(state_dir) else [])
    result = {"experiment": experiment, "wall": wall, "exit": proc.returncode, "status": journal.get("status"),
              "deviated": journal.get("deviated"), "left_behind": left,
              "undo_errors": (journal.get("chaosscheduler") or {}).get("undo_errors")}
    result.update(phases(journal, started))
    return result


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="runs of each experiment (default 1)")
    parser.add_argument("--quick", action="store_true", help="master-crash.json only, once")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per run (default 300)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else args.runs
    names = EXPERIMENTS[:1] if args.quick else EXPERIMENTS
    if runs < 1:
        parser.error("--runs must be at least 1")
    problem = _bench.requirements()
    if problem or not os.access(CHAOS, os.X_OK):
        print(f"cannot run: {problem or f'no chaos CLI at {CHAOS}'}", file=sys.stderr)
        return 2
    _bench.interrupt_on_sigterm()
    load = Load()
    results: List[Dict[str, Any]] = []
    try:
        with Session("xp") as bench:
            for i in range(1, runs + 1):
                for name in names:
                    result = one_run(bench, name, args.timeout)
                    results.append(result)
                    load.sample()
                    print(f"  run {i}: {name}: {result['wall']:.1f} s, exit {result['exit']}, {result['status']}"
                          f"{', deviated' if result['deviated'] else ''}"
                          f"{', LEFT BEHIND: ' + ', '.join(result['left_behind']) if result['left_behind'] else ''}",
                          flush=True)
    except KeyboardInterrupt:
        print("interrupted: everything started was removed", file=sys.stderr)
        return 130
    rows = []
    for name in names:
        mine = [r for r in results if r["experiment"] == name]
        walls = [r["wall"] for r in mine]
        setup = [r["setup"] for r in mine if r["setup"] is not None]
        method = [r["method"] for r in mine if r["method"] is not None]
        outcome = ", ".join(sorted({f"{r['status']}{' (deviated)' if r['deviated'] else ''} exit {r['exit']}"
                                    for r in mine}))
        rows.append([name, len(mine), secs(median(walls), 1), secs(max(walls), 1),
                     secs(median(setup), 1) if setup else "-", secs(median(method), 1) if method else "-", outcome,
                     f"< 60 s: {verdict(max(walls) < TARGET)}"])
    print()
    print("Experiments end to end through 'chaos run' (cluster start, warm-up, steady state, method, rollbacks, "
          "removal)")
    print(table(["experiment", "runs", "wall median", "wall max", "start + warm-up", "method", "outcome", "target"],
                rows))
    print(load.summary())
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"runs": results, "load": load.figures()}, handle, indent=1)
    # a run that deviates is a figure (the outcome column says so), not a failure of the benchmark; something left
    # behind is
    return 1 if any(r["left_behind"] or r["undo_errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
