"""``chaosscheduler``: manage the embedded cluster and heal faults from the command line.

    chaosscheduler testbed up [--name N] [--masters 3] [--workers 4] [--etcd-members 1] [--replace]
    chaosscheduler testbed status [--name N] [--json]
    chaosscheduler testbed restart-node NODE [--name N]
    chaosscheduler testbed down [--name N] [--force]
    chaosscheduler heal [--from-hosts] [--dry-run]
    chaosscheduler faults [--all] [--json]            (each fault with its run, and whether that run is alive)
    chaosscheduler userns -- COMMAND [ARGS...]     (non-root: run inside an unprivileged user namespace)
    chaosscheduler report JOURNAL|RUN [...] [-o report.html] [--png chart.png] [--title T]
"""

import argparse
import json
import sys
from typing import Any, Dict, List, Optional

from .errors import ChaosSchedulerError

__all__ = ["main"]


def _testbed_parser(sub: Any) -> None:
    tb = sub.add_parser("testbed", help="the embedded reference cluster")
    tsub = tb.add_subparsers(dest="action", required=True)
    up = tsub.add_parser("up", help="start a cluster and wait until it is healthy")
    up.add_argument("--name", default="default")
    up.add_argument("--masters", type=int, default=3)
    up.add_argument("--workers", type=int, default=4)
    up.add_argument("--etcd-members", type=int, default=1)
    up.add_argument("--election-ttl", type=int, default=2, help="leader lease TTL in seconds")
    up.add_argument("--heartbeat-ttl", type=int, default=5, help="worker lease TTL in seconds")
    up.add_argument("--heartbeat-interval", type=float, default=0.0, help="seconds between keep-alives")
    up.add_argument("--slots", type=int, default=4)
    up.add_argument("--task-duration", type=float, default=4.0)
    up.add_argument("--load-rate", type=float, default=2.0, help="jobs per second; 0 = no load generator")
    up.add_argument("--no-reschedule", action="store_true", help="broken knob: never re-run a lost worker's tasks")
    up.add_argument("--no-campaign", action="store_true", help="broken knob: followers never take over")
    up.add_argument("--network", choices=["auto", "netns", "loopback"], default="auto")
    up.add_argument("--sshd", action="store_true", help="an sshd in every node's namespace (the cluster as hosts)")
    up.add_argument("--prometheus", action="store_true", help="a Prometheus scraping every node")
    up.add_argument("--replace", action="store_true", help="remove an existing cluster of the same name first")
    up.add_argument("--timeout", type=float, default=30.0)
    for name in ("status", "down", "restart-node"):
        p = tsub.add_parser(name)
        p.add_argument("--name", default="default")
        if name == "status":
            p.add_argument("--json", action="store_true")
        if name == "down":
            p.add_argument("--force", action="store_true", help="also when cluster.json is unreadable")
        if name == "restart-node":
            p.add_argument("node")


def _testbed(args: argparse.Namespace) -> int:
    from . import testbed

    if args.action == "up":
        spec = testbed.ClusterSpec(name=args.name, masters=args.masters, workers=args.workers,
                                   etcd_members=args.etcd_members, election_ttl=args.election_ttl,
                                   heartbeat_ttl=args.heartbeat_ttl, heartbeat_interval=args.heartbeat_interval,
                                   slots=args.slots, task_duration=args.task_duration, load_rate=args.load_rate,
                                   reschedule=not args.no_reschedule, campaign=not args.no_campaign,
                                   network=args.network, sshd=args.sshd, prometheus=args.prometheus)
        tb = testbed.up(spec, replace=args.replace, timeout=args.timeout)
        _print_status(tb.status())
        return 0
    if args.action == "down":
        spec = testbed.ClusterSpec(name=args.name)
        result = testbed.down(spec.state_dir, force=args.force)
        print(f"cluster {args.name}: removed {len(result['namespaces_removed'])} namespaces, "
              f"every process and {spec.state_dir}")
        return 0
    tb = testbed.find(args.name)
    if args.action == "restart-node":
        proc = tb.restart_node(args.node)
        print(f"{args.node} started again (pid {proc['pid']})")
        return 0
    status = tb.status()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        _print_status(status)
    return 0 if status["problem"] is None else 3


def _print_status(status: Dict[str, Any]) -> None:
    print(f"cluster {status['name']} ({status['mode']} network) at {status['state_dir']}")
    print(f"leader: {status['leader'] or '-'}   health: {status['problem'] or 'healthy'}")
    for node in status["nodes"]:
        health = node.get("health") or {}
        extra = ""
        if node["role"] == "master" and health:
            extra = "leader" if health.get("leader") else "follower"
        elif node["role"] == "worker" and health:
            extra = f"{len(health.get('running', []))} running" + ("" if health.get("registered") else ", unregistered")
        state = "running" if node["running"] else "STOPPED"
        print(f"  {node['name']:<11} {node['role']:<7} {state:<8} pid {node['pid'] or '-':<7} "
              f"{node['address']:<20} {node['netns'] or '':<22} {extra}")
    print(f"events: {status['events']}")


def _heal(args: argparse.Namespace) -> int:
    from .heal import heal

    if args.concurrency is not None and not 1 <= args.concurrency <= 1024:
        print(f"chaosscheduler heal: --concurrency must be from 1 to 1024 hosts, got {args.concurrency}",
              file=sys.stderr)
        return 2
    report = heal(args.home or None, from_hosts=args.from_hosts, dry_run=args.dry_run, concurrency=args.concurrency,
                  kubernetes_namespaces=args.kubernetes_namespace)
    verb = "would undo" if args.dry_run else "undone"
    for line in report["lines"]:
        print(line)
    for error in report["errors"]:
        print(f"chaosscheduler heal: {error}", file=sys.stderr)
    print(f"{verb}: {len(report['undone'])} fault(s) from the ledger, {len(report['tables'])} table(s) found on "
          f"hosts; errors: {len(report['errors'])}")
    return 1 if report["errors"] else 0


def _faults(args: argparse.Namespace) -> int:
    import time

    from .ledger import OPEN_STATES, Ledger
    from .testbed.spec import default_home

    from .runs import run_states

    home = args.home or default_home()
    records = Ledger(home).all()
    if not args.all:
        records = [r for r in records if r.get("state") in OPEN_STATES]
    states = run_states(home, [r.get("run_id") for r in records])
    for r in records:
        r["run_state"] = states.get(r.get("run_id"), "unknown")
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    if not records:
        print("no open fault" if not args.all else "the ledger is empty")
    for r in records:
        deadline = r.get("deadline")
        left = f"expires in {deadline - time.time():.0f} s" if deadline and r.get("state") in OPEN_STATES else ""
        print(f"{r['id']}  {r.get('action', r['kind']):<18} {r.get('state'):<9} {','.join(r.get('targets', []))}  "
              f"run {r.get('run_id', '?')} ({r['run_state']})  {left}".rstrip())
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import write_report

    result = write_report(args.journals, args.output, title=args.title, png=args.png)
    for problem in result["unreadable"]:
        print(f"chaosscheduler report: skipped {problem}", file=sys.stderr)
    print(f"report of {result['runs']} run(s) written to {result['output']}")
    if result["png"]:
        print(f"chart(s) as PNG ({result['png']['method']}): {', '.join(result['png']['files'])}")
    return 1 if result["unreadable"] else 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="chaosscheduler", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _testbed_parser(sub)
    heal = sub.add_parser("heal", help="undo every open fault recorded in the ledger")
    heal.add_argument("--home", default="", help="state home (default: $CHAOSSCHEDULER_HOME)")
    heal.add_argument("--from-hosts", action="store_true",
                      help="also find our nft tables on the hosts themselves (when the ledger is lost or corrupt)")
    heal.add_argument("--dry-run", action="store_true", help="say what would be undone, undo nothing")
    heal.add_argument("--concurrency", type=int, default=None, metavar="N",
                      help="hosts scanned at once by --from-hosts (default 128; faults are undone as wide as they "
                           "were injected)")
    heal.add_argument("--kubernetes-namespace", action="append", default=[], metavar="NS",
                      help="with --from-hosts: also look in this namespace for our NetworkChaos, NetworkPolicies "
                           "and pod labels (kubeconfig or KUBERNETES_* environment)")
    userns = sub.add_parser("userns", help="run a command in an unprivileged user namespace (no root needed)")
    userns.add_argument("argv", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    faults = sub.add_parser("faults", help="list the faults in the ledger")
    faults.add_argument("--home", default="")
    faults.add_argument("--all", action="store_true", help="closed faults too")
    faults.add_argument("--json", action="store_true")
    report = sub.add_parser("report", help="render journals as one self-contained HTML page with timeline charts")
    report.add_argument("journals", nargs="+", metavar="JOURNAL",
                        help="journal(s) written by chaos run, or a run's record (its directory under "
                             "$CHAOSSCHEDULER_HOME/runs, its run.json, or its run id) for a run killed before it "
                             "wrote its journal")
    report.add_argument("-o", "--output", default="report.html", help="the HTML file to write (default report.html)")
    report.add_argument("--title", default="", help="page title (default: the experiment's, or 'N runs')")
    report.add_argument("--png", default="", metavar="PATH",
                        help="also write each run's timeline chart as PNG (cairosvg if installed, else chromium)")
    args = parser.parse_args(argv)
    try:
        if args.command == "testbed":
            return _testbed(args)
        if args.command == "heal":
            return _heal(args)
        if args.command == "faults":
            return _faults(args)
        if args.command == "report":
            return _report(args)
        if args.command == "userns":
            from .userns import run

            return run(args.argv[1:] if args.argv[:1] == ["--"] else args.argv)
    except ChaosSchedulerError as e:
        print(f"chaosscheduler: {e}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
