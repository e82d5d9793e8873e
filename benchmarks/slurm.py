#!/usr/bin/env python3
"""Slurm's own log times against ours, on a real Slurm 22.05 (tests/labs/slurm.py: primary + backup slurmctld, four
slurmd), driven through experiments/vars/hosts-slurm.json only: the figure table of docs/platforms.md "Slurm".

    python benchmarks/slurm.py              # 3 runs (about 4 minutes under light load)
    python benchmarks/slurm.py --runs 5 --json figures.json
    python benchmarks/slurm.py --setup-only 10    # only the lab's set-up and removal, 10 times

Each run starts a fresh lab (its set-up time is the first figure), loads it with jobs (``sleep``, 1 CPU each),
then, with the real actions in-process:

1. **failover**: ``kill_master`` (SIGKILL of the active slurmctld); ours = the first poll of the ``command`` leader
   source that names the backup; Slurm's = the backup's log line "... taking over". Also Slurm's **stall**: from
   the kill to the first job Slurm starts afterwards ("sched: Allocate" / "backfill: Started"), with jobs waiting
   throughout (a submitter keeps adding them);
2. **failback**: ``restart_master(failback_timeout=...)``, which watches the leader after the restart; ours = its
   ``failback`` value (the first poll naming the primary again); Slurm's = the primary's "Running as primary
   controller"; both from the restart; the stall from the restart to the first job started after it;
3. **detection**: ``isolate_worker(busiest)``; ours = the first ``sinfo`` poll showing the node down and the
   ``declarations`` source's time (the controller's own "setting DOWN" line); Slurm's = that line;
4. **rescheduling by job id**: for every job running on the cut node, Slurm's = its "Allocate"/"Started" line on
   another node after the cut; ours = the first ``squeue`` poll showing it running elsewhere; and, where the witness
   exists (chaosscheduler.witness), for every witness task running there: its own start record on another node
   against Slurm's line for its job id. ``rejoin_worker``.

Ours minus Slurm's is the error of our observation; every figure is from the fault's ``started_at`` (when the kill or
the cut took effect). The load average is printed with the figures.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

from _bench import Load, interrupt_on_sigterm, median, secs, table

from chaosscheduler import actions, config, rollbacks  # noqa: E402
from chaosscheduler.hosts import ssh  # noqa: E402
from chaosscheduler.platforms import for_settings  # noqa: E402
from chaosscheduler.timing import wait_until  # noqa: E402
from tests.labs import slurm  # noqa: E402

STARTED = r"(?:sched: Allocate|backfill: _start_job: Started|backfill: Started) JobId=(\d+)"


class Submitter(threading.Thread):
    """Keeps work waiting: one ``sbatch`` every ``period`` seconds (blocking through a failover, as a user's
    would)."""

    def __init__(self, lab: slurm.Lab, period: float, seconds: int):
        super().__init__(daemon=True)
        self.lab, self.period, self.seconds = lab, period, seconds
        self.stopping = threading.Event()
        self.jobs: List[str] = []

    def run(self) -> None:
        while not self.stopping.wait(self.period):
            try:
                out = self.lab.client(["sbatch", "--parsable", "-o", "/dev/null", "--wrap", f"sleep {self.seconds}"],
                                      timeout=60, check=False)
            except Exception:
                continue
            if out.returncode == 0:
                self.jobs.append(out.stdout.strip())


def first_after(times: List[float], t0: float) -> Optional[float]:
    later = [t for t in times if t >= t0]
    return min(later) if later else None


def starts(lab: slurm.Lab, node: str) -> List[tuple]:
    """(time, job id, node list) of every job start in ``node``'s slurmctld log."""
    out = []
    with open(lab.log(node, "slurmctld"), errors="replace") as handle:
        for line in handle:
            found = re.search(r"^\[([0-9T:.-]+)\] .*?" + STARTED + r".*?(?:NodeList=| on )(\S+)", line)
            if found:
                at = lab_time(found.group(1))
                out.append((at, found.group(2), found.group(3)))
    return out


def lab_time(text: str) -> float:
    import datetime

    return datetime.datetime.fromisoformat(text).timestamp()


def one_run(home: str, index: int, load: Load) -> Dict[str, Any]:
    figures: Dict[str, Any] = {}
    with slurm.running(slurm.LabSpec(home=home)) as lab:
        figures["setup_s"] = lab.record["timings"]["total_s"]
        conf = lab.configuration()
        platform = for_settings(config.load(conf))
        for _ in range(24):  # work on every node: the busiest node will hold several jobs
            lab.client(["sbatch", "-o", "/dev/null", "--wrap", "sleep 600"])
        wait_until(lambda: sum(len(w["running"]) for w in platform.workers()) == 24, 60, interval=0.5,
                   message="24 jobs running")
        submitter = Submitter(lab, 0.5, 5)
        submitter.start()
        try:
            # 1. failover
            fault = actions.kill_master(target="leader", duration=600, configuration=conf)
            t0 = fault["started_at"]
            seen = wait_until(lambda: time.time() if platform.leader()["leader"] == "ctl2" else None, 120,
                              interval=0.05, message="ctl2 leads")
            taken = first_after(lab.log_times("ctl2", "taking over"), t0)
            figures["failover"] = {"slurm": taken - t0, "ours": seen - t0}
            try:
                stall = wait_until(lambda: first_after([s[0] for s in starts(lab, "ctl2")], t0), 180, interval=0.5,
                                   message="a job started after the failover")
            except TimeoutError:
                with open(lab.log("ctl2", "slurmctld"), errors="replace") as handle:
                    print("".join(handle.readlines()[-40:]), file=sys.stderr)
                print(lab.client(["squeue"], check=False).stdout, file=sys.stderr)
                raise
            figures["failover_stall_s"] = stall - t0
            load.sample()
            # 2. failback
            failback = rollbacks.restart_master(failback_timeout=120, configuration=conf)["failback"]
            r0 = failback["restarted_at"]
            primary = first_after(lab.log_times("ctl1", "Running as primary controller"), r0)
            figures["failback"] = {"slurm": primary - r0, "ours": failback["value"]}
            restart_stall = wait_until(lambda: first_after([s[0] for s in starts(lab, "ctl1")], primary), 180,
                                       interval=0.5, message="a job started after the failback")
            figures["failback_stall_s"] = restart_stall - r0
        finally:
            submitter.stopping.set()
            submitter.join(70)
        load.sample()
        # 3. detection, 4. rescheduling by job id (the witness's own start records too, where it exists)
        workload = start_witness(conf, platform, home, index)
        cut = actions.isolate_worker(worker="busiest", duration=600, configuration=conf)
        victim, t0 = cut["targets"][0], cut["started_at"]
        jobs = set(cut["running_tasks"][victim])
        moved: Dict[str, float] = {}
        dead_seen = None
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and (dead_seen is None or set(moved) < jobs):
            now = time.time()
            if dead_seen is None:
                state = next(w for w in platform.worker_states() if w["name"] == victim)
                if not state["alive"]:
                    dead_seen, declared = now, state["dead_declarations"]
            for task in platform.task_records():
                if task["id"] in jobs and task["running"] and victim not in task["workers"] and \
                        task["id"] not in moved:
                    moved[task["id"]] = now
            time.sleep(0.2)
        down = first_after(lab.log_times("ctl1", f"{victim} not responding, setting DOWN"), t0)
        figures["detection"] = {"slurm": down - t0 if down else None,
                                "ours_poll": dead_seen - t0 if dead_seen else None,
                                "ours_declared": (first_after(declared, t0) - t0) if dead_seen and declared else None}
        restarted = {job: at for at, job, nodes in starts(lab, "ctl1") if job in jobs and at >= t0
                     and victim not in slurm_nodes(nodes)}
        figures["rescheduling"] = [{"job": job, "slurm": restarted[job] - t0 if job in restarted else None,
                                    "ours": moved[job] - t0 if job in moved else None} for job in sorted(jobs, key=int)]
        figures["lost_jobs"] = len(jobs)
        if workload is not None:
            figures["witness"] = witness_figures(workload, lab, victim, t0)
        rollbacks.rejoin_worker(timeout=120, configuration=conf)
        ssh.close_all()
    return figures


WITNESS = {"rate": 4, "duration": 60, "submit_timeout": 30, "submitter": {
    "type": "command", "on": "ctl1", "job_id_regex": "^(\\d+)", "cancel_argv": ["scancel", "{job_ids}"],
    "argv": ["sbatch", "--parsable", "--output=/dev/null", "--job-name={task}", "--wrap", "{command}"]}}


def start_witness(conf: Dict[str, Any], platform: Any, home: str, index: int) -> Any:
    """A witness submitting long tasks (so that the cut node holds some), or None without chaosscheduler.witness."""
    try:
        from chaosscheduler import witness
    except ImportError:
        return None
    options = dict(WITNESS, submitter=(conf.get("chaosscheduler_witness") or {}).get("submitter") or
                   WITNESS["submitter"])
    settings = config.load({k: v for k, v in conf.items() if k != "chaosscheduler_witness"})
    workload = witness.start(settings, platform, os.path.join(home, "runs", f"bench{index}"), options,
                             run_id=f"bench{index}")
    wait_until(lambda: len(workload.history(collect=False).events) > 200, 120, interval=1,
               message="the witness under way")
    return workload


def witness_figures(workload: Any, lab: slurm.Lab, victim: str, t0: float) -> List[Dict[str, Any]]:
    """For each witness task running on the cut node: when it started again elsewhere by its own record, and when
    Slurm's log says its job started again elsewhere (by job id)."""
    from chaosscheduler import witness

    workload.stop()
    history = workload.history()
    found = witness.rescheduling(history, [victim], t0)
    job_of = {e["task"]: e.get("job_id") for e in history.events if e.get("type") == "ok"}
    restarted = {job: at for at, job, nodes in starts(lab, "ctl1") if at >= t0 and victim not in slurm_nodes(nodes)}
    return [{"task": v["task"], "job": job_of.get(v["task"]), "ours": v["latency"],
             "slurm": (restarted[job_of[v["task"]]] - t0) if job_of.get(v["task"]) in restarted else None}
            for v in found["tasks"]]


def slurm_nodes(text: str) -> List[str]:
    from chaosscheduler.platforms.commands import expand_hostlist

    return expand_hostlist(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--setup-only", type=int, metavar="N", help="only start and remove the lab N times")
    args = parser.parse_args()
    problem = slurm.requirements()
    if problem:
        print(f"skipped: {problem}", file=sys.stderr)
        return 2
    interrupt_on_sigterm()
    home = tempfile.mkdtemp(prefix="csbs", dir="/tmp")
    os.environ["CHAOSSCHEDULER_HOME"] = home
    load = Load()
    runs = []
    if args.setup_only:
        try:
            return setup_only(home, args.setup_only, load)
        finally:
            shutil.rmtree(home, ignore_errors=True)
    try:
        for index in range(args.runs):
            runs.append(one_run(home, index, load))
            print(f"run {index + 1}: {json.dumps(runs[-1])}", flush=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print()
    print(report(runs))
    print(load.summary())
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"runs": runs, "load": load.figures()}, handle, indent=2)
    return 0


def setup_only(home: str, count: int, load: Load) -> int:
    """Start and remove the lab ``count`` times: how long until every node is idle in Slurm, and the removal."""
    ups, downs, phases = [], [], {}
    for _ in range(count):
        lab = slurm.up(slurm.LabSpec(home=home))
        ups.append(lab.record["timings"]["total_s"])
        for key, value in lab.record["timings"].items():
            phases.setdefault(key, []).append(value)
        started = time.monotonic()
        slurm.down(lab.state_dir)
        downs.append(time.monotonic() - started)
        load.sample()
    rows = [["up: every node idle, every sshd answering", secs(min(ups)), secs(median(ups)), secs(max(ups))],
            ["down: processes and namespaces removed", secs(min(downs)), secs(median(downs)), secs(max(downs))]]
    rows += [[f"  up, {k[:-2]} done at", secs(min(v)), secs(median(v)), secs(max(v))]
             for k, v in sorted(phases.items()) if k != "total_s"]
    print(table([f"Slurm lab ({count} times; 2 controllers, 4 workers)", "min", "median", "max"], rows))
    print(load.summary())
    return 0


def report(runs: List[Dict[str, Any]]) -> str:
    def span(values: List[Optional[float]]) -> str:
        values = [v for v in values if v is not None]
        if not values:
            return "-"
        return f"{min(values):.2f} … {max(values):.2f} s (median {median(values):.2f})"

    def error(pairs: List[tuple]) -> str:
        diffs = [ours - theirs for ours, theirs in pairs if ours is not None and theirs is not None]
        return span(diffs).replace(" s (", " s (") if diffs else "-"

    rows = [["lab set-up (up to every node idle)", span([r["setup_s"] for r in runs]), "", ""]]
    for key, label in (("failover", "election: backup takes over after kill -9"),
                       ("failback", "failback: primary takes control back")):
        rows.append([label, span([r[key]["slurm"] for r in runs]), span([r[key]["ours"] for r in runs]),
                     error([(r[key]["ours"], r[key]["slurm"]) for r in runs])])
    rows.append(["stall: kill -> first job started", span([r["failover_stall_s"] for r in runs]), "", ""])
    rows.append(["stall: restart -> first job started", span([r["failback_stall_s"] for r in runs]), "", ""])
    rows.append(["detection (sinfo poll)", span([r["detection"]["slurm"] for r in runs]),
                 span([r["detection"]["ours_poll"] for r in runs]),
                 error([(r["detection"]["ours_poll"], r["detection"]["slurm"]) for r in runs])])
    rows.append(["detection (declarations source)", span([r["detection"]["slurm"] for r in runs]),
                 span([r["detection"]["ours_declared"] for r in runs]),
                 error([(r["detection"]["ours_declared"], r["detection"]["slurm"]) for r in runs])])
    jobs = [j for r in runs for j in r["rescheduling"]]
    rows.append([f"rescheduling by job id, squeue poll ({len(jobs)} jobs)", span([j["slurm"] for j in jobs]),
                 span([j["ours"] for j in jobs]), error([(j["ours"], j["slurm"]) for j in jobs])])
    tasks = [t for r in runs for t in r.get("witness", [])]
    if tasks:
        rows.append([f"rescheduling by identity, witness ({len(tasks)} tasks)", span([t["slurm"] for t in tasks]),
                     span([t["ours"] for t in tasks]), error([(t["ours"], t["slurm"]) for t in tasks])])
    return table(["what (from the fault)", "Slurm's log", "ours", "ours - Slurm's"], rows)


if __name__ == "__main__":
    sys.exit(main())
