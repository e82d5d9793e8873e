"""``chaosscheduler heal``: undo every open fault of the ledger and, with ``from_hosts``, every table of ours still
on the hosts (found by its name prefix: the kernel as the record when the ledger is lost or corrupt)."""

import contextlib
import os
import signal
from typing import Any, Dict, List, Optional

from . import procs
from .errors import ChaosSchedulerError, LedgerError
from .faults import undo_open
from .faults.latency import latency_leftovers, remove_latency_chain
from .faults.rules import tables_in_ruleset
from .hosts import CommandError, LocalHost, NetnsHost
from .ledger import Ledger
from .testbed import network
from .testbed.spec import default_home

__all__ = ["heal", "hosts_to_scan"]


def hosts_to_scan(home: str) -> List[LocalHost]:
    """This machine's root namespace and the namespaces of every embedded cluster under ``home``."""
    hosts: List[LocalHost] = [LocalHost()]
    clusters = os.path.join(home, "testbed")
    names = set(os.listdir(clusters)) if os.path.isdir(clusters) else set()
    for netns in network.existing_namespaces():
        parts = netns.split("-")
        if len(parts) >= 3 and parts[0] == "cs" and parts[1] in names:
            hosts.append(NetnsHost(netns))
    return hosts


def heal(home: Optional[str] = None, from_hosts: bool = False, dry_run: bool = False,
         kubernetes_namespaces: Optional[List[str]] = None) -> Dict[str, Any]:
    home = home or default_home()
    ledger = Ledger(home)
    report: Dict[str, Any] = {"undone": [], "tables": [], "errors": [], "lines": []}
    try:
        open_faults = ledger.open_faults()
        if dry_run:
            report["undone"] = [f["id"] for f in open_faults]
            report["lines"] += [f"{f['id']} {f.get('action')} on {', '.join(f['targets'])}" for f in open_faults]
        else:
            result = undo_open(ledger)
            report["undone"], report["errors"] = result["undone"], list(result["errors"])
            report["lines"] += [f"undone {fid}" for fid in result["undone"]]
    except LedgerError as e:
        if from_hosts:  # looking on the hosts is the remedy for an unusable ledger
            report["lines"].append(f"{e}; looking on the hosts instead")
        else:
            report["errors"].append(str(e))
    if from_hosts:
        for host in hosts_to_scan(home):
            try:
                listing = host.run(["nft", "list", "tables"], timeout=15).stdout
            except (CommandError, ChaosSchedulerError) as e:
                report["errors"].append(f"{host.name}: {e}")
                continue
            for table in tables_in_ruleset(listing):
                report["tables"].append(f"{host.name}:{table}")
                report["lines"].append(f"{'found' if dry_run else 'removing'} {table} on {host.name}")
                if not dry_run:
                    try:
                        host.run(["nft", "delete", "table", "inet", table], timeout=15)
                    except CommandError as e:
                        report["errors"].append(f"{host.name}: {e}")
            # the NFQUEUE latency fallback lives in iptables chains csq-<id>, jumped to by a tagged rule
            saved = host.run(["iptables-save", "-t", "filter"], timeout=15, check=False).stdout
            for hook, fault_id in latency_leftovers(saved):
                report["tables"].append(f"{host.name}:csq-{fault_id}")
                report["lines"].append(f"{'found' if dry_run else 'removing'} chain csq-{fault_id} on {host.name}")
                if not dry_run:
                    remove_latency_chain(host, hook, fault_id)
        from .faults.kubernetes import heal_cluster  # objects of ours in Kubernetes, found by their labels

        found = heal_cluster(ledger, kubernetes_namespaces or [], dry_run)
        report["tables"] += found["found"]
        report["errors"] += found["errors"]
        report["lines"] += [f"{'found' if dry_run else 'removing'} {item}" for item in found["found"]]
        if not dry_run:
            for pid in procs.pids_with_marker(f"reaper:{home}"):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
    return report
