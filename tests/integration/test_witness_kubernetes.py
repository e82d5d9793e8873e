"""The witness's kubernetes submitter through the real ``kubernetes`` client against the fake API server
(tests/fakes/k8s_api.py): no Kubernetes API server can run on these machines. The fake's Job controller and kubelet
really run each Job's container command (the witness script) as a local process and keep its output as the pod's
log, so submission, evidence collection from the logs, completions and the clean-up are exercised end to end; the
scheduling itself (one pod per Job, no retries) is the fake's, not Kubernetes'."""

import os
import time

import pytest

from chaosscheduler import config, witness
from chaosscheduler.platforms import for_settings
from chaosscheduler.timing import wait_until
from chaosscheduler.witness.submitters.kubernetes import RUN_LABEL
from tests.fakes.k8s_api import FakeCluster

NS = "schedule-system"
TOKEN = "fake-token-do-not-store"


@pytest.fixture
def fake(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent-kubeconfig"))
    for key in [k for k in os.environ if k.startswith("KUBERNETES_")]:
        monkeypatch.delenv(key)
    cluster = FakeCluster(token=TOKEN).start()
    yield cluster
    cluster.stop()


def settings_for(home, submitter, **options):
    description = {"namespace": NS, "masters": {"selector": "app=scheduler-master"},
                   "workers": {"selector": "app=scheduler-worker"}, "registry": {"selector": "app=zookeeper"},
                   "leader": {"source": "lease", "name": "scheduler-master"}}
    return config.load({"chaosscheduler_platform": "kubernetes", "chaosscheduler_kubernetes": description,
                        "chaosscheduler_home": home,
                        "chaosscheduler_witness": dict({"submitter": submitter}, **options)})


def run(fake, home, run_id, submitter, seconds=2.0, **options):
    secrets = {"KUBERNETES_HOST": fake.url, "KUBERNETES_API_KEY": TOKEN}
    settings = settings_for(home, submitter, **options)
    workload = witness.start(settings, for_settings(settings, secrets), os.path.join(home, "runs", run_id),
                             run_id=run_id, secrets=secrets)
    until = time.monotonic() + seconds  # the load runs this long, and has answered at least four submissions
    wait_until(lambda: time.monotonic() >= until and len(workload.recorder.history().events) >= 2 * 4,
               seconds + 20, interval=0.05, message="four submissions answered")
    return workload, workload.stop()


def test_a_job_per_task_is_created_collected_from_its_log_and_deleted(fake, home):
    workload, summary = run(fake, home, "run-k8s-1", {"type": "kubernetes", "namespace": NS}, rate=4, duration=0.3)
    history = witness.load(home, "run-k8s-1")
    tasks = history.tasks()
    assert len(tasks) >= 4 and summary["counts"]["ok"] == len(tasks) and summary["valid"] is True
    created = [r for r in fake.requests if r["method"] == "POST" and r["path"].endswith("/jobs")]
    assert sorted(r["body"]["metadata"]["name"] for r in created) == sorted(tasks)
    body = created[0]["body"]
    container = body["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:2] == ["sh", "-c"] and container["command"][-1] == "/dev/stdout"
    assert body["metadata"]["labels"][RUN_LABEL] == "run-k8s-1"
    # every task ran once, on the node its pod was put on, seen in its log; the Jobs' status is the completion
    runs = witness.checker.executions(history.executions)
    assert sorted(runs) == sorted(tasks) and all(len(r) == 1 and r[0]["end"] for r in runs.values())
    assert all(r[0]["node"].startswith("node-") and r[0]["host"] == r[0]["node"] for r in runs.values())
    assert sorted(e["task"] for e in history.events if e["type"] == "completion") == sorted(tasks)
    # nothing left behind: every Job of the run deleted, with its pod
    assert fake.jobs == {} and not [p for p in fake.pods.values() if RUN_LABEL in p["metadata"]["labels"]]


def test_a_job_template_and_a_refused_submission(fake, home):
    template = {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"labels": {"team": "sre"}, "annotations": {"witness/duration": "{duration}"}},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                    {"name": "probe", "image": "example/probe:1", "command": ["{argv}"]}]}}}}
    workload, summary = run(fake, home, "run-k8s-2", {"type": "kubernetes", "namespace": NS, "template": template},
                            rate=4, duration=0.2)
    created = [r["body"] for r in fake.requests if r["method"] == "POST" and r["path"].endswith("/jobs")]
    assert created[0]["metadata"]["labels"]["team"] == "sre"
    assert created[0]["metadata"]["annotations"]["witness/duration"] == "0.2"
    assert summary["valid"] is True and summary["counts"]["completed"] == summary["counts"]["ok"], {k: summary[k] for k in ("counts", "lost", "forgotten", "duplicated", "unexpected", "collection_errors")}
    # a Job the API refuses (the fake answers 422 for a Job without containers): definitely refused
    bad = {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {"containers": []}}}}
    workload, summary = run(fake, home, "run-k8s-3", {"type": "kubernetes", "namespace": NS, "template": bad},
                            rate=4, duration=0.2)
    assert summary["counts"]["fail"] == summary["counts"]["invoked"] >= 4 and summary["counts"]["ok"] == 0
    assert summary["refused"] and fake.jobs == {}
