"""The reliability harness: stop real ``chaos run`` processes at chosen phases and judge what they leave behind.

Shared by ``tests/reliability/`` and ``benchmarks/reliability_matrix.py``, so the matrix in ``docs/reliability.md``
is produced by the same code the CI subset runs. One *cell* is (experiment, signal, phase):

1. the operator's own firewall state — an iptables rule, an nft table, an ipset — is installed in the root network
   namespace (unique names, compared by name, removed by name) and, as soon as the run's control has created the
   cluster's namespaces, in every one of them (compared whole: ``iptables-save``, ``nft list ruleset`` minus our
   ``chaosscheduler_*`` tables, ``ipset list``);
2. the harness joins the cluster as one more user (the control's own sharing mechanism, ``testbed/users.py``), so
   the run's control leaves the cluster up when it finishes and its namespaces can be compared after the
   rollback or the control's undo; the control's summary in the journal shows it reached that point;
3. it waits for the phase — a line of the chaos log, or the ledger showing an active fault — and sends the signal;
4. it follows every fault of the run until the fault is physically gone (polling the hosts every 10 ms), at once
   or at its deadline (the overshoot is measured), runs ``chaosscheduler heal``, and checks the baseline: no open
   fault, no table of ours, every node running, the sentinels byte-for-byte identical (packet and byte counters aside);
5. it removes the cluster by its own record (after SIGKILL the run's control never ran its cleanup, so the cluster
   it started is still up: the harness is what removes it), and the root sentinels by name.

Nothing here sleeps to synchronise: every wait polls with a deadline.
"""

import contextlib
import dataclasses
import difflib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any, Callable, Dict, List, Optional

from chaosscheduler import procs
from chaosscheduler.faults.rules import table_name, tables_in_ruleset
from chaosscheduler.ledger import OPEN_STATES, Ledger
from chaosscheduler.testbed import down, network, users
from chaosscheduler.testbed import state as tb_state
from chaosscheduler.timing import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPERIMENTS_DIR = os.path.join(ROOT, "experiments")
BIN = os.path.dirname(sys.executable)
CHAOS = os.path.join(BIN, "chaos")
SENTINEL_ADDRESS = "192.0.2.77"  # TEST-NET-1: never on the wire here, so no counter of a sentinel ever moves
POLL = 0.01
OVERSHOOT_TARGET = 1.0  # seconds: self-expiry must happen within this of the deadline

SIGNALS = ("SIGINT", "SIGTERM", "SIGKILL")
PHASES = ("before", "injected", "wait", "rollbacks")
PHASE_DOC = {
    "before": "the steady-state hypothesis before the method (its data-consistency probe is waiting)",
    "injected": "the moment the ledger shows the fault active",
    "wait": "a wait with the fault in place (a probe polling, or the experiment's pause)",
    "rollbacks": "the rollbacks (the run is diverted there with SIGUSR1 right after the fault is injected, then "
                 "signalled as the first rollback starts)",
}
BEFORE_MARKER = "Probe: accepted-tasks-neither-lost-nor-duplicated"
ROLLBACK_MARKER = "Rollback: "

# Shorter fault durations (and, for the partition, shorter pauses) through the experiments' own configuration
# keys, so a cell waits seconds, not minutes, for a self-expiry. Defaults stay those of the experiment files.
EXPERIMENTS: Dict[str, Dict[str, Any]] = {
    # (each probe's wait shortened with its fault: the experiment checks refuse a fault shorter than the wait)
    "worker-disconnect": {"vars": {"fault_duration": 15, "detection_timeout": 9, "detection_limit": 9,
                                   "rescheduling_deadline": 9, "rescheduling_latency_limit": 9},
                          "wait": "Probe: measure-worker-failure-detection-time"},
    "master-crash": {"vars": {"fault_duration": 10, "leader_election_timeout": 5, "leader_election_limit": 5},
                     "wait": "Probe: measure-leader-election-time"},
    "network-partition": {"vars": {"fault_duration": 10, "split_seconds": 4, "loss_seconds": 5},
                          "wait": "Pausing after activity for"},
}


class HarnessError(Exception):
    """The cell could not be driven as planned (a phase never came): not a verdict on the library."""


# ---------------------------------------------------------------------------------------------------- commands
def sh(argv: List[str], netns: Optional[str] = None, input: Optional[str] = None, check: bool = True,
       timeout: float = 30.0) -> subprocess.CompletedProcess:
    full = (["ip", "netns", "exec", netns] if netns else []) + list(argv)
    proc = subprocess.run(full, input=input, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(full)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def cli(home: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    script = os.path.join(BIN, "chaosscheduler")
    argv = [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "chaosscheduler.cli"]
    env = dict(os.environ, CHAOSSCHEDULER_HOME=home)
    return subprocess.run(argv + list(args), capture_output=True, text=True, timeout=timeout, env=env)


def tables(netns: Optional[str] = None) -> List[str]:
    """Our tables (``inet chaosscheduler_*``) in ``netns`` (None: the root namespace); [] if it is gone."""
    if netns and netns not in network.existing_namespaces():
        return []
    listing = sh(["nft", "list", "tables"], netns, check=False)
    return tables_in_ruleset(listing.stdout) if listing.returncode == 0 else []


# ---------------------------------------------------------------------------------------------------- sentinels
_NS_NFT = """table inet {name} {{
    set blocked {{ type ipv4_addr; elements = {{ {address} }}; }}
    chain keep {{
        type filter hook input priority 10; policy accept;
        ip saddr @blocked tcp dport 4242 drop
    }}
}}
"""
# in the root namespace the sentinels must have no effect at all: a regular chain, hooked nowhere
_ROOT_NFT = """table inet {name} {{
    chain keep {{
        ip saddr {address} tcp dport 4242 drop
    }}
}}
"""


def _without_our_tables(ruleset: str) -> str:
    """``nft list ruleset`` minus every ``table inet chaosscheduler_*`` block (ours may come and go)."""
    out, skipping = [], False
    for line in ruleset.splitlines():
        if line.startswith("table "):
            parts = line.split()
            skipping = len(parts) >= 3 and parts[1] == "inet" and parts[2].startswith("chaosscheduler_")
        if not skipping:
            out.append(line)
        if skipping and line == "}":
            skipping = False
    return "\n".join(out)


def _without_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("#"))  # iptables-save's dates


_IPT_CHAIN_COUNTERS = re.compile(r"^(:\S+ \S+ )\[\d+:\d+\]$", re.M)  # ":INPUT ACCEPT [293:30155]"
_IPT_RULE_COUNTERS = re.compile(r"^\[\d+:\d+\] ", re.M)               # "[12:720] -A INPUT ..." (iptables-save -c)
_NFT_COUNTERS = re.compile(r"\bcounter packets \d+ bytes \d+")          # nft list ruleset


def without_counters(text: str) -> str:
    """Firewall listings with every packet/byte counter zeroed, and nothing else changed: traffic moves counters
    (iptables 1.8.11 of Debian 13 prints real ones on chain policies, ``:INPUT ACCEPT [293:30155]``), while the
    operator's rules are the same rules."""
    text = _IPT_CHAIN_COUNTERS.sub(r"\1[0:0]", text)
    text = _IPT_RULE_COUNTERS.sub("[0:0] ", text)
    return _NFT_COUNTERS.sub("counter packets 0 bytes 0", text)


class Sentinels:
    """The operator's own rules: installed before a test, compared byte for byte (packet and byte counters aside:
    traffic moves them) after every heal, rollback and self-expiry. In a cluster namespace the whole firewall state is compared (only ours may differ); in the root
    namespace, which other software shares, only the sentinels themselves, by their unique name."""

    def __init__(self) -> None:
        self.name = "opsent" + uuid.uuid4().hex[:8]  # ipset names are at most 31 characters
        self.root_installed = False
        self._created_filter = False
        self.root_before: Optional[Dict[str, str]] = None
        self.before: Dict[str, Dict[str, str]] = {}

    # root namespace: named objects only
    def install_root(self) -> None:
        self._created_filter = sh(["nft", "list", "table", "ip", "filter"], check=False).returncode != 0
        self.root_installed = True
        sh(["iptables", "-w", "-N", self.name])
        sh(["iptables", "-w", "-A", self.name, "-s", f"{SENTINEL_ADDRESS}/32", "-p", "tcp", "--dport", "4242",
            "-m", "comment", "--comment", self.name, "-j", "DROP"])
        sh(["nft", "-f", "-"], input=_ROOT_NFT.format(name=self.name, address=SENTINEL_ADDRESS))
        sh(["ipset", "create", self.name, "hash:ip"])
        sh(["ipset", "add", self.name, SENTINEL_ADDRESS])
        self.root_before = self.snapshot_root()

    def snapshot_root(self) -> Dict[str, str]:
        saved = without_counters(sh(["iptables-save", "-t", "filter"]).stdout)
        return {"iptables": "\n".join(line for line in saved.splitlines() if self.name in line),
                "nft": without_counters(sh(["nft", "list", "table", "inet", self.name], check=False).stdout),
                "ipset": sh(["ipset", "list", self.name], check=False).stdout}

    def remove_root(self) -> None:
        if not self.root_installed:
            return
        sh(["iptables", "-w", "-F", self.name], check=False)
        sh(["iptables", "-w", "-X", self.name], check=False)
        sh(["nft", "delete", "table", "inet", self.name], check=False)
        sh(["ipset", "destroy", self.name], check=False)
        if self._created_filter:  # iptables-nft created "table ip filter" for our chain: remove it if still empty
            listing = sh(["nft", "list", "table", "ip", "filter"], check=False)
            if listing.returncode == 0 and "chain " not in listing.stdout:
                sh(["nft", "delete", "table", "ip", "filter"], check=False)
        self.root_installed = False

    # a namespace of ours: the whole state
    def install(self, netns: str) -> None:
        name = self.name
        sh(["nft", "-f", "-"], netns, input=_NS_NFT.format(name=name, address=SENTINEL_ADDRESS))
        sh(["ipset", "create", name, "hash:ip"], netns)
        sh(["ipset", "add", name, SENTINEL_ADDRESS], netns)
        sh(["iptables", "-w", "-A", "INPUT", "-s", f"{SENTINEL_ADDRESS}/32", "-p", "tcp", "--dport", "4242",
            "-m", "comment", "--comment", name, "-j", "DROP"], netns)
        sh(["iptables", "-w", "-A", "INPUT", "-m", "set", "--match-set", name, "src", "-p", "tcp", "--dport",
            "4243", "-j", "DROP"], netns)
        self.before[netns] = self.snapshot(netns)
        assert name in self.before[netns]["nft"] and SENTINEL_ADDRESS in self.before[netns]["ipset"]

    @staticmethod
    def snapshot(netns: str) -> Dict[str, str]:
        return {"iptables": without_counters(_without_comments(sh(["iptables-save"], netns).stdout)),
                "nft": without_counters(_without_our_tables(sh(["nft", "list", "ruleset"], netns).stdout)),
                "ipset": sh(["ipset", "list"], netns).stdout}

    def differences(self, when: str) -> List[str]:
        """What changed since installation (namespaces that no longer exist are skipped: see ``compared``)."""
        diffs = []
        if self.root_before is not None and self.snapshot_root() != self.root_before:
            diffs.append(f"{when}: root namespace sentinels {self.name} changed")
        present = set(network.existing_namespaces())
        for netns, before in self.before.items():
            if netns not in present:
                continue
            now = self.snapshot(netns)
            for key in before:
                if now[key] != before[key]:
                    delta = [line for line in difflib.unified_diff(before[key].splitlines(), now[key].splitlines(),
                                                                   lineterm="", n=0)][2:8]
                    diffs.append(f"{when}: {key} in {netns} changed: {' | '.join(delta)}")
        return diffs

    def compared(self) -> int:
        present = set(network.existing_namespaces())
        return sum(1 for netns in self.before if netns in present) + (1 if self.root_before is not None else 0)


# ---------------------------------------------------------------------------------------------------- chaos runs
@dataclasses.dataclass
class ChaosRun:
    proc: subprocess.Popen
    workdir: str
    home: str
    cluster: str

    @property
    def log_path(self) -> str:
        return os.path.join(self.workdir, "chaos.log")

    @property
    def journal_path(self) -> str:
        return os.path.join(self.workdir, "journal.json")

    @property
    def state_dir(self) -> str:
        return os.path.join(self.home, "testbed", self.cluster)

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    def journal(self) -> Optional[Dict[str, Any]]:
        try:
            with open(self.journal_path) as handle:
                return json.load(handle)
        except (FileNotFoundError, ValueError):
            return None

    def output(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            with open(os.path.join(self.workdir, "chaos.out"), errors="replace") as handle:
                return handle.read()
        return ""


def start_chaos(experiment: str, workdir: str, home: str, cluster: str,
                configuration: Optional[Dict[str, Any]] = None, extra: List[str] = ()) -> ChaosRun:
    """``chaos run`` of ``experiment`` (a file name under experiments/ or a path), in its own session, logging at
    debug level to ``workdir/chaos.log``."""
    path = experiment if os.path.isabs(experiment) else os.path.join(EXPERIMENTS_DIR, experiment)
    argv = [CHAOS, "--no-version-check", "--log-file", os.path.join(workdir, "chaos.log"), "run", path,
            "--journal-path", os.path.join(workdir, "journal.json")] + list(extra)
    if configuration:
        var_file = os.path.join(workdir, "vars.json")
        with open(var_file, "w") as handle:
            json.dump({"configuration": configuration}, handle)
        argv += ["--var-file", var_file]
    env = dict(os.environ, CHAOSSCHEDULER_HOME=home, CHAOSSCHEDULER_CLUSTER=cluster)
    env.pop(procs.MARKER_ENV, None)
    out = open(os.path.join(workdir, "chaos.out"), "w")
    try:
        # a process started in the background by a non-interactive shell inherits SIGINT *ignored*, and Python
        # then never installs its Ctrl-C handler: give chaos the default disposition, as a terminal would
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    finally:
        out.close()
    return ChaosRun(proc, workdir, home, cluster)


def wait_log(run: ChaosRun, marker: str, start: int = 0, timeout: float = 120.0) -> int:
    """Wait until ``marker`` appears in the chaos log after offset ``start``; return the offset just past it."""
    def seen() -> Optional[int]:
        text = run.log()
        at = text.find(marker, start)
        if at >= 0:
            return at + len(marker)
        if run.proc.poll() is not None:
            raise HarnessError(f"chaos exited ({run.proc.returncode}) before {marker!r} appeared; "
                               f"output: {run.output()[-800:]}")
        return None

    return wait_until(seen, timeout, interval=POLL, message=f"{marker!r} in the chaos log")


def active_fault(run: ChaosRun, timeout: float = 120.0) -> Dict[str, Any]:
    """Wait until the run's ledger holds a fault that is injected and still open."""
    ledger = Ledger(run.home)

    def found() -> Optional[Dict[str, Any]]:
        records = [r for r in ledger.all() if r.get("state") == "active"]
        if records:
            return records[0]
        if run.proc.poll() is not None:
            raise HarnessError(f"chaos exited ({run.proc.returncode}) before any fault was active")
        return None

    return wait_until(found, timeout, interval=0.005, message="an active fault in the ledger")


def cluster_namespaces(state_dir: str, timeout: float = 60.0,
                       proc: Optional[subprocess.Popen] = None) -> Dict[str, Any]:
    """Wait until the cluster at ``state_dir`` is recorded and every one of its namespaces exists."""
    def ready() -> Optional[Dict[str, Any]]:
        if proc is not None and proc.poll() is not None:
            raise HarnessError(f"chaos exited ({proc.returncode}) before the cluster existed")
        if not tb_state.exists(state_dir):
            return None
        with contextlib.suppress(Exception):
            record = tb_state.load(state_dir)
            if record.get("namespaces") and set(record["namespaces"]) <= set(network.existing_namespaces()):
                return record
        return None

    return wait_until(ready, timeout, interval=POLL, message="the cluster's namespaces")


# ---------------------------------------------------------------------------------------------------- faults
def _netns_of(state_dir: str) -> Dict[str, Optional[str]]:
    with contextlib.suppress(Exception):
        return {n["name"]: n.get("netns") for n in tb_state.load(state_dir)["nodes"]}
    return {}


def fault_gone(record: Dict[str, Any], state_dir: str) -> bool:
    """Whether the fault no longer acts on the hosts: its table is in none of its targets' namespaces, or the
    master it killed runs again (was resumed, after SIGSTOP)."""
    if not tb_state.exists(state_dir):
        return True  # the cluster is gone with everything in it
    if record["kind"] in ("network", "latency"):
        where = _netns_of(state_dir)
        table = table_name(record["id"])
        return all(table not in tables(where.get(t)) for t in record["targets"] if where.get(t))
    with contextlib.suppress(Exception):
        proc = tb_state.load(state_dir).get("processes", {}).get(record["targets"][0])
        if record.get("signal") == "SIGSTOP":
            return _process_state(proc) not in ("T", "t")
        return procs.is_running(proc)
    return False


def _process_state(proc: Optional[Dict[str, Any]]) -> str:
    if not procs.is_running(proc):
        return ""
    with open(f"/proc/{proc['pid']}/stat") as handle:
        data = handle.read()
    return data[data.rfind(")") + 2:].split()[0]


def follow_faults(home: str, state_dir: str, signalled_at: float, settle: float = 5.0) -> List[Dict[str, Any]]:
    """Every fault of the ledger at ``home``, followed until it is physically gone and its record closed, or until
    ``settle`` seconds past its deadline. Each outcome: ``ended`` ("before the signal", "by the run" = by the run's
    rollbacks/control after the signal, "at its deadline" = self-expiry, "still open"), ``after_signal`` (seconds
    from the signal until the record closed), ``overshoot`` (seconds from the deadline until the fault was
    physically gone, self-expiry only) and ``closed_overshoot`` (until its record said so)."""
    ledger = Ledger(home)
    outcomes: Dict[str, Dict[str, Any]] = {}
    gone_at: Dict[str, float] = {}
    records = {r["id"]: r for r in ledger.all()}
    for fid, r in records.items():
        if r.get("state") not in OPEN_STATES:
            gone_at[fid] = r.get("undone_at") or 0.0
    last_read = time.monotonic()
    while True:
        open_ids = [fid for fid, r in records.items() if r.get("state") in OPEN_STATES or fid not in gone_at]
        now = time.time()
        for fid in open_ids:
            if fid not in gone_at and fault_gone(records[fid], state_dir):
                gone_at[fid] = time.time()
        if time.monotonic() - last_read > 0.1:
            records.update({r["id"]: r for r in ledger.all()})
            last_read = time.monotonic()
        pending = [fid for fid, r in records.items() if r.get("state") in OPEN_STATES or fid not in gone_at]
        horizon = max([(records[f].get("deadline") or now) + settle for f in pending], default=now)
        if not pending or now > horizon:
            break
        time.sleep(POLL)
    records.update({r["id"]: r for r in ledger.all()})
    for fid, r in records.items():
        closed = r.get("undone_at")
        outcome = {"id": fid, "action": r.get("action"), "kind": r.get("kind"), "targets": r.get("targets"),
                   "state": r.get("state"), "deadline": r.get("deadline"), "gone_at": gone_at.get(fid),
                   "closed_at": closed}
        if r.get("state") in OPEN_STATES:
            outcome["ended"] = "still open"
        elif r.get("state") == "expired" and (gone_at.get(fid) or closed) < r["deadline"] - 0.05:
            # the run removed it from the hosts (a rollback killed before it could write "undone"); the reaper
            # found nothing left to undo and only closed the record at the deadline
            outcome["ended"] = "by the run"
            outcome["after_signal"] = max(0.0, gone_at[fid] - signalled_at)
            outcome["note"] = "record closed by the reaper at the deadline"
        elif r.get("state") == "expired":
            outcome["ended"] = "at its deadline"
            outcome["overshoot"] = (gone_at.get(fid) or closed) - r["deadline"]
            outcome["closed_overshoot"] = closed - r["deadline"]
        elif closed is not None and closed < signalled_at:
            outcome["ended"] = "before the signal"
        else:
            outcome["ended"] = "by the run"
            outcome["after_signal"] = (closed or signalled_at) - signalled_at
        outcomes[fid] = outcome
    return list(outcomes.values())


def leftovers(home: str, state_dir: str, fault_ids: List[str]) -> List[str]:
    """What of ours is still in place on the hosts: open faults, our tables (cluster namespaces and the root
    namespace), nodes of a still existing cluster that do not run."""
    found = [f"open fault {r['id']}" for r in Ledger(home).open_faults()]
    ours = {table_name(f) for f in fault_ids}
    found += [f"table {t} in the root namespace" for t in tables() if t in ours]
    if tb_state.exists(state_dir):
        with contextlib.suppress(Exception):
            record = tb_state.load(state_dir)
            for netns in record.get("namespaces", []):
                found += [f"table {t} in {netns}" for t in tables(netns)]
            for name, proc in record.get("processes", {}).items():
                if not procs.is_running(proc):
                    found.append(f"{name} not running")
                elif _process_state(proc) in ("T", "t"):
                    found.append(f"{name} stopped")
    return found


def reapers(home: str) -> List[int]:
    return procs.pids_with_marker(f"reaper:{home}")


def remove_cluster(home: str, state_dir: str, cluster: str) -> List[str]:
    """Tear the cluster down by its own record (idempotent) and say what of it, or of our reapers, remains."""
    with contextlib.suppress(Exception):
        down(state_dir)
    left = [f"namespace {n}" for n in network.existing_namespaces() if n.startswith(f"cs-{cluster}-")]
    left += [f"node process {p}" for p in procs.pids_with_marker(state_dir)]
    try:
        wait_until(lambda: not reapers(home), 10, message="reapers exited")
    except TimeoutError:
        for pid in reapers(home):  # ours by their marker; reported as a leftover
            left.append(f"reaper {pid}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return left


# ---------------------------------------------------------------------------------------------------- one cell
@dataclasses.dataclass
class Cell:
    experiment: str
    signal: str
    phase: str
    exit_code: Optional[int] = None
    status: Optional[str] = None
    control: str = ""
    faults: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    heal_rc: Optional[int] = None
    heal_output: str = ""
    leftovers: List[str] = dataclasses.field(default_factory=list)
    sentinel_diffs: List[str] = dataclasses.field(default_factory=list)
    sentinels_compared: int = 0
    seconds: float = 0.0
    error: str = ""
    workdir: str = ""

    @property
    def overshoots(self) -> List[float]:
        return [f["overshoot"] for f in self.faults if "overshoot" in f]

    @property
    def problems(self) -> List[str]:
        found = list(self.leftovers) + list(self.sentinel_diffs)
        if self.error:
            found.append(f"harness: {self.error}")
        if self.heal_rc != 0:
            found.append(f"chaosscheduler heal exited {self.heal_rc}: {self.heal_output[-300:]}")
        if self.signal in ("SIGINT", "SIGTERM") and not self.error and (self.status != "interrupted"
                                                                       or self.exit_code != 1):
            found.append(f"{self.signal} ended the run {self.status!r} with exit {self.exit_code}, not interrupted")
        found += [f"fault {f['id']} still open after its deadline" for f in self.faults if f["ended"] == "still open"]
        found += [f"fault {f['id']} gone {f['overshoot']:.3f} s after its deadline" for f in self.faults
                  if f.get("overshoot", 0) > OVERSHOOT_TARGET]
        return found

    def to_dict(self) -> Dict[str, Any]:
        return dict(dataclasses.asdict(self), problems=self.problems)


def _trigger(run: ChaosRun, experiment: str, phase: str) -> None:
    if phase == "before":
        wait_log(run, BEFORE_MARKER)
    elif phase == "injected":
        active_fault(run)
    elif phase == "wait":
        active_fault(run)
        wait_log(run, EXPERIMENTS[experiment]["wait"])
    elif phase == "rollbacks":
        active_fault(run)
        start = len(run.log())
        os.kill(run.proc.pid, signal.SIGUSR1)  # Chaos Toolkit: stop the method, play the rollbacks
        wait_log(run, ROLLBACK_MARKER, start)
    else:
        raise ValueError(f"unknown phase {phase!r}")


def run_cell(experiment: str, sig: str, phase: str, configuration: Optional[Dict[str, Any]] = None,
             log: Callable[[str], None] = lambda message: None) -> Cell:
    """Run one cell of the interruption matrix and return what it found (never raises for a finding)."""
    cell = Cell(experiment, sig, phase)
    started = time.monotonic()
    home = tempfile.mkdtemp(prefix="csr", dir="/tmp")  # short: Unix socket paths are limited
    workdir = tempfile.mkdtemp(prefix="csrw", dir="/tmp")
    cluster = "r" + uuid.uuid4().hex[:9]
    user = f"harness-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    sentinels = Sentinels()
    run: Optional[ChaosRun] = None
    state_dir = os.path.join(home, "testbed", cluster)
    try:
        sentinels.install_root()
        config = dict(EXPERIMENTS[experiment]["vars"], **(configuration or {}))
        run = start_chaos(f"{experiment}.json", workdir, home, cluster, config)
        record = cluster_namespaces(state_dir, proc=run.proc)
        users.join(state_dir, user, auto=False)
        for netns in record["namespaces"]:
            sentinels.install(netns)
        if Ledger(home).all():
            raise HarnessError("a fault was recorded before the sentinels were in place")
        _trigger(run, experiment, phase)
        os.kill(run.proc.pid, getattr(signal, sig))
        signalled_at = time.time()
        log(f"{experiment} {sig} {phase}: signalled")
        try:
            cell.exit_code = run.proc.wait(timeout=240)
        except subprocess.TimeoutExpired:
            raise HarnessError("chaos did not exit within 240 s of the signal") from None
        journal = run.journal() if sig != "SIGKILL" else None
        if journal:
            cell.status = journal.get("status")
            summary = journal.get("chaosscheduler") or {}
            tb = summary.get("testbed") or {}
            cell.control = ("cleanup ran, cluster kept for the harness" if user in tb.get("other_runs", [])
                            else f"cleanup ran: {json.dumps(tb)[:80]}" if summary else "no control summary")
        else:
            cell.control = "killed: no cleanup, no journal" if sig == "SIGKILL" else "no journal"
        cell.faults = follow_faults(home, state_dir, signalled_at)
        cell.sentinel_diffs += sentinels.differences("after the run's undo / self-expiry")
        healed = cli(home, "heal")
        cell.heal_rc, cell.heal_output = healed.returncode, healed.stdout + healed.stderr
        cell.sentinel_diffs += sentinels.differences("after chaosscheduler heal")
        cell.sentinels_compared = sentinels.compared()
        cell.leftovers += leftovers(home, state_dir, [f["id"] for f in cell.faults])
    except (HarnessError, TimeoutError, RuntimeError) as e:
        cell.error = str(e).splitlines()[0] if str(e) else type(e).__name__
        if run is not None:
            cell.error += f" | chaos output: {run.output()[-300:]!r}"
    finally:
        if run is not None and run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
        with contextlib.suppress(Exception):
            users.leave(state_dir, user)
        cell.leftovers += remove_cluster(home, state_dir, cluster)
        sentinels.remove_root()
        shutil.rmtree(home, ignore_errors=True)
        if not os.environ.get("CHAOSSCHEDULER_KEEP_WORKDIR"):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            cell.workdir = workdir
        cell.seconds = time.monotonic() - started
    return cell


# ---------------------------------------------------------------------------------------------------- the matrix
def summarise(cells: List[Cell]) -> Dict[str, Any]:
    overshoots = [o for c in cells for o in c.overshoots]
    at_once = [f["after_signal"] for c in cells for f in c.faults if "after_signal" in f
               and c.status == "interrupted"]  # SIGTERM inside an activity does not stop a run: not counted
    return {"cells": len(cells), "cells_ok": sum(1 for c in cells if not c.problems),
            "faults": sum(len(c.faults) for c in cells),
            "self_expired": len(overshoots),
            "faults_left_behind": sum(len(c.leftovers) for c in cells),
            "worst_overshoot_ms": round(max(overshoots) * 1000) if overshoots else None,
            "median_overshoot_ms": round(sorted(overshoots)[len(overshoots) // 2] * 1000) if overshoots else None,
            "worst_undo_by_interrupted_run_s": round(max(at_once), 3) if at_once else None,
            "sentinels_intact": all(not c.sentinel_diffs for c in cells),
            "sentinel_comparisons": sum(c.sentinels_compared for c in cells),
            "heal_ok": all(c.heal_rc == 0 for c in cells)}


def _ended(cell: Cell) -> str:
    parts = []
    for f in cell.faults:
        label = {"kill_master": "kill", "isolate_worker": "isolate", "partition_workers": "partition"}.get(
            f["action"], f["action"])
        if "overshoot" in f:
            parts.append(f"{label}: expired +{f['overshoot'] * 1000:.0f} ms")
        elif "note" in f:
            parts.append(f"{label}: removed by the run, record closed at its deadline")
        elif "after_signal" in f:
            parts.append(f"{label}: undone {f['after_signal']:.2f} s after")
        else:
            parts.append(f"{label}: {f['ended']}")
    return "; ".join(parts) or "no fault yet"


def markdown(cells: List[Cell]) -> str:
    rows = ["| experiment | signal | phase | exit | journal | how each fault ended | left | sentinels | s |",
            "|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        rows.append(f"| {c.experiment} | {c.signal} | {c.phase} | {c.exit_code} | {c.status or '-'} | "
                    f"{_ended(c)} | {len(c.leftovers)} | {'intact' if not c.sentinel_diffs else 'CHANGED'} "
                    f"({c.sentinels_compared}) | {c.seconds:.0f} |")
    s = summarise(cells)
    rows += ["", f"Cells: {s['cells']} ({s['cells_ok']} without any problem); faults injected: {s['faults']}, "
                 f"of which self-expired: {s['self_expired']}; faults left behind: {s['faults_left_behind']}; "
                 f"worst self-expiry overshoot: {s['worst_overshoot_ms']} ms (median {s['median_overshoot_ms']} ms); "
                 f"worst undo by an interrupted run's rollbacks or control: "
                 f"{s['worst_undo_by_interrupted_run_s']} s after the signal; sentinel rules intact: "
                 f"{'all' if s['sentinels_intact'] else 'NO'} ({s['sentinel_comparisons']} namespace comparisons); "
                 f"chaosscheduler heal exit 0: {'all' if s['heal_ok'] else 'NO'}."]
    problems = [f"- {c.experiment} {c.signal} {c.phase}: {p}" for c in cells for p in c.problems]
    if problems:
        rows += ["", "Problems:"] + problems
    return "\n".join(rows)
