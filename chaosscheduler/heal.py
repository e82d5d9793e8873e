"""``chaosscheduler heal``: undo every open fault of the ledger and, with ``from_hosts``, every table of ours still
on the hosts (found by its name prefix: the kernel as the record when the ledger is lost or corrupt).

Every fault is undone on all its hosts at once (see :mod:`chaosscheduler.hosts.fanout`), and ``--from-hosts`` scans
every host at once too: this machine, the namespaces of every embedded cluster under the home, and every node of
every ``hosts`` platform the ledger recorded (over SSH, with the key file or agent the description names).
"""

import contextlib
import json
import os
import signal
import time
from typing import Any, Dict, List, Optional, Tuple

from . import procs
from .errors import ChaosSchedulerError, LedgerError
from .faults import undo_open
from .faults.latency import latency_leftovers, remove_latency_chain
from .faults.rules import tables_in_ruleset
from .hosts import CommandError, LocalHost, NetnsHost
from .hosts.fanout import FanOut
from .ledger import OPEN_STATES, Ledger
from .pacing import default_concurrency
from .testbed import network
from .testbed.spec import default_home

__all__ = ["heal", "hosts_to_scan", "recorded_hosts"]

RECENT = 24 * 3600.0  # seconds: heal --from-hosts also scans the hosts platforms of faults closed this recently


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


def recorded_hosts(ledger: Ledger, within: float = RECENT) -> Tuple[Dict[str, Any], List[str]]:
    """The nodes of every ``hosts`` platform of an open fault, or of one recorded in the last ``within`` seconds
    (one host per SSH address): ``{key: (host, required)}`` where ``required`` marks the hosts of open faults (an
    old lab that is gone is no error), and the errors met."""
    from .platforms import from_reference

    hosts: Dict[str, Any] = {}
    errors: List[str] = []
    try:
        records = ledger.all()
    except ChaosSchedulerError:
        return {}, []  # an unusable ledger: only this machine's hosts can be scanned (said by heal)
    platforms: Dict[str, Tuple[Dict[str, Any], bool, str]] = {}
    for record in records:
        reference = record.get("platform") or {}
        if reference.get("platform") != "hosts":
            continue
        required = record.get("state") in OPEN_STATES
        if not required and (record.get("created_at") or 0) < time.time() - within:
            continue
        key = json.dumps(reference, sort_keys=True)
        previous = platforms.get(key)
        platforms[key] = (reference, required or bool(previous and previous[1]), record.get("id", ""))
    for reference, required, fault_id in platforms.values():
        try:
            platform = from_reference(reference)
            for node in platform.nodes():
                host = platform.host(node)
                key = f"{host.ssh['user']}@{host.host}:{host.ssh['port']}/{host.netns or ''}"
                if key not in hosts or required:
                    hosts[key] = (host, required)
        except ChaosSchedulerError as e:
            errors.append(f"hosts platform of fault {fault_id}: {e}")
    return hosts, errors


def _scan(host: Any, dry_run: bool) -> Dict[str, Any]:
    """Our nft tables and NFQUEUE latency chains on one host: found, and removed unless ``dry_run``."""
    found: List[str] = []
    errors: List[str] = []
    lines: List[str] = []
    listing = host.run(["nft", "list", "tables"], timeout=15).stdout
    for table in tables_in_ruleset(listing):
        found.append(f"{host.name}:{table}")
        lines.append(f"{'found' if dry_run else 'removing'} {table} on {host.name}")
        if not dry_run:
            try:
                host.run(["nft", "delete", "table", "inet", table], timeout=15)
            except CommandError as e:
                errors.append(f"{host.name}: {e}")
    # the NFQUEUE latency fallback lives in iptables chains csq-<id>, jumped to by a tagged rule (this machine only)
    if isinstance(host, LocalHost):
        saved = host.run(["iptables-save", "-t", "filter"], timeout=15, check=False).stdout
        for hook, fault_id in latency_leftovers(saved):
            found.append(f"{host.name}:csq-{fault_id}")
            lines.append(f"{'found' if dry_run else 'removing'} chain csq-{fault_id} on {host.name}")
            if not dry_run:
                remove_latency_chain(host, hook, fault_id)
    return {"found": found, "errors": errors, "lines": lines}


def heal(home: Optional[str] = None, from_hosts: bool = False, dry_run: bool = False,
         kubernetes_namespaces: Optional[List[str]] = None, concurrency: Optional[int] = None) -> Dict[str, Any]:
    """Undo every open fault (each on all its hosts at once); with ``from_hosts`` also every table and chain of
    ours found on the hosts, scanned ``concurrency`` hosts at a time (default: the hosts platform's, 128)."""
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
        remote, errors = recorded_hosts(ledger)
        report["errors"] += errors
        if any("looking on the hosts instead" in line for line in report["lines"]):
            report["lines"].append("the remote hosts of hosts platforms are known from the ledger only: not scanned")
        hosts = {f"local{i}": h for i, h in enumerate(hosts_to_scan(home))}
        hosts.update({key: host for key, (host, _) in remote.items()})
        fan = FanOut(hosts, concurrency or default_concurrency("hosts"))
        unreachable = fan.connect()
        done = fan.each(lambda key, host: _scan(host, dry_run), [k for k in hosts if k not in unreachable])
        for key, host in hosts.items():
            if key in unreachable:
                if remote.get(key, (None, True))[1]:
                    report["errors"].append(f"{host.name}: {unreachable[key]}")
                else:  # a host of a closed fault's platform (an old lab, say): said, not an error
                    report["lines"].append(f"not scanned (unreachable): {host.name}")
                continue
            outcome = done[key]
            if not outcome.ok:
                if remote.get(key, (None, True))[1]:
                    report["errors"].append(f"{host.name}: {outcome.error}")
                else:  # e.g. an account of a closed fault's platform that may not list the tables
                    report["lines"].append(f"not scanned: {host.name}: {outcome.error}")
                continue
            report["tables"] += outcome.value["found"]
            report["errors"] += outcome.value["errors"]
            report["lines"] += outcome.value["lines"]
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
