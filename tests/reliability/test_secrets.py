"""Secrets: nothing this library logs, returns or stores contains a secret value.

Real ``chaos run``s are given Chaos Toolkit secrets (from the environment, so the experiment file itself holds only
their names) and pass them to every one of our activities; the journal, the chaos log at debug level, the console
output, the ledger and the reapers' files (if any are left: a closed fault's are removed) are then scanned for the
values. On the embedded cluster the secrets are
unused; on the ``hosts`` platform they are used — a Prometheus bearer token (a local stand-in for Prometheus checks
that it arrives), an SSH password and an SSH private key (towards a closed loopback port) — and must still appear
nowhere but on the wire.
"""

import contextlib
import http.server
import json
import os
import signal
import shutil
import socket
import tempfile
import threading
import uuid

import pytest

from chaosscheduler.testbed import down
from chaosscheduler.timing import wait_until

from . import harness
from .conftest import REAL

pytestmark = REAL + [pytest.mark.e2e]


def _secrets():
    marker = uuid.uuid4().hex
    return {"CS_REL_TOKEN": f"tok-{marker}-TOKEN", "CS_REL_PASSWORD": f"pw-{marker}-PASSWORD",
            "CS_REL_KEY": f"-----BEGIN OPENSSH PRIVATE KEY-----\nkey{marker}KEY\n-----END OPENSSH PRIVATE KEY-----\n"}


def _secret_block():
    return {"ops": {"prometheus_token": {"type": "env", "key": "CS_REL_TOKEN"},
                    "ssh_password": {"type": "env", "key": "CS_REL_PASSWORD"},
                    "ssh_key": {"type": "env", "key": "CS_REL_KEY"}}}


def _activity(kind, name, module, func, arguments=None, **extra):
    provider = {"type": "python", "module": f"chaosscheduler.{module}", "func": func, "secrets": ["ops"]}
    if arguments:
        provider["arguments"] = arguments
    return dict({"type": kind, "name": name, "provider": provider}, **extra)


def _scan(paths, values):
    """(file, secret) pairs where a secret value, or a recognisable part of it, occurs."""
    found = []
    for path in paths:
        with open(path, "rb") as handle:
            data = handle.read().decode("utf-8", "replace")
        for value in values:
            pieces = [value] + [line for line in value.splitlines() if "KEY" in line and "BEGIN" not in line
                                and "END" not in line]
            if any(piece in data or json.dumps(piece)[1:-1] in data for piece in pieces):
                found.append((os.path.basename(path), value[:12]))
    return found


def _files(*dirs):
    out = []
    for top in dirs:
        for d, _, names in os.walk(top):
            out += [os.path.join(d, n) for n in names if not n.endswith(".lock")]
    return out


def _run(experiment: dict, workdir: str, home: str, cluster: str, secrets: dict) -> harness.ChaosRun:
    path = os.path.join(workdir, "experiment.json")
    with open(path, "w") as handle:
        json.dump(experiment, handle)
    saved = {k: os.environ.get(k) for k in secrets}
    os.environ.update(secrets)  # env secrets: the experiment file names them, never holds them
    try:
        run = harness.start_chaos(path, workdir, home, cluster)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert run.proc.wait(timeout=180) in (0, 1), run.output()[-3000:]
    return run


def test_secrets_given_to_our_activities_on_the_embedded_cluster_appear_nowhere():
    secrets = _secrets()
    home = tempfile.mkdtemp(prefix="css", dir="/tmp")
    workdir = tempfile.mkdtemp(prefix="cssw", dir="/tmp")
    cluster = "s" + uuid.uuid4().hex[:9]
    experiment = {
        "version": "1.0.0", "title": "secrets passed to every activity", "description": "scan for leaks",
        "secrets": _secret_block(),
        "controls": [{"name": "chaosscheduler", "provider": {"type": "python", "module": "chaosscheduler.control",
                                                             "arguments": {"warmup": 1}}}],
        "steady-state-hypothesis": {"title": "healthy", "probes": [
            _activity("probe", "healthy", "probes", "cluster_health",
                      tolerance={"type": "range", "range": [0, 0], "target": "problem_count"})]},
        "method": [
            _activity("action", "isolate", "actions", "isolate_worker", {"duration": 30}),
            _activity("probe", "detection", "probes", "worker_failure_detection_time", {"timeout": 20}),
            _activity("probe", "rescheduled", "probes", "rescheduling_success_rate", {"deadline": 10}),
            _activity("action", "rejoin", "rollbacks", "rejoin_worker"),
            _activity("action", "kill-follower", "actions", "kill_master", {"target": "follower", "duration": 30}),
            _activity("probe", "election", "probes", "leader_election_time", {"timeout": 5}),
            _activity("action", "restart", "rollbacks", "restart_master"),
            _activity("action", "partition-plan", "actions", "partition_workers", {"workers": "50%", "dry_run": True}),
            _activity("action", "refused", "actions", "kill_master", {"target": "no-such-master"}),
            _activity("probe", "consistent", "probes", "data_consistency", {"settle": 10})],
        "rollbacks": [_activity("action", "undo-all", "rollbacks", "undo_all_faults")],
        "runtime": {"rollbacks": {"strategy": "always"}},
    }
    try:
        run = _run(experiment, workdir, home, cluster, secrets)
        journal = run.journal()
        outputs = {r["activity"]["name"]: r for r in journal["run"]}
        assert outputs["isolate"]["status"] == "succeeded" and outputs["kill-follower"]["status"] == "succeeded"
        assert outputs["refused"]["status"] == "failed"  # an error path too
        assert len(journal["chaosscheduler"]["faults"]) == 2
        files = _files(workdir, home)
        assert {"journal.json", "chaos.log", "chaos.out", "ledger.json"} <= {os.path.basename(f) for f in files}
        # closed faults leave no reaper file (their copies held the records the ledger, scanned here, still holds)
        assert not any("/reapers/" in f for f in files), [f for f in files if "/reapers/" in f]
        assert _scan(files, list(secrets.values())) == []
        planted = os.path.join(workdir, "planted.log")  # the scan finds what it looks for, quoted in JSON too
        with open(planted, "w") as handle:
            json.dump({"error": secrets["CS_REL_KEY"]}, handle)
        assert _scan([planted], list(secrets.values())) == [("planted.log", secrets["CS_REL_KEY"][:12])]
    finally:
        down(os.path.join(home, "testbed", cluster))
        _stop_reapers(home)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)


class _FakePrometheus(http.server.ThreadingHTTPServer):
    """Answers every query with an empty vector (or 401 for the first ``refuse`` requests) and records the
    Authorization headers it receives: proof that the token left our process, and only towards Prometheus."""

    daemon_threads = True

    def __init__(self):
        self.authorizations = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(handler):  # noqa: N805 - the server is ``self``
                self.authorizations.append(handler.headers.get("Authorization"))
                refused = len(self.authorizations) % 2 == 0
                body = ({"status": "error", "errorType": "unauthorized", "error": "bad token"} if refused
                        else {"status": "success", "data": {"resultType": "vector", "result": []}})
                data = json.dumps(body).encode()
                handler.send_response(401 if refused else 200)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data)

        super().__init__(("127.0.0.1", 0), Handler)


def _stop_reapers(home: str) -> None:
    """A fault whose host never answered stays open (nothing proves it gone), and its reaper retries for a while:
    this test's reapers, found by the marker naming its state home, are stopped before the home is removed."""
    for pid in harness.reapers(home):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not harness.reapers(home), 10, message="reapers stopped")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_secrets_used_by_the_hosts_platform_appear_nowhere_but_on_the_wire():
    secrets = _secrets()
    home = tempfile.mkdtemp(prefix="csh", dir="/tmp")
    workdir = tempfile.mkdtemp(prefix="cshw", dir="/tmp")
    prometheus = _FakePrometheus()
    threading.Thread(target=prometheus.serve_forever, daemon=True).start()
    port = _closed_port()
    hosts = {
        "ssh": {"user": "chaos", "port": port, "password_secret": "ssh_password", "strict_host_keys": False,
                "timeout": 2},
        "masters": [{"name": "m1", "host": "127.0.0.1", "ssh": {"key_secret": "ssh_key", "port": port}},
                    {"name": "m2", "host": "127.0.0.1"}],
        "workers": [{"name": "w1", "host": "127.0.0.1"}, {"name": "w2", "host": "127.0.0.1"}],
        "process": {"pattern": "scheduler-master"},
        "leader": {"source": "promql", "query": "scheduler_is_leader == 1", "label": "instance"},
        "metrics": {"token_secret": "prometheus_token", "timeout": 2},
    }
    experiment = {
        "version": "1.0.0", "title": "secrets used by the hosts platform", "description": "scan for leaks",
        "secrets": _secret_block(),
        "configuration": {"chaosscheduler_platform": "hosts", "chaosscheduler_hosts": hosts,
                          "prometheus_base_url": f"http://127.0.0.1:{prometheus.server_address[1]}"},
        "controls": [{"name": "chaosscheduler", "provider": {"type": "python", "module": "chaosscheduler.control",
                                                             "arguments": {"timeline": False}}}],
        "method": [
            _activity("probe", "health", "probes", "cluster_health"),
            _activity("probe", "health-again", "probes", "cluster_health"),
            _activity("probe", "leader", "probes", "leader_election_time", {"timeout": 1}),
            _activity("action", "kill-plan", "actions", "kill_master", {"target": "m1", "dry_run": True}),
            _activity("action", "kill", "actions", "kill_master", {"target": "m2", "duration": 5}),
            _activity("action", "isolate-plan", "actions", "isolate_worker", {"worker": "w1", "dry_run": True}),
            _activity("action", "partition", "actions", "partition_workers", {"workers": "w2", "duration": 5})],
        "rollbacks": [_activity("action", "undo-all", "rollbacks", "undo_all_faults")],
        "runtime": {"rollbacks": {"strategy": "always"}},
    }
    try:
        run = _run(experiment, workdir, home, "unused", secrets)
        journal = run.journal()
        statuses = {r["activity"]["name"]: r["status"] for r in journal["run"]}
        # the error paths ran: SSH refused, Prometheus 401
        assert "failed" in statuses.values(), (statuses, run.output()[-3000:])
        print("hosts platform run:", statuses, [r.get("exception", [""])[-1][:160] for r in journal["run"]])
        assert f"Bearer {secrets['CS_REL_TOKEN']}" in prometheus.authorizations, prometheus.authorizations
        files = _files(workdir, home)
        assert _scan(files, list(secrets.values())) == []
    finally:
        prometheus.shutdown()
        prometheus.server_close()
        _stop_reapers(home)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
