#!/usr/bin/env python3
"""Faults over many SSH hosts: partition_workers / heal_partition on N hosts of the sshd lab, serial vs parallel,
beside the floor this machine sets (parallel-ssh, or N openssh clients, sending the same argv to the same hosts in
the same run), and the probes' polling cost at the default poll interval.

    python benchmarks/fanout.py                   # 8, 32 and 128 hosts (about 4 minutes on 2 quiet cores)
    python benchmarks/fanout.py --sizes 8,32,128,256 --repeat 2
    python benchmarks/fanout.py --quick           # 4 hosts, one run: what CI runs

For each size the lab is ``testbed up --masters 1 --workers N --sshd`` (no load generator; a slow worker heartbeat
so the N worker processes cost little CPU), reached from its switch namespace by a plain ``/bin/sh`` account allowed
our privileged commands through sudo (root's .bashrc costs 0.12 s per command here). Per mode:

* **apply** — ``partition_workers(workers="all", peers="masters")`` call -> return, cold (this process has no SSH
  connection yet): target resolution, the ledger, the reaper, connecting every host, the rules, the remote timers;
* **heal** — ``heal_partition`` call -> return, warm (the connections of the apply are reused);
* **heal CLI** — ``chaosscheduler heal`` in a new process (cold), parallel only;
* **spread** — the last host's ``applied_at`` (``removed_at``) minus the first's, from the fault record;
* **our CPU** — this process (its threads included); **hosts' CPU** — every sshd of the lab and what it runs
  (sessions, sudo, nft), from a cpuacct cgroup: the simulated hosts share this machine's 2 cores with us.

The floor runs in a process of its own inside the switch namespace: it connects to every host and authenticates
(parallel-ssh's native client, pool as wide as ours; else one openssh client per host), sends ``sudo -n -- nft -f -``
with the same ruleset on stdin (a table of its own), then the same ``setsid`` timer; heal sends the same ``nft
delete table`` and ``kill`` of the timer's process group. Targets (issue 15): 32 hosts, apply and heal each <= 1.5 s; 128 hosts, within 1.5x the
floor.
"""

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from typing import Any, Dict, List, Optional

import _bench
from _bench import Load, Session, median, secs, table, verdict

from chaosscheduler import actions, rollbacks  # noqa: E402
from chaosscheduler.faults.rules import build_ruleset  # noqa: E402
from chaosscheduler.hosts import ssh  # noqa: E402
from chaosscheduler.testbed import remote  # noqa: E402

SUDO = ["/usr/sbin/nft", "/usr/bin/kill", "/usr/bin/ss", "/usr/bin/setsid", "/usr/bin/pkill", "/usr/bin/cat"]
CGROUP_ROOT = "/sys/fs/cgroup/cpuacct"

FLOOR = r"""
import json, subprocess, sys, time
hosts, user, key, known, width, ruleset, timer, heal1, heal2 = json.loads(sys.stdin.read())
out = {}
try:
    from pssh.clients import ParallelSSHClient
    from gevent import joinall
    from importlib.metadata import version
    tool = "parallel-ssh %s" % version("parallel-ssh")
except ImportError:
    tool = None

def line(argv):
    import shlex
    return shlex.join(["sudo", "-n", "--"] + argv)

if tool:
    t0 = time.time()
    client = ParallelSSHClient(hosts, user=user, pkey=key, pool_size=width, num_retries=1, timeout=30)
    joinall(client.connect_auth(), raise_error=True)
    t1 = time.time()
    outs = client.run_command(line(["nft", "-f", "-"]))
    for o in outs:
        o.stdin.write(ruleset)
        o.stdin.flush()
        o.client.eagain(o.channel.send_eof)
    client.join(outs)
    t2 = time.time()
    outs2 = client.run_command(line(timer))
    client.join(outs2)
    pids = {o.host: (list(o.stdout) or ["0"])[0].strip() for o in outs2}
    t3 = time.time()
    bad = [o.host for o in list(outs) + list(outs2) if o.exit_code != 0]
    h0 = time.time()
    outs = client.run_command(line(heal1))
    client.join(outs)
    outs2 = client.run_command(line(heal2[:-1] + ["-%s"]), host_args=[(pids[h],) for h in hosts])
    client.join(outs2)
    bad += [o.host for o in list(outs) + list(outs2) if o.exit_code != 0]
    h1 = time.time()
    out = {"tool": tool, "connect": t1 - t0, "apply": t3 - t0, "rules": t2 - t1, "heal": h1 - h0, "failed": bad}
else:
    base = ["ssh", "-q", "-i", key, "-o", "UserKnownHostsFile=" + known, "-o", "BatchMode=yes", "-l", user]
    def batch(argvs, stdin=None):
        procs = [subprocess.Popen(base + [h, line(argv)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True) for h, argv in zip(hosts, argvs)]
        outs = [p.communicate(stdin or "")[0] for p in procs]
        return [h for h, p in zip(hosts, procs) if p.returncode != 0], outs
    t0 = time.time()
    bad, _ = batch([["nft", "-f", "-"]] * len(hosts), ruleset)
    more, outs = batch([timer] * len(hosts))
    pids = [(o.strip().splitlines() or ["0"])[0] for o in outs]
    t1 = time.time()
    bad += more + batch([heal1] * len(hosts))[0] + batch([heal2[:-1] + ["-" + p] for p in pids])[0]
    out = {"tool": "%d openssh clients" % len(hosts), "connect": None, "apply": t1 - t0, "rules": None,
           "heal": time.time() - t1, "failed": bad}
print(json.dumps(out))
"""


class HostsCPU:
    """CPU of every sshd of a lab and of what they run, through a cpuacct cgroup (None where there is none)."""

    def __init__(self, state_dir: str):
        self.path: Optional[str] = None
        self.pids: List[int] = []
        if not os.path.isdir(CGROUP_ROOT) or not os.access(CGROUP_ROOT, os.W_OK):
            return
        path = os.path.join(CGROUP_ROOT, f"chaosscheduler-bench-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        try:
            os.mkdir(path)
            self.path = path
            with open(os.path.join(state_dir, "cluster.json")) as handle:
                processes = json.load(handle)["processes"]
            for name, proc in processes.items():
                if name.startswith("sshd@"):
                    with open(os.path.join(path, "cgroup.procs"), "w") as handle:
                        handle.write(str(proc["pid"]))
                    self.pids.append(proc["pid"])
        except OSError as e:
            print(f"hosts' CPU not measured: {e}", file=sys.stderr)
            self.close()

    def seconds(self) -> Optional[float]:
        if self.path is None:
            return None
        with open(os.path.join(self.path, "cpuacct.usage")) as handle:
            return int(handle.read()) / 1e9

    def close(self) -> None:
        """Move what is left in the group back to the root group and remove it (sessions still exiting: retried)."""
        if self.path is None:
            return
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError):
                with open(os.path.join(self.path, "cgroup.procs")) as handle:
                    left = handle.read().split()
                for pid in left:
                    with contextlib.suppress(OSError):
                        with open(os.path.join(CGROUP_ROOT, "cgroup.procs"), "w") as out:
                            out.write(pid)
                os.rmdir(self.path)
                self.path = None
                return
            if time.monotonic() > deadline:
                print(f"cleanup: could not remove the cgroup {self.path}", file=sys.stderr)
                return
            time.sleep(0.1)


def our_cpu() -> float:
    """This process and its children that ended (a heal CLI run)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def make_account() -> str:
    name = "csb" + uuid.uuid4().hex[:7]
    subprocess.run(["useradd", "--system", "--shell", "/bin/sh", "--home-dir", "/nonexistent", "--no-create-home",
                    name], check=True, capture_output=True)
    subprocess.run(["usermod", "--password", "*", name], check=True, capture_output=True)
    with open(f"/etc/sudoers.d/{name}", "w") as handle:
        handle.write(f"{name} ALL=(root) NOPASSWD: {', '.join(SUDO)}\n")
    os.chmod(f"/etc/sudoers.d/{name}", 0o440)
    return name


def remove_account(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"/etc/sudoers.d/{name}")
    subprocess.run(["userdel", "--force", name], capture_output=True)


def measured(what: Any, cgroup: HostsCPU) -> Dict[str, Any]:
    c0, h0, t0 = our_cpu(), cgroup.seconds(), time.monotonic()
    value = what()
    elapsed = time.monotonic() - t0
    h1 = cgroup.seconds()
    return {"value": value, "total": elapsed, "ours": our_cpu() - c0,
            "hosts": None if h0 is None or h1 is None else h1 - h0}


def one_size(bench: Session, n: int, user: str, repeat: int, load: Load, floor: bool) -> Dict[str, Any]:
    tb = bench.cluster(timeout=max(60.0, 1.0 * n), masters=1, workers=n, load_rate=0, heartbeat_ttl=60, sshd=True)
    cgroup = HostsCPU(tb.state_dir)
    try:
        with open(remote.vars_path(tb.state_dir)) as handle:
            configuration = json.load(handle)["configuration"]
        configuration["chaosscheduler_hosts"]["ssh"].update(user=user, sudo=True)
        configuration.update(chaosscheduler_max_worker_share=1, chaosscheduler_home=bench.home)
        rows: Dict[str, List[Dict[str, Any]]] = {}
        for _ in range(repeat):
            for mode, width in (("serial", 1), ("parallel", n)):
                cfg = dict(configuration, chaosscheduler_concurrency=width)
                ssh.close_all()
                time.sleep(0.5)  # the closed sessions' sshd children exit before the next measure
                load.sample()
                apply = measured(lambda: actions.partition_workers(workers="all", peers="masters", duration=300,
                                                                   configuration=cfg), cgroup)
                record = apply["value"]
                heal = measured(lambda: rollbacks.heal_partition(configuration=cfg), cgroup)
                stored = bench.ledger.get(record["id"])
                rows.setdefault(f"{mode} apply", []).append(dict(apply, value=None, spread=record["applied_spread"],
                                                                 connect=record["fanout"]["connect_s"]))
                rows.setdefault(f"{mode} heal", []).append(dict(heal, value=None,
                                                                spread=stored.get("removed_spread")))
            # heal from another process (cold connections), parallel
            record = actions.partition_workers(workers="all", peers="masters", duration=300,
                                               configuration=dict(configuration, chaosscheduler_concurrency=n))
            ssh.close_all()
            cli = measured(lambda: subprocess.run([sys.executable, "-m", "chaosscheduler.cli", "heal"],
                                                  capture_output=True, text=True, timeout=600,
                                                  env=dict(os.environ, CHAOSSCHEDULER_HOME=bench.home)), cgroup)
            stored = bench.ledger.get(record["id"])
            if cli["value"].returncode != 0:  # said in the table; the fault is undone here so the run goes on
                print(f"heal CLI failed at {n} hosts: {cli['value'].stderr.strip().splitlines()[-1][:300]}",
                      flush=True)
                rollbacks.heal_partition(configuration=dict(configuration, chaosscheduler_concurrency=n))
            else:
                rows.setdefault("parallel heal CLI (cold)", []).append(dict(cli, value=None,
                                                                            spread=stored.get("removed_spread")))
            if floor:
                rows.setdefault("floor", []).append(run_floor(tb, configuration, user, n, cgroup))
        return {"n": n, "rows": rows}
    finally:
        ssh.close_all()
        cgroup.close()
        bench.remove_cluster(tb)


def run_floor(tb: Any, configuration: Dict[str, Any], user: str, n: int, cgroup: HostsCPU) -> Dict[str, Any]:
    hosts = configuration["chaosscheduler_hosts"]
    fault_id = "fb" + uuid.uuid4().hex[:10]
    peers = [m["host"] for m in hosts["masters"]]
    ruleset = build_ruleset(fault_id, peers, "both", 1.0, 300, [22])
    table_ = f"chaosscheduler_{fault_id}"
    timer = ssh.timer_argv(fault_id, 300, ["nft", "delete", "table", "inet", table_])
    heal2 = ["kill", "-s", "TERM", "--", "-PGID"]  # the timer's process group, as ours (its PID per host)
    payload = json.dumps([[w["host"] for w in hosts["workers"]], user, hosts["ssh"]["key_file"],
                          hosts["ssh"]["known_hosts"], n, ruleset, timer, ["nft", "delete", "table", "inet", table_],
                          heal2])
    h0, c0 = cgroup.seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(["ip", "netns", "exec", hosts["connect_netns"], sys.executable, "-c", FLOOR],
                          input=payload, capture_output=True, text=True, timeout=600)
    h1, c1 = cgroup.seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"the floor failed: {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["ours"] = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
    result["hosts"] = None if h0 is None or h1 is None else h1 - h0
    if result["failed"]:
        raise RuntimeError(f"the floor's commands failed on {result['failed'][:5]}")
    return result


def report(results: List[Dict[str, Any]], load: Optional[Load] = None) -> None:
    for result in results:
        n, rows = result["n"], result["rows"]
        out = []
        for label in ("serial apply", "serial heal", "parallel apply", "parallel heal", "parallel heal CLI (cold)"):
            runs = rows.get(label) or []
            if not runs:
                continue
            total = median([r["total"] for r in runs])
            hosts = [r["hosts"] for r in runs if r["hosts"] is not None]
            spread = [r["spread"] for r in runs if r.get("spread") is not None]
            connect = [r["connect"] for r in runs if r.get("connect") is not None]
            out.append([label, len(runs), secs(total), secs(median(connect)) if connect else "-",
                        secs(median(spread), 3) if spread else "-", f"{total / n * 1000:.1f} ms",
                        secs(median([r["ours"] for r in runs])), secs(median(hosts)) if hosts else "-"])
        floors = rows.get("floor") or []
        for key, label in (("apply", "apply"), ("heal", "heal")):
            if floors:
                total = median([f[key] for f in floors])
                hosts = [f["hosts"] for f in floors if f["hosts"] is not None]
                connect = [f["connect"] for f in floors if f.get("connect") is not None]
                out.append([f"floor {label}: {floors[0]['tool']}", len(floors), secs(total),
                            secs(median(connect)) if connect and key == "apply" else "-", "-",
                            f"{total / n * 1000:.1f} ms", secs(median([f['ours'] for f in floors])),
                            secs(median(hosts)) if hosts else "-"])
        print()
        print(f"Fan-out over {n} SSH hosts (plain account + sudo): partition_workers / heal_partition")
        print(table(["mode", "n", "total", "connect", "spread", "per host", "our CPU", "hosts' CPU"], out))
        targets = []
        apply = median([r["total"] for r in rows.get("parallel apply", [])])
        heal = median([r["total"] for r in rows.get("parallel heal", [])])
        if n == 32:
            targets.append(f"target 32 hosts: apply {apply:.2f} s, heal {heal:.2f} s <= 1.5 s: "
                           f"{verdict(apply <= 1.5 and heal <= 1.5)}")
        if floors:
            fa, fh = median([f["apply"] for f in floors]), median([f["heal"] for f in floors])
            targets.append(f"ratio to the floor: apply {apply / fa:.2f}x, heal {heal / fh:.2f}x "
                           f"(target at 128 hosts: <= 1.5x: {verdict(apply / fa <= 1.5 and heal / fh <= 1.5)})")
        for line in targets:
            print(line, flush=True)
    if load is not None:
        print(load.summary())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 hosts, one run (CI)")
    parser.add_argument("--sizes", default="8,32,128", help="host counts, comma-separated (default 8,32,128)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size and mode")
    parser.add_argument("--no-floor", action="store_true", help="skip the parallel-ssh / openssh floor")
    parser.add_argument("--no-polling", action="store_true", help="skip the polling section")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    reason = _bench.requirements()
    if reason is None and not os.path.exists("/usr/sbin/sshd"):
        reason = "sshd is not installed (apt-get install openssh-server)"
    if reason is None and subprocess.run(["which", "sudo", "useradd"], capture_output=True).returncode != 0:
        reason = "sudo and useradd are needed for the plain account"
    if reason:
        print(f"fanout benchmark skipped: {reason}")
        return 0
    _bench.interrupt_on_sigterm()
    import logging

    logging.getLogger("chaostoolkit").setLevel(logging.ERROR)  # no running tasks without Prometheus: said once here
    sizes = [4] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    load = Load()
    results: List[Dict[str, Any]] = []
    polling: Optional[Dict[str, Any]] = None
    account = None
    try:
        with Session("fanout") as bench:
            account = make_account()
            for n in sizes:
                print(f"{n} hosts ... (load {os.getloadavg()[0]:.2f})", flush=True)
                results.append(one_size(bench, n, account, 1 if args.quick else args.repeat, load,
                                        not args.no_floor))
                report(results[-1:])  # each size's table as soon as it is measured
            if not args.no_polling:
                import _polling

                polling = _polling.measure(bench, load, account, quick=args.quick)
    except KeyboardInterrupt:
        print("interrupted: everything started was removed", file=sys.stderr)
        return 130
    finally:
        if account:
            remove_account(account)
    print()
    print(load.summary())
    if polling:
        import _polling

        _polling.report(polling)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"sizes": results, "polling": polling, "load": load.figures()}, handle, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
