"""A real Slurm cluster on this machine, for the tests and the benchmarks: Debian's Slurm 22.05, a primary and a
backup ``slurmctld`` sharing one state directory, ``slurmd`` on every worker, one ``munged``, an ``sshd`` on every
node, and a var file that describes the cluster to the ``hosts`` platform (experiments/vars/hosts-slurm.json with
the lab's addresses and SSH key).

Each node lives in namespaces of its own: network (198.18.0.0/16, joined by a bridge in a "switch" namespace, as the
embedded cluster's nodes are), UTS (slurmctld decides primary or backup from the host name), PID (a process pattern
matches one process per host; ``ps`` over SSH sees the node only) and mount. Inside its mount namespace a node looks
like a stock Debian Slurm host: ``/etc/slurm/slurm.conf``, ``/var/log/slurm/``, ``/var/lib/slurm/``,
``/run/slurmctld.pid``; the controllers share ``/var/lib/slurm/slurmctld``. Nothing is mounted, linked or started in
the root namespaces beyond the lab's own processes and network namespaces.

Everything the lab creates is in its record (``<state_dir>/lab.json``), written before it is created: the network
namespaces by name, the processes by PID and start time (``munged`` and one ``unshare`` per node, whose death kills
its node's whole PID namespace). :func:`down` removes exactly that, whatever state the lab is in.

For a person::

    python -m tests.labs.slurm up [--name NAME] [--workers 4] [--no-backup] ...   # prints the state dir, var file
    python -m tests.labs.slurm status STATE_DIR
    python -m tests.labs.slurm down STATE_DIR
    python -m tests.labs.slurm sweep [ROOT]        # the labs of test runs that were killed (their owner is gone)
"""

import argparse
import contextlib
import dataclasses
import datetime
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from chaosscheduler import procs  # noqa: E402
from chaosscheduler._files import read_json, write_json_atomic  # noqa: E402
from chaosscheduler.testbed import network  # noqa: E402
from chaosscheduler.testbed.remote import _ssh_files  # noqa: E402
from chaosscheduler.testbed.spec import SUBNET  # noqa: E402
from chaosscheduler.timing import Deadline  # noqa: E402
from tests.labs import nodes as lab_nodes  # noqa: E402

__all__ = ["LabSpec", "Lab", "up", "down", "running", "sweep", "requirements", "PROFILE"]

PROFILE = os.path.join(ROOT, "experiments", "vars", "hosts-slurm.json")
OPERATOR = str(SUBNET.network_address + 254)
BINARIES = {"slurmctld": "/usr/sbin/slurmctld", "slurmd": "/usr/sbin/slurmd", "munged": "/usr/sbin/munged",
            "sshd": "/usr/sbin/sshd", "sinfo": "/usr/bin/sinfo", "unshare": "/usr/bin/unshare"}


@dataclasses.dataclass
class LabSpec:
    """What to build. The defaults make every failure visible in seconds (the issue's measured configuration)."""

    name: str = ""
    home: str = ""
    workers: int = 4
    backup: bool = True               # a second slurmctld (SlurmctldHost #2)
    cpus: int = 16                    # CPUs per worker as Slurm sees them (SlurmdParameters=config_overrides)
    slurmctld_timeout: int = 10
    slurmd_timeout: int = 15
    requeue: bool = True              # JobRequeue=1
    cred_expire: int = 10             # AuthInfo cred_expire: how long a requeued job waits before it may start again
    bf_interval: int = 10             # SchedulerParameters=bf_interval: the backfill scheduler's period
    return_to_service: int = 2
    extra: List[str] = dataclasses.field(default_factory=list)  # more slurm.conf lines

    def __post_init__(self) -> None:
        self.name = self.name or ("sl" + uuid.uuid4().hex)[:8]
        self.home = self.home or os.environ.get("CHAOSSCHEDULER_HOME") or tempfile.mkdtemp(prefix="csl", dir="/tmp")


@dataclasses.dataclass
class LabNode:
    name: str
    role: str                         # controller | worker
    address: str
    netns: str


class Lab:
    """A running lab, read from its record."""

    def __init__(self, state_dir: str):
        self.state_dir = state_dir
        self.record = read_json(os.path.join(state_dir, "lab.json"), {})
        self.spec = LabSpec(**self.record["spec"])
        self.nodes = [LabNode(**n) for n in self.record["nodes"]]
        self.switch = network.switch_name(self.spec.name)

    @property
    def vars_path(self) -> str:
        return os.path.join(self.state_dir, "hosts-slurm-vars.json")

    def configuration(self) -> Dict[str, Any]:
        return read_json(self.vars_path)["configuration"]

    def node(self, name: str) -> LabNode:
        return next(n for n in self.nodes if n.name == name)

    def controllers(self) -> List[LabNode]:
        return [n for n in self.nodes if n.role == "controller"]

    def workers(self) -> List[LabNode]:
        return [n for n in self.nodes if n.role == "worker"]

    def log(self, node: str, daemon: str) -> str:
        """The path, on this machine, of ``daemon``'s log on ``node`` (slurmctld, slurmd, sshd)."""
        return os.path.join(self.state_dir, "nodes", node, "log", f"{daemon}.log")

    def client(self, argv: List[str], timeout: float = 20.0, check: bool = True) -> subprocess.CompletedProcess:
        """Run a Slurm client command (sinfo, squeue, scontrol...) from the operator's seat (the switch namespace):
        the ground truth the tests compare our command sources with."""
        env = dict(os.environ, SLURM_CONF=os.path.join(self.state_dir, "etc", "slurm.conf"))
        result = subprocess.run(["ip", "netns", "exec", self.switch] + argv, capture_output=True, text=True,
                                timeout=timeout, env=env)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def node_states(self) -> Dict[str, str]:
        out = self.client(["sinfo", "-h", "-N", "-o", "%N %T"], check=False).stdout
        return dict(line.split(None, 1) for line in out.splitlines() if len(line.split(None, 1)) == 2)

    def processes(self) -> Dict[str, Dict[str, Any]]:
        return dict(self.record.get("processes") or {})

    def log_times(self, node: str, pattern: str, daemon: str = "slurmctld") -> List[float]:
        """Slurm's own times (seconds since the epoch) of the log lines of ``daemon`` on ``node`` that match
        ``pattern``: the ground truth our measurements are compared with."""
        found = []
        try:
            with open(self.log(node, daemon), errors="replace") as handle:
                for line in handle:
                    if re.search(pattern, line):
                        stamp = re.match(r"^\[([0-9T:.-]+)\]", line)
                        if stamp:
                            found.append(datetime.datetime.fromisoformat(stamp.group(1)).timestamp())
        except FileNotFoundError:
            pass
        return found

    def on(self, node: str, argv: List[str], timeout: float = 20.0) -> subprocess.CompletedProcess:
        """Run ``argv`` inside ``node`` (its network, host name, processes and mounts), as an operator with a
        console on that host would; not through the platform under test."""
        return lab_nodes.enter(self.record["processes"][f"node@{node}"], argv, timeout)


@contextlib.contextmanager
def running(spec: Optional[LabSpec] = None, timeout: float = 90.0) -> Iterator[Lab]:
    """``with running(LabSpec(...)) as lab:`` a lab removed by its record on the way out, whatever happens."""
    spec = spec or LabSpec()
    lab = up(spec, timeout)
    try:
        yield lab
    finally:
        down(lab.state_dir)


def requirements() -> Optional[str]:
    """None when this machine can run the lab; otherwise why not."""
    if os.geteuid() != 0:
        return "the Slurm lab needs root (network, UTS, PID and mount namespaces)"
    missing = [name for name, path in BINARIES.items() if not os.path.exists(path)]
    if missing:
        return (f"the Slurm lab needs {', '.join(missing)}: apt-get install slurmctld slurmd slurm-client munge "
                f"openssh-server util-linux (scripts/setup --test)")
    return None


def _layout(spec: LabSpec) -> List[LabNode]:
    base = SUBNET.network_address
    nodes = [LabNode(f"ctl{i}", "controller", str(base + 2 * 256 + i), f"cs-{spec.name}-ctl{i}")
             for i in range(1, 3 if spec.backup else 2)]
    nodes += [LabNode(f"node{i}", "worker", str(base + 16 * 256 + i), f"cs-{spec.name}-node{i}")
              for i in range(1, spec.workers + 1)]
    return nodes


def slurm_conf(spec: LabSpec, nodes: List[LabNode], state_dir: str) -> str:
    controllers = [n for n in nodes if n.role == "controller"]
    lines = [f"ClusterName={spec.name}"]
    lines += [f"SlurmctldHost={n.name}({n.address})" for n in controllers]
    lines += [
        "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", "CredType=cred/munge",
        f"AuthInfo=socket={os.path.join(state_dir, 'munge', 'munge.socket.2')},cred_expire={spec.cred_expire}",
        "StateSaveLocation=/var/lib/slurm/slurmctld", "SlurmdSpoolDir=/var/lib/slurm/slurmd",
        "SlurmctldPidFile=/run/slurmctld.pid", "SlurmdPidFile=/run/slurmd.pid",
        "SlurmctldLogFile=/var/log/slurm/slurmctld.log", "SlurmdLogFile=/var/log/slurm/slurmd.log",
        "SlurmctldDebug=info", "SlurmdDebug=info",
        "SlurmctldPort=6817", "SlurmdPort=6818",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SwitchType=switch/none", "MpiDefault=none",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/filetxt", "JobCompLoc=/var/lib/slurm/slurmctld/jobcomp.txt",
        "SchedulerType=sched/backfill", "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
        "SlurmdParameters=config_overrides",
        f"SlurmctldTimeout={spec.slurmctld_timeout}", f"SlurmdTimeout={spec.slurmd_timeout}",
        f"ReturnToService={spec.return_to_service}", f"JobRequeue={1 if spec.requeue else 0}",
        "MessageTimeout=5", "InactiveLimit=0", "KillWait=5", "MinJobAge=600", "MaxJobCount=100000",
        f"SchedulerParameters=bf_interval={spec.bf_interval}",
    ]
    lines += list(spec.extra)
    lines += [f"NodeName={n.name} NodeAddr={n.address} CPUs={spec.cpus} RealMemory=1000 State=UNKNOWN"
              for n in nodes if n.role == "worker"]
    lines += [f"PartitionName=main Nodes={','.join(n.name for n in nodes if n.role == 'worker')} Default=YES "
              f"MaxTime=INFINITE State=UP"]
    return "\n".join(lines) + "\n"


def _save(state_dir: str, record: Dict[str, Any]) -> None:
    write_json_atomic(os.path.join(state_dir, "lab.json"), record)


def _node_file(state_dir: str, node: LabNode, ssh: Dict[str, str]) -> str:
    """Write the node's ``node.json`` (read by nodeinit.py) and create its directories."""
    own = os.path.join(state_dir, "nodes", node.name)
    for sub in ("log", "lib/slurmd", "lib/slurmctld", "tmp"):
        os.makedirs(os.path.join(own, sub), exist_ok=True)
    os.chmod(os.path.join(own, "tmp"), 0o1777)
    binds = [[os.path.join(state_dir, "etc"), "/etc/slurm"], [os.path.join(state_dir, "etc", "hosts"), "/etc/hosts"],
             [os.path.join(own, "log"), "/var/log/slurm"], [os.path.join(own, "lib"), "/var/lib/slurm"],
             ["/dev/null", "/root/.bashrc", "optional"]]  # a .bashrc that starts pyenv costs 100+ ms per command
    if node.role == "controller":
        binds.append([os.path.join(state_dir, "statesave"), "/var/lib/slurm/slurmctld"])
    daemon = (["/usr/sbin/slurmctld", "-D", "-i"] if node.role == "controller" else ["/usr/sbin/slurmd", "-D"])
    services = [
        {"name": "sshd", "argv": ["/usr/sbin/sshd", "-D", "-e", "-f", ssh["config"], "-o",
                                  f"ListenAddress={node.address}"], "log": os.path.join(own, "log", "sshd.log")},
        {"name": daemon[0].rsplit("/", 1)[1], "argv": daemon,
         "log": os.path.join(own, "log", daemon[0].rsplit("/", 1)[1] + ".out")},
    ]
    spec = {"hostname": node.name, "binds": binds, "run_tmpfs": ["sshd"], "services": services,
            # every host has its own /tmp (the witness's evidence files must not be shared between nodes)
            "private_tmp": {"source": os.path.join(own, "tmp"), "keep": [state_dir]}}
    path = os.path.join(own, "node.json")
    write_json_atomic(path, spec)
    return path


def up(spec: Optional[LabSpec] = None, timeout: float = 90.0, owned: bool = True) -> Lab:
    """Build and start the lab; return it once every worker is idle in Slurm and every sshd answers. On any error
    the lab is removed (by its record) before the error is raised. ``owned``: the lab belongs to this process, and
    :func:`sweep` removes it once this process is gone (a test run that was killed); a person's lab is not owned."""
    spec = spec or LabSpec()
    problem = requirements()
    if problem:
        raise RuntimeError(problem)
    state_dir = os.path.join(spec.home, "slurm-lab", spec.name)
    os.makedirs(state_dir)
    nodes = _layout(spec)
    record: Dict[str, Any] = {"version": 1, "spec": dataclasses.asdict(spec), "state_dir": state_dir,
                              "nodes": [dataclasses.asdict(n) for n in nodes],
                              "netns": [network.switch_name(spec.name)] + [n.netns for n in nodes],
                              "processes": {}, "timings": {},
                              "owner": procs.ProcessRecord.of(os.getpid()) if owned else None}
    _save(state_dir, record)  # the record exists before anything it names
    started = time.monotonic()
    try:
        _build(spec, state_dir, nodes, record, Deadline(timeout))
    except BaseException:
        down(state_dir, remove_files=False)
        raise
    record["timings"]["total_s"] = round(time.monotonic() - started, 3)
    _save(state_dir, record)
    return Lab(state_dir)


def _build(spec: LabSpec, state_dir: str, nodes: List[LabNode], record: Dict[str, Any], deadline: Deadline) -> None:
    t0 = time.monotonic()
    timings = record["timings"]
    for sub in ("etc", "munge", "statesave"):
        os.makedirs(os.path.join(state_dir, sub), mode=0o755, exist_ok=True)
    os.chmod(os.path.join(state_dir, "munge"), 0o755)
    with open(os.path.join(state_dir, "etc", "slurm.conf"), "w") as handle:
        handle.write(slurm_conf(spec, nodes, state_dir))
    with open(os.path.join(state_dir, "etc", "hosts"), "w") as handle:
        handle.write("127.0.0.1 localhost\n" + "".join(f"{n.address} {n.name}\n" for n in nodes))
    with open(os.path.join(state_dir, "etc", "cgroup.conf"), "w") as handle:
        # slurmd loads a cgroup plugin even with proctrack/linuxproc and task/none: autodetect fails in a node's
        # fresh /sys ("No filesystem mounted on /sys/fs/cgroup"); cgroup/v1 initialises without any mount
        handle.write("CgroupPlugin=cgroup/v1\n")
    key = os.path.join(state_dir, "munge", "munge.key")
    with open(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400), "wb") as handle:
        handle.write(os.urandom(1024))
    ssh = _ssh_files(state_dir)
    with open(ssh["host_key"] + ".pub") as handle:
        host_public = " ".join(handle.read().split()[:2])
    with open(ssh["known_hosts"], "w") as handle:
        handle.write("".join(f"{n.address} {host_public}\n" for n in nodes))
    node_files = {n.name: _node_file(state_dir, n, ssh) for n in nodes}
    timings["files_s"] = round(time.monotonic() - t0, 3)

    network.create(spec.name, nodes)
    subprocess.run(["ip", "-n", network.switch_name(spec.name), "addr", "add", f"{OPERATOR}/{SUBNET.prefixlen}",
                    "dev", "br0"], check=True, capture_output=True, timeout=15)
    timings["network_s"] = round(time.monotonic() - t0, 3)

    munge_dir = os.path.join(state_dir, "munge")
    munged = procs.spawn([BINARIES["munged"], "-F", "--force", f"--key-file={key}",
                          f"--socket={os.path.join(munge_dir, 'munge.socket.2')}",
                          f"--pid-file={os.path.join(munge_dir, 'munged.pid')}",
                          f"--log-file={os.path.join(munge_dir, 'munged.log')}",
                          f"--seed-file={os.path.join(munge_dir, 'munged.seed')}"],
                         os.path.join(munge_dir, "munged.out"), owner=state_dir)
    record["processes"]["munged"] = dict(munged, started_at=time.time())
    _save(state_dir, record)
    while not os.path.exists(os.path.join(munge_dir, "munge.socket.2")):
        if deadline.expired() or not munged.alive():
            raise RuntimeError(f"munged did not start: see {munge_dir}/munged.log")
        time.sleep(0.02)
    timings["munged_s"] = round(time.monotonic() - t0, 3)

    for node in nodes:  # every node at once: each one's daemons start inside it
        proc = lab_nodes.start(node.netns, node_files[node.name],
                               os.path.join(state_dir, "nodes", node.name, "log", "init.out"), owner=state_dir)
        record["processes"][f"node@{node.name}"] = dict(proc, started_at=time.time())
    _save(state_dir, record)
    lab_nodes.wait_ssh(network.switch_name(spec.name), [n.address for n in nodes], record, deadline)
    timings["sshd_s"] = round(time.monotonic() - t0, 3)

    lab = Lab.__new__(Lab)
    lab.state_dir, lab.record, lab.spec, lab.nodes = state_dir, record, spec, nodes
    lab.switch = network.switch_name(spec.name)
    workers = {n.name for n in nodes if n.role == "worker"}
    while True:
        states = lab.node_states()
        if workers <= set(states) and all(states[w] == "idle" for w in workers):
            break
        dead = lab_nodes.dead(record)
        if dead or deadline.expired():
            raise RuntimeError(f"the Slurm lab did not become ready (node states {states}; dead: {dead}); "
                               f"logs under {state_dir}/nodes/*/log")
        time.sleep(0.1)
    timings["slurm_ready_s"] = round(time.monotonic() - t0, 3)
    write_json_atomic(lab.vars_path, lab_vars(spec, state_dir, nodes, ssh))


def lab_vars(spec: LabSpec, state_dir: str, nodes: List[LabNode], ssh: Dict[str, str]) -> Dict[str, Any]:
    """experiments/vars/hosts-slurm.json with this lab's nodes, SSH key and seat: what a user with a Slurm cluster
    writes, nothing more."""
    profile = read_json(PROFILE, None) or {"configuration": {"chaosscheduler_platform": "hosts",
                                                             "chaosscheduler_hosts": {}}}
    configuration = profile["configuration"]
    hosts = configuration["chaosscheduler_hosts"]
    hosts["connect_netns"] = network.switch_name(spec.name)
    hosts["same_clock"] = True
    hosts["ssh"] = {"user": "root", "port": 22, "key_file": ssh["client_key"], "known_hosts": ssh["known_hosts"]}
    hosts["masters"] = [{"name": n.name, "host": n.address} for n in nodes if n.role == "controller"]
    hosts["workers"] = [{"name": n.name, "host": n.address, "slots": spec.cpus} for n in nodes if n.role == "worker"]
    hosts["slots"] = spec.cpus
    hosts["registry"] = []
    configuration.pop("prometheus_base_url", None)
    return profile


def down(state_dir: str, remove_files: bool = True) -> Dict[str, Any]:
    """Remove the lab by its record: kill its processes (a node's ``unshare`` takes its PID namespace with it),
    delete its network namespaces. Idempotent; returns what was removed."""
    record = read_json(os.path.join(state_dir, "lab.json"), None)
    if record is None:
        return {"processes": [], "netns": []}
    removed = lab_nodes.remove(record)
    if remove_files:
        shutil.rmtree(state_dir, ignore_errors=True)
    return removed


def sweep(root: str = "/tmp") -> List[str]:
    """Remove, by their records, the labs under ``root/cs*/slurm-lab/`` whose owning process is gone (a test run
    killed before its fixture could clean up). Labs without an owner (started by a person) are left alone."""
    removed = []
    for record_path in sorted(glob.glob(os.path.join(root, "cs*", "slurm-lab", "*", "lab.json"))):
        record = read_json(record_path, None) or {}
        owner = record.get("owner")
        if owner and not procs.is_running(owner):
            down(os.path.dirname(record_path))
            removed.append(os.path.dirname(record_path))
    return removed


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.labs.slurm", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="build and start a lab; print its state dir and var file")
    start.add_argument("--name", default="")
    start.add_argument("--home", default="")
    start.add_argument("--workers", type=int, default=4)
    start.add_argument("--cpus", type=int, default=16)
    start.add_argument("--no-backup", action="store_true")
    start.add_argument("--no-requeue", action="store_true")
    start.add_argument("--slurmd-timeout", type=int, default=15)
    start.add_argument("--cred-expire", type=int, default=10)
    for name in ("status", "down"):
        sub.add_parser(name).add_argument("state_dir")
    sub.add_parser("sweep", help="remove the labs of test runs that were killed").add_argument("root", nargs="?",
                                                                                              default="/tmp")
    args = parser.parse_args(argv)
    if args.command == "sweep":
        print(json.dumps(sweep(args.root), indent=2))
        return 0
    if args.command == "up":
        lab = up(owned=False, spec=LabSpec(name=args.name, home=args.home, workers=args.workers, cpus=args.cpus,
                         backup=not args.no_backup, requeue=not args.no_requeue, slurmd_timeout=args.slurmd_timeout,
                         cred_expire=args.cred_expire))
        print(json.dumps({"state_dir": lab.state_dir, "var_file": lab.vars_path, "timings": lab.record["timings"]},
                         indent=2))
    elif args.command == "status":
        lab = Lab(args.state_dir)
        alive = {k: procs.is_running(p) for k, p in lab.processes().items()}
        print(json.dumps({"processes": alive, "nodes": lab.node_states()}, indent=2))
    else:
        print(json.dumps(down(args.state_dir), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
