#!/usr/bin/env python3
"""The witness's cost and reach, measured on the embedded cluster.

    python benchmarks/witness.py                 # all three parts
    python benchmarks/witness.py --part overhead --seconds 60 --rates 5,10,20
    python benchmarks/witness.py --part sizing   # the experiments' sizing: a lost worker's witness tasks
    python benchmarks/witness.py --part collect --tasks 1000

* **overhead** — one cluster (4 workers, 100 slots, the load generator at 2 jobs/s). For a baseline window without
  the witness and one window per witness rate: the CPU time of this process (the witness is a thread of the
  ``chaos`` process, this one here) per second, the witness's acknowledged submissions per second and their
  latency, the platform's CPU (every node process, from /proc), and what the witness adds to the platform's own
  latency: the load generator's submission latency and the time from a load task's submission to its start (the
  cluster's event log), baseline vs with the witness.
* **sizing** — a cluster sized as recommended for the experiments, the witness at its defaults; once it runs at
  steady state, ``isolate_worker`` cuts the busiest worker: how many witness tasks it held at the cut (52 decide
  "> 95 %"), how many started again elsewhere and when (the checker's rescheduling by identity), the survivors'
  peak use of their slots, and the execution ratio with its bound.
* **collect** — the sshd lab (an sshd in every node's namespace): the evidence of N tasks (each written by the real
  witness script, on the workers, spread evenly) read back with ``cat`` over SSH and deleted, timed.
"""

import argparse
import json
import os
import sys
import threading
import time
from typing import Any, Dict, List

import _bench
from _bench import Load, Session, median, table

from chaosscheduler import actions, config, procs, rollbacks, witness  # noqa: E402
from chaosscheduler.hosts import ssh  # noqa: E402
from chaosscheduler.platforms import for_settings  # noqa: E402
from chaosscheduler.testbed import remote  # noqa: E402
from chaosscheduler.testbed.worker import node_dir  # noqa: E402
from chaosscheduler.witness import command  # noqa: E402
from chaosscheduler.witness.checker import executions, quantile  # noqa: E402
from chaosscheduler.witness.collectors import HostCollector  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cluster_cpu(tb) -> float:
    """CPU seconds used so far by every recorded process of the cluster (and its children that were reaped)."""
    total = 0.0
    for record in (tb.record.get("processes") or {}).values():
        if not procs.is_running(record):
            continue
        try:
            with open(f"/proc/{record['pid']}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15]) / TICKS  # utime stime cutime cstime
        except OSError:
            continue
    return total


def platform_latency(tb, since: float, until: float, skip_jobs: set) -> Dict[str, Any]:
    """The load generator's own submission latency and submission -> start of its tasks, in [since, until]."""
    subs = [s for s in tb.submissions(since) if s["at"] <= until and s["outcome"] == "accepted"]
    submitted = {e["task"]: e["ts"] for e in tb.events("task_submitted") if since <= e["ts"] <= until
                 and e.get("job") not in skip_jobs}
    started: Dict[str, float] = {}
    for e in tb.events("task_started"):
        if e["task"] in submitted and e["task"] not in started:
            started[e["task"]] = e["ts"]
    waits = [started[t] - submitted[t] for t in started]
    lat = [s["latency"] for s in subs]
    return {"submit_p50": quantile(lat, 0.5), "submit_p95": quantile(lat, 0.95), "n_submit": len(lat),
            "start_p50": quantile(waits, 0.5), "start_p95": quantile(waits, 0.95), "n_start": len(waits)}


def window(seconds: float, tb, workload=None) -> Dict[str, Any]:
    cpu0, wall0, plat0, t0 = time.process_time(), time.monotonic(), cluster_cpu(tb), time.time()
    acked0 = len(workload.jobs) if workload else 0
    time.sleep(seconds)
    cpu1, wall1, plat1, t1 = time.process_time(), time.monotonic(), cluster_cpu(tb), time.time()
    out = {"client_cpu": (cpu1 - cpu0) / (wall1 - wall0), "platform_cpu": (plat1 - plat0) / (wall1 - wall0),
           "since": t0, "until": t1}
    if workload is not None:
        out["acked_per_s"] = (len(workload.jobs) - acked0) / (wall1 - wall0)
        events = [e for e in workload.recorder.history().events if e["type"] == "ok" and t0 <= e["at"] <= t1]
        lat = [e["latency"] for e in events if e.get("latency") is not None]
        out.update(witness_p50=quantile(lat, 0.5), witness_p95=quantile(lat, 0.95), skipped=workload.skipped)
    return out


def part_overhead(args, bench: Session, load: Load) -> Dict[str, Any]:
    tb = bench.cluster(workers=4, slots=100, load_rate=2.0)
    base_cfg = bench.cfg(tb)
    time.sleep(5)  # warm-up of the load generator
    load.sample()
    rows, figures = [], {}
    base = window(args.seconds, tb)
    base.update(platform_latency(tb, base["since"], base["until"], set()))
    figures["baseline"] = base
    rows.append(["none", "-", "-", "-", f"{base['client_cpu'] * 100:.1f} %", f"{base['platform_cpu'] * 100:.0f} %",
                 f"{base['submit_p50'] * 1000:.0f}/{base['submit_p95'] * 1000:.0f} ms",
                 f"{base['start_p50'] * 1000:.0f}/{base['start_p95'] * 1000:.0f} ms"])
    for rate in [float(r) for r in args.rates.split(",")]:
        load.sample()
        settings = config.load(dict(base_cfg, chaosscheduler_witness={"rate": rate, "duration": 4.0, "stop_wait": 30}))
        run_id = f"bench-{int(rate)}-{int(time.time())}"
        workload = witness.start(settings, for_settings(settings), os.path.join(bench.home, "runs", run_id),
                                 run_id=run_id)
        try:
            time.sleep(5)  # to steady state (duration 4 s)
            got = window(args.seconds, tb, workload)
        finally:
            summary = workload.stop()
        got.update(platform_latency(tb, got["since"], got["until"], set(workload.jobs)))
        got["valid"], got["lost"], got["duplicated"] = summary["valid"], summary["lost"], summary["duplicated"]
        figures[f"rate_{rate:g}"] = got
        rows.append([f"{rate:g}/s", f"{got['acked_per_s']:.1f}",
                     f"{got['witness_p50'] * 1000:.0f}/{got['witness_p95'] * 1000:.0f} ms", str(got["skipped"]),
                     f"{got['client_cpu'] * 100:.1f} %", f"{got['platform_cpu'] * 100:.0f} %",
                     f"{got['submit_p50'] * 1000:.0f}/{got['submit_p95'] * 1000:.0f} ms",
                     f"{got['start_p50'] * 1000:.0f}/{got['start_p95'] * 1000:.0f} ms"])
    print(f"\nWitness overhead on the embedded cluster (4 workers x 100 slots, load generator 2 jobs/s, witness tasks "
          f"of 4 s; {args.seconds:g} s windows; CPU in % of one core)")
    print(table(["witness", "acked/s", "witness submit p50/p95", "skipped ticks", "chaos process CPU",
                 "platform CPU", "load gen submit p50/p95", "load task start p50/p95"], rows))
    return figures


def part_sizing(args, bench: Session, load: Load) -> Dict[str, Any]:
    fields = json.loads(args.sizing_cluster)
    tb = bench.cluster(**fields)
    cfg = bench.cfg(tb)
    settings = config.load(dict(cfg, chaosscheduler_witness=json.loads(args.sizing_witness)))
    platform = for_settings(settings)
    run_id = f"sizing-{int(time.time())}"
    load.sample()
    workload = witness.start(settings, platform, os.path.join(bench.home, "runs", run_id), run_id=run_id)
    sizing = workload.recorder.meta["sizing"]
    peak: Dict[str, int] = {}
    stop_sampling = threading.Event()

    def sample() -> None:  # the leader's summary: from its memory, no etcd read
        while not stop_sampling.wait(0.5):
            for master in tb.nodes_of("master"):
                try:
                    status, body = tb.call(master.name, "GET", "/api/summary", timeout=2.0)
                except Exception:
                    continue
                if status == 200 and body.get("is_leader"):
                    for name, w in body["workers"].items():
                        peak[name] = max(peak.get(name, 0), w["running"])
                    break

    record: Dict[str, Any] = {}
    threading.Thread(target=sample, daemon=True).start()
    try:
        time.sleep(sizing["duration"] * 1.5 + 5)  # to steady state: every worker full of witness tasks
        load.sample()
        before = dict(peak)  # the peak before the cut; from here on, the peak after it
        peak.clear()
        record = actions.isolate_worker(worker="busiest", duration=args.cut, configuration=cfg)
        time.sleep(args.cut + 5)
        rollbacks.rejoin_worker(configuration=cfg)
        time.sleep(5)
    finally:
        stop_sampling.set()
        summary = workload.stop()
    history = witness.load(bench.home, run_id)
    worker, at = record["targets"][0], record["started_at"]
    if args.keep:
        import shutil

        shutil.copytree(os.path.join(bench.home, "runs", run_id), args.keep, dirs_exist_ok=True)
        with open(os.path.join(args.keep, "events.jsonl"), "w") as handle:
            handle.writelines(json.dumps(e) + "\n" for e in tb.events())
        with open(os.path.join(args.keep, "fault.json"), "w") as handle:
            json.dump(record, handle)
    moved = witness.rescheduling(history, [worker], at, deadline=60, threshold=0.95)
    found = witness.check(history, faults=[record], thresholds={"execution": 0.98, "submissions": 0.995})
    survivors = {w: n for w, n in peak.items() if w != worker}
    slots = tb.spec.slots
    print(f"\nSizing: cluster {json.dumps(fields)}, witness {json.dumps(json.loads(args.sizing_witness))} "
          f"(duration {sizing['duration']:g} s), cut of {args.cut:g} s")
    print(table(["figure", "value"], [
        ["witness tasks on the cut worker at the cut (n)", str(moved["n"])],
        ["started again elsewhere within 60 s", f"{moved['successes']} ({moved['value'] if moved['n'] else '-'}; "
                                                f"one-sided 95 % lower bound {moved['lower']:.3f}, needs n >= "
                                                f"{moved['n_needed']})"],
        ["not started again (finished on the cut worker?)",
         ", ".join(f"{t['task']} ({'finished in place' if t['finished_in_place'] else 'never finished'})"
                   for t in moved["tasks"] if t["latency"] is None) or "-"],
        ["rescheduling latency p50 / p95 / max", f"{moved['latency']['p50']} / {moved['latency']['p95']} / "
                                                 f"{moved['latency']['max']} s"],
        ["survivors' peak running / slots", ", ".join(f"{w} {n}/{slots} ({n / slots:.0%})"
                                                       for w, n in sorted(survivors.items()))],
        ["running per worker before the cut (sampled)", ", ".join(f"{w} {n}" for w, n in sorted(before.items()))],
        ["submissions acknowledged", f"{found['submissions']['successes']}/{found['submissions']['n']} "
                                     f"(lower bound {found['submissions']['lower']:.4f})"],
        ["executions completed (judged)", f"{found['execution']['successes']}/{found['execution']['n']} "
                                          f"(lower bound {found['execution']['lower']:.4f})"],
        ["lost / duplicated / re-executed after the loss", f"{len(found['lost'])} / {len(found['duplicated_ids'])} "
                                                           f"/ {len(found['reexecuted_after_loss'])}"],
        ["longest stall", f"{found['stall']['seconds']:.2f} s" if found["stall"] else "-"],
    ]))
    return {"n": moved["n"], "successes": moved["successes"], "lower": moved["lower"], "latency": moved["latency"],
            "survivor_peak": survivors, "before": before, "slots": slots, "submissions": found["submissions"],
            "execution": found["execution"], "lost": len(found["lost"]), "duplicated": len(found["duplicated_ids"]),
            "skipped": summary["skipped_ticks"]}


def part_collect(args, bench: Session, load: Load) -> Dict[str, Any]:
    tb = bench.cluster(workers=args.workers, load_rate=0, sshd=True)
    with open(remote.vars_path(tb.state_dir)) as handle:
        configuration = json.load(handle)["configuration"]
    platform = for_settings(config.load(configuration))
    workers = [n.name for n in tb.nodes_of("worker")]
    evidence = command.evidence_name("bench-collect")
    collector = HostCollector(platform, workers, os.path.join(tb.state_dir, "nodes", "{node}"))
    times = []
    for run in range(args.runs):
        load.sample()
        # the real task script writes the evidence of N tasks of duration 0 on the workers, evenly spread
        import subprocess

        started = time.monotonic()
        for i in range(args.tasks):
            node = workers[i % len(workers)]
            subprocess.run(command.argv(command.task_id("bench", run * args.tasks + i), 0, evidence), check=True,
                           env={"PATH": "/usr/bin:/bin", "CS_WITNESS_NODE": node,
                                "CS_WITNESS_DIR": node_dir(tb.state_dir, node)})
        written = time.monotonic() - started
        ssh.close_all()  # a cold start: connections are opened by the collection, as at the end of a run
        started = time.monotonic()
        records, report = collector.collect(evidence, delete=True)
        took = time.monotonic() - started
        assert len(executions(records)) == args.tasks and not report["errors"], report
        assert not any(os.path.exists(os.path.join(node_dir(tb.state_dir, w), evidence)) for w in workers)
        times.append(took)
        print(f"  run {run + 1}: {len(records)} lines of {args.tasks} tasks from {len(workers)} workers collected "
              f"and deleted over SSH in {took:.2f} s (writing them took {written:.1f} s)")
    print(f"\nCollection of {args.tasks} tasks over SSH ({len(workers)} workers, root login, cold connections): "
          f"median {median(times):.2f} s, min {min(times):.2f} s, max {max(times):.2f} s over {len(times)} runs")
    return {"tasks": args.tasks, "workers": len(workers), "seconds": times}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["overhead", "sizing", "collect", "all"], default="all")
    parser.add_argument("--seconds", type=float, default=30.0, help="measurement window per rate (overhead)")
    parser.add_argument("--rates", default="5,10,20", help="witness rates to measure (overhead)")
    parser.add_argument("--sizing-cluster", default='{"workers": 4, "slots": 120, "load_rate": 2.0}')
    parser.add_argument("--sizing-witness", default="{}", help="witness options (JSON) for the sizing part")
    parser.add_argument("--cut", type=float, default=30.0, help="seconds the busiest worker is cut off (sizing)")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks whose evidence is collected (collect)")
    parser.add_argument("--workers", type=int, default=4, help="workers of the sshd lab (collect)")
    parser.add_argument("--runs", type=int, default=3, help="collection runs (collect)")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--keep", help="copy the sizing run's witness history and the cluster's event log here")
    args = parser.parse_args()
    problem = _bench.requirements()
    if problem:
        print(f"cannot run: {problem}", file=sys.stderr)
        return 2
    _bench.interrupt_on_sigterm()
    load = Load()
    figures: Dict[str, Any] = {}
    parts: List[str] = ["overhead", "sizing", "collect"] if args.part == "all" else [args.part]
    with Session("w") as bench:
        for part in parts:
            figures[part] = {"overhead": part_overhead, "sizing": part_sizing, "collect": part_collect}[part](
                args, bench, load)
            ssh.close_all()
    print("\n" + load.summary())
    figures["load"] = load.figures()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
