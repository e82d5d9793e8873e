"""Polite polling, measured (a section of benchmarks/fanout.py): the probes at the hosts platform's *default* poll
interval, against the embedded cluster driven as remote hosts (sshd + Prometheus), each figure beside the cluster's
ground-truth event log.

For each leader source: kill the leader over SSH, then ``leader_election_time``; isolate a worker, then
``worker_failure_detection_time`` (Prometheus). Every HTTP request the probe sends (leader source, Prometheus) is
counted while it runs: requests per second = count / the probe's own duration. The error is the measured value minus
the ground truth; it must stay within the resolution the probe states.
"""

import json
import re
import time
from typing import Any, Dict, List

import requests
from _bench import Load, Session, table, verdict

from chaosscheduler import actions, pacing, probes, rollbacks  # noqa: E402
from chaosscheduler.hosts import ssh  # noqa: E402
from chaosscheduler.testbed import remote  # noqa: E402
from chaosscheduler.timing import wait_until  # noqa: E402

SOURCES = {
    "http": {"source": "http", "url": "http://{address}:8080/api/leader", "json_path": "leader",
             "since_path": "since"},
    "etcd": {"source": "etcd", "key": "/cs/leader", "json_path": "name", "since_path": "since"},
    "promql": {"source": "promql", "query": "scheduler_is_leader == 1"},
}


class Counter:
    """Counts the HTTP requests this process sends (every leader source and Prometheus go through requests)."""

    def __init__(self) -> None:
        self.count = 0
        self._send = requests.Session.send

    def __enter__(self) -> "Counter":
        counter = self

        def send(session: Any, request: Any, **kwargs: Any) -> Any:
            counter.count += 1
            return counter._send(session, request, **kwargs)

        requests.Session.send = send  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: Any) -> None:
        requests.Session.send = self._send  # type: ignore[assignment]


def _healthy(configuration: Dict[str, Any]) -> None:
    wait_until(lambda: probes.cluster_health(configuration=configuration)["problem_count"] == 0, 60, interval=0.5,
               message="the cluster healthy again")


def _resolution(text: Any) -> float:
    """The seconds a probe's stated resolution adds up to ("..., resolution 0.21 s"; "scrape interval 1 s (+
    evaluation step 0.25 s)" = 1.25 s)."""
    if isinstance(text, (int, float)):
        return float(text)
    text = str(text)
    if "resolution " in text:
        text = text.split("resolution ", 1)[1]
        found = re.findall(r"(\d+(?:\.\d+)?) s", text)[:1]
    else:
        found = re.findall(r"(\d+(?:\.\d+)?) s", text)
    return sum(float(x) for x in found) if found else float("nan")


def measure(bench: Session, load: Load, account: str, quick: bool = False) -> Dict[str, Any]:
    tb = bench.cluster(masters=3, workers=4, load_rate=1.0, sshd=True, prometheus=True)
    try:
        with open(remote.vars_path(tb.state_dir)) as handle:
            base = json.load(handle)["configuration"]
        base["chaosscheduler_hosts"]["ssh"].update(user=account, sudo=True)
        base["chaosscheduler_home"] = bench.home
        rows: List[Dict[str, Any]] = []
        for name in (["http"] if quick else list(SOURCES)):
            configuration = json.loads(json.dumps(base))
            configuration["chaosscheduler_hosts"]["leader"] = SOURCES[name]
            _healthy(configuration)
            load.sample()
            record = actions.kill_master(target="leader", duration=120, configuration=configuration)
            with Counter() as counter:
                started = time.monotonic()
                value = probes.leader_election_time(timeout=30, configuration=configuration)["value"]
                spent = time.monotonic() - started
            stored = bench.ledger.get(record["id"])["measurements"]["leader_election_time"]
            acquired = [e for e in tb.events("leader_acquired") if e["ts"] >= record["started_at"]]
            truth = acquired[0]["since"] - record["started_at"] if acquired else None
            rows.append({"probe": "leader_election_time", "source": name, "value": value, "truth": truth,
                         "resolution": _resolution(stored.get("resolution")), "how": stored.get("resolution"),
                         "requests": counter.count, "seconds": spent})
            rollbacks.restart_master(configuration=configuration)
            _healthy(configuration)
        configuration = json.loads(json.dumps(base))
        record = actions.isolate_worker(worker="worker-2", duration=120, configuration=configuration)
        with Counter() as counter:
            started = time.monotonic()
            value = probes.worker_failure_detection_time(timeout=60, configuration=configuration)["value"]
            spent = time.monotonic() - started
        stored = bench.ledger.get(record["id"])["measurements"]["worker_failure_detection_time"]
        declared = [e for e in tb.events("worker_declared_dead") if e["ts"] >= record["started_at"]
                    and e["worker"] == "worker-2"]
        rows.append({"probe": "worker_failure_detection_time", "source": "prometheus", "value": value,
                     "truth": declared[0]["ts"] - record["started_at"] if declared else None,
                     "resolution": _resolution(stored.get("resolution")), "how": stored.get("resolution"),
                     "requests": counter.count, "seconds": spent})
        rollbacks.rejoin_worker(configuration=configuration)
        from chaosscheduler import config

        interval = config.load(base).poll_interval
        return {"rows": rows, "poll_interval": interval, "max_rate": pacing.MAX_RATE}
    finally:
        ssh.close_all()
        bench.remove_cluster(tb)


def report(polling: Dict[str, Any]) -> None:
    out = []
    for r in polling["rows"]:
        rate = r["requests"] / r["seconds"] if r["seconds"] else float("nan")
        error = r["value"] - r["truth"] if r["truth"] is not None else None
        within = error is not None and -0.02 <= error <= r["resolution"] + 0.05
        out.append([r["probe"], r["source"], f"{r['value']:.3f} s", "-" if r["truth"] is None else f"{r['truth']:.3f} s",
                    "-" if error is None else f"{error * 1000:+.0f} ms", f"{r['resolution']:.3f} s",
                    f"{r['requests']} in {r['seconds']:.1f} s", f"{rate:.2f}/s",
                    f"{verdict(rate <= polling['max_rate'])} / {verdict(within)}"])
    print()
    print(f"Polling at the hosts platform's default interval ({polling['poll_interval']} s), against the event log")
    print(table(["probe", "source", "measured", "truth", "error", "resolution", "requests", "rate",
                 f"<= {polling['max_rate']:g}/s / within resolution"], out, left=2))
