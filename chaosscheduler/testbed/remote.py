"""The embedded cluster as if it were remote hosts: an ``sshd`` in every node's namespace and a Prometheus that
scrapes every node, plus a var file that describes the cluster to the ``hosts`` platform.

Options ``sshd`` and ``prometheus`` of :class:`ClusterSpec` (network namespaces only). The switch namespace gets
the address ``198.18.0.254`` on its bridge: it is the operator's seat on the cluster's network, where Prometheus
listens and from which SSH and HTTP connections are opened (``connect_netns``). Nothing is added to the root
namespace. Every process is recorded in ``cluster.json`` and carries the cluster's marker, so ``down`` removes it.

Files, under ``<state_dir>/``: ``ssh/`` (a host key, a client key, ``authorized_keys``, ``known_hosts``,
``sshd_config``), ``prometheus/`` (``prometheus.yml``, the TSDB), and ``hosts-vars.json``: a Chaos Toolkit var
file that switches the experiments to the ``hosts`` platform for this cluster.
"""

import json
import os
import shutil
import sys
import time
from typing import Any, Dict, List

from .. import procs
from .._files import write_json_atomic
from ..errors import TestbedError
from ..hosts import LocalHost
from . import network, state
from .spec import API_PORT, ETCD_CLIENT_PORT, SUBNET, ClusterSpec, Node

__all__ = ["start", "OPERATOR_ADDRESS", "PROMETHEUS_PORT", "vars_path"]

OPERATOR_ADDRESS = str(SUBNET.network_address + 254)
PROMETHEUS_PORT = 9090
SCRAPE_INTERVAL = 1.0
SSHD = "/usr/sbin/sshd"
_local = LocalHost()


def vars_path(state_dir: str) -> str:
    return os.path.join(state_dir, "hosts-vars.json")


def _spawn(state_dir: str, record: Dict[str, Any], name: str, argv: List[str]) -> None:
    proc = procs.spawn(argv, state.log_path(state_dir, name), owner=state_dir)
    record.setdefault("processes", {})[name] = dict(proc, started_at=time.time())
    state.save(state_dir, record)


def _ssh_files(state_dir: str) -> Dict[str, str]:
    directory = os.path.join(state_dir, "ssh")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    files = {k: os.path.join(directory, v) for k, v in (("host_key", "ssh_host_ed25519_key"),
                                                       ("client_key", "id_ed25519"),
                                                       ("authorized_keys", "authorized_keys"),
                                                       ("known_hosts", "known_hosts"),
                                                       ("config", "sshd_config"))}
    for key in ("host_key", "client_key"):
        if not os.path.exists(files[key]):
            _local.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"chaosscheduler-{key}", "-f",
                        files[key]], timeout=30)
    with open(files["client_key"] + ".pub") as handle:
        public = handle.read().strip()
    with open(files["authorized_keys"], "w") as handle:
        handle.write(public + "\n")
    with open(files["config"], "w") as handle:
        handle.write("\n".join([
            "Port 22", f"HostKey {files['host_key']}", "AuthorizedKeysFile none",
            # read as root: the state home may be private (0700), and a non-root login must still find its key
            f"AuthorizedKeysCommand /usr/bin/cat {files['authorized_keys']}", "AuthorizedKeysCommandUser root",
            "PidFile none", "StrictModes no", "UsePAM no", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
            "X11Forwarding no", "AllowTcpForwarding no", "PrintMotd no", "LogLevel ERROR", "MaxStartups 100",
            "MaxSessions 100", ""]))
    return files


def _start_sshd(state_dir: str, record: Dict[str, Any], nodes: List[Node]) -> Dict[str, str]:
    if not os.path.exists(SSHD):
        raise TestbedError("testbed setting 'sshd' needs openssh-server (apt-get install openssh-server)")
    files = _ssh_files(state_dir)
    with open(files["host_key"] + ".pub") as handle:
        host_public = " ".join(handle.read().split()[:2])
    with open(files["known_hosts"], "w") as handle:
        handle.write("".join(f"{n.address} {host_public}\n" for n in nodes))
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    for node in nodes:
        _spawn(state_dir, record, f"sshd@{node.name}",
               ["ip", "netns", "exec", node.netns, SSHD, "-D", "-e", "-f", files["config"],
                "-o", f"ListenAddress={node.address}"])
    return files


def _start_prometheus(state_dir: str, record: Dict[str, Any], nodes: List[Node], switch: str) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        raise TestbedError("testbed setting 'prometheus' needs Prometheus (apt-get install prometheus)")
    directory = os.path.join(state_dir, "prometheus")
    os.makedirs(os.path.join(directory, "data"), exist_ok=True)
    jobs = {"masters": "master", "workers": "worker", "load": "load", "registry": "etcd"}
    ms = int(SCRAPE_INTERVAL * 1000)
    lines = ["global:", f"  scrape_interval: {ms}ms", f"  scrape_timeout: {int(ms * 0.9)}ms",
             f"  evaluation_interval: {ms}ms", "scrape_configs:"]
    for job, role in jobs.items():
        targets = [f"{n.address}:{ETCD_CLIENT_PORT if role == 'etcd' else API_PORT}" for n in nodes if n.role == role]
        if targets:
            lines += [f"  - job_name: {job}", "    static_configs:",
                      f"      - targets: {json.dumps(targets)}"]
    config = os.path.join(directory, "prometheus.yml")
    with open(config, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    _spawn(state_dir, record, "prometheus",
           ["ip", "netns", "exec", switch, binary, f"--config.file={config}",
            f"--storage.tsdb.path={os.path.join(directory, 'data')}", "--storage.tsdb.retention.time=1d",
            f"--web.listen-address={OPERATOR_ADDRESS}:{PROMETHEUS_PORT}", "--log.level=warn"])


def _wait_port(switch: str, address: str, port: int, timeout: float = 15.0) -> None:
    from ..metrics.transport import TransportError, connect

    deadline = time.monotonic() + timeout
    while True:
        try:
            connect(address, port, 1.0, switch).close()
            return
        except TransportError as e:
            if time.monotonic() > deadline:
                raise TestbedError(f"{address}:{port} does not accept connections after {timeout} s: {e}") from None
            time.sleep(0.02)


def start(state_dir: str, record: Dict[str, Any], nodes: List[Node], mode: str) -> None:
    """Start sshd and/or Prometheus for the cluster ``record`` describes and write its hosts var file."""
    spec = ClusterSpec.from_dict(record["spec"])
    if mode != "netns":
        raise TestbedError("testbed settings 'sshd' and 'prometheus' need network namespaces (run as root)")
    switch = network.switch_name(spec.name)
    _local.run(["ip", "-n", switch, "addr", "add", f"{OPERATOR_ADDRESS}/{SUBNET.prefixlen}", "dev", "br0"],
               timeout=15)
    files = _start_sshd(state_dir, record, nodes) if spec.sshd else None
    if spec.prometheus:
        _start_prometheus(state_dir, record, nodes, switch)
    if files:
        for node in nodes:
            _wait_port(switch, node.address, 22)
    if spec.prometheus:
        _wait_port(switch, OPERATOR_ADDRESS, PROMETHEUS_PORT)
    write_json_atomic(vars_path(state_dir), hosts_vars(spec, state_dir, nodes, files))


def hosts_vars(spec: ClusterSpec, state_dir: str, nodes: List[Node], files: Any) -> Dict[str, Any]:
    """A var file that describes this cluster to the ``hosts`` platform: SSH for faults, Prometheus for the
    probes, a PromQL leader source (HTTP without Prometheus)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    home = os.path.dirname(os.path.dirname(state_dir.rstrip("/")))

    def entry(node: Node) -> Dict[str, Any]:
        return {"name": node.name, "host": node.address}

    hosts: Dict[str, Any] = {
        "connect_netns": network.switch_name(spec.name),
        "same_clock": True,
        "slots": spec.slots,
        "masters": [entry(n) for n in nodes if n.role == "master"],
        "workers": [entry(n) for n in nodes if n.role == "worker"],
        "registry": [entry(n) for n in nodes if n.role == "etcd"],
        "process": {"listen_port": API_PORT, "restart_timeout": 20,
                    "restart_command": ["env", f"CHAOSSCHEDULER_HOME={home}", f"PYTHONPATH={root}", sys.executable,
                                        "-m", "chaosscheduler.cli", "testbed", "restart-node", "{name}", "--name",
                                        spec.name]},
    }
    if files:
        hosts["ssh"] = {"user": "root", "port": 22, "key_file": files["client_key"],
                        "known_hosts": files["known_hosts"]}
    configuration: Dict[str, Any] = {"chaosscheduler_platform": "hosts", "chaosscheduler_hosts": hosts}
    if spec.prometheus:
        hosts["leader"] = {"source": "promql", "query": "scheduler_is_leader == 1"}
        hosts["metrics"] = {"scrape_interval": SCRAPE_INTERVAL}
        configuration["prometheus_base_url"] = f"http://{OPERATOR_ADDRESS}:{PROMETHEUS_PORT}"
    else:
        # since_path: the new leader's own election timestamp, so accuracy does not depend on the poll interval
        hosts["leader"] = {"source": "http", "url": "http://{address}:8080/api/leader", "json_path": "leader",
                           "since_path": "since"}
    return {"configuration": configuration}
