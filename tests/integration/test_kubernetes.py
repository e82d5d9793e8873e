"""The kubernetes platform end to end: the activities, through the real ``kubernetes`` client (configured by
``chaosk8s.create_k8s_api_client``), against a fake API server on 127.0.0.1 (tests/fakes/k8s_api.py).

The API server is a fake because no Kubernetes API server can run on these machines: it speaks the real HTTP
protocol and JSON for the endpoints we use, and plays the controllers (replacement pods, the Lease moving to
another master), but it is not Kubernetes. docs/kubernetes.md says what was and was not verified on a real cluster.
"""

import contextlib
import copy
import json
import os
import signal
import time

import pytest
from chaoslib.exceptions import ActivityFailed

from chaosscheduler import actions, config, probes, procs, rollbacks
from chaosscheduler.heal import heal
from chaosscheduler.ledger import Ledger
from chaosscheduler.timing import wait_until
from tests.fakes.k8s_api import FakeCluster

NS = "schedule-system"
TOKEN = "fake-token-do-not-store"


@pytest.fixture
def run_id():
    config.set_current_run(f"run-k8s-{time.monotonic_ns()}")
    yield
    config.set_current_run(None)


@pytest.fixture(autouse=True)
def no_reaper_left(home):
    """A test that fails half-way leaves open faults whose reapers would wait for their deadline against a stopped
    fake: end this test's reapers (found by their marker, by PID)."""
    yield
    for pid in procs.pids_with_marker(f"reaper:{home}"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)


@pytest.fixture
def no_kubeconfig(monkeypatch, tmp_path):
    """No kubeconfig: chaosk8s then builds the client from the KUBERNETES_* secrets."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent-kubeconfig"))
    for key in [k for k in os.environ if k.startswith("KUBERNETES_")]:
        monkeypatch.delenv(key)


@pytest.fixture
def fake(home, run_id, no_kubeconfig):
    cluster = FakeCluster(token=TOKEN).start()
    yield cluster
    cluster.stop()


def use_kubeconfig(monkeypatch, tmp_path, fake):
    """Point KUBECONFIG at a kubeconfig for ``fake``. The kubernetes client reads KUBECONFIG once, when it is
    imported (as a ``chaos`` process does at start), so its module default is set too; child processes (the reaper)
    read the environment."""
    from kubernetes.config import kube_config

    path = tmp_path / "kubeconfig"
    path.write_text(fake.kubeconfig())
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))


def make_fake(**options):
    return FakeCluster(token=TOKEN, **options).start()


def secrets(fake):
    return {"KUBERNETES_HOST": fake.url, "KUBERNETES_API_KEY": TOKEN}


def configuration(**changes):
    description = {"namespace": NS, "masters": {"selector": "app=scheduler-master"},
                   "workers": {"selector": "app=scheduler-worker"}, "registry": {"selector": "app=zookeeper"},
                   "leader": {"source": "lease", "name": "scheduler-master"}, "kill": {"ready_timeout": 20}}
    for key, value in changes.items():
        if value is None:
            description.pop(key, None)
        else:
            description[key] = value
    return {"chaosscheduler_platform": "kubernetes", "chaosscheduler_kubernetes": description,
            "chaosscheduler_poll_interval": 0.02}


def objects(fake):
    """Everything the fake holds that a fault could create or change (to show that nothing was)."""
    with fake.lock:
        return (sorted(fake.chaos), sorted(fake.policies),
                {n: dict(p["metadata"]["labels"]) for (_, n), p in fake.pods.items()}, len(fake.deletions),
                {k: dict(v) for k, v in fake.nft.items()})


def sentinel_chaos(fake, name="operator-latency"):
    """A NetworkChaos of the operator's own: ours must never touch it."""
    with fake.lock:
        fake.chaos[(NS, name)] = {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaos",
                                  "metadata": {"name": name, "namespace": NS, "labels": {"team": "sre"}},
                                  "spec": {"action": "delay", "mode": "all", "duration": "10m"}}


# ---------------------------------------------------------------------------------------------------- masters
def test_kill_master_deletes_the_leader_pod_with_grace_zero_and_the_lease_times_the_election(fake, home):
    """Fake API server (none can run here). kill_master deletes exactly the pod that holds the Lease, with grace
    period 0; leader_election_time measures until the Lease names another master, against the fake's own record
    of the election; restart_master waits for the replacement pod to be Ready."""
    cfg, sec = configuration(), secrets(fake)
    leader = fake.leader_pod()
    record = actions.kill_master(configuration=cfg, secrets=sec)
    assert record["targets"] == [leader] and record["was_leader"] and record["kind"] == "kubernetes-pod"
    assert record["method"] == "delete-pod" and record["grace_period"] == 0
    assert [d["pod"] for d in fake.deletions] == [leader] and fake.deletions[0]["grace"] == 0
    delete = [r for r in fake.requests if r["method"] == "DELETE"][0]
    assert delete["query"].get("gracePeriodSeconds") == ["0"]

    elapsed = probes.leader_election_time(timeout=10, configuration=cfg, secrets=sec)["value"]
    election = fake.elections[0]
    assert election["lost"] == leader and election["leader"] != leader
    truth = election["at"] - record["started_at"]
    # resolution: the poll interval plus one request (stated with the measurement); the fake elects after 0.5 s
    assert truth - 0.01 <= elapsed <= truth + 0.5, (elapsed, truth)
    stored = Ledger(home).get(record["id"])["measurements"]["leader_election_time"]
    assert stored["new_leader"] == election["leader"] and "lease" in stored["source"]

    result = rollbacks.restart_master(configuration=cfg, secrets=sec)
    assert result["undone"] == [record["id"]]
    closed = Ledger(home).get(record["id"])
    replacement = closed["undo_result"]["replacement"]
    assert replacement not in record["masters_running"] and replacement in fake.pod_names("scheduler-master")
    assert fake.pod(replacement)["status"]["conditions"][0]["status"] == "True"
    assert probes.cluster_health(configuration=cfg, secrets=sec)["problem_count"] == 0


def test_exec_kill_restarts_the_container_in_place_and_refuses_a_kill_that_did_nothing(fake, home):
    """Fake API server (none can run here). In exec-kill mode the process is killed through the pods/exec websocket
    (v5.channel.k8s.io) and the pod's restart policy brings the container back: the pod keeps its name and uid, its
    restartCount grows. When PID 1 ignores the SIGKILL (the kernel's rule for a PID namespace's init), the action
    fails saying so instead of reporting a kill that never happened."""
    cfg, sec = configuration(kill={"mode": "exec-kill", "ready_timeout": 20}), secrets(fake)
    leader = fake.leader_pod()
    uid = fake.pod(leader)["metadata"]["uid"]
    record = actions.kill_master(configuration=cfg, secrets=sec)
    assert fake.execs[-1]["argv"] == ["kill", "-s", "KILL", "1"] and fake.execs[-1]["pod"] == leader
    assert record["restart_count_before"] == 0 and record["container"] == "master"
    rollbacks.restart_master(configuration=cfg, secrets=sec)
    pod = fake.pod(leader)
    assert pod["metadata"]["uid"] == uid and pod["status"]["containerStatuses"][0]["restartCount"] == 1
    assert Ledger(home).get(record["id"])["undo_result"]["restarted_in_place"] == leader

    new_leader = wait_until(lambda: fake.leader_pod() != leader and fake.leader_pod(), 10)
    with fake.lock:
        fake.pods[(NS, new_leader)]["_fake"]["pid1_ignores_kill"] = True
    with pytest.raises(ActivityFailed, match="PID 1 of a container ignores SIGKILL"):
        actions.kill_master(configuration=configuration(kill={"mode": "exec-kill", "ready_timeout": 1}), secrets=sec)
    assert not Ledger(home).open_faults()


def test_delete_pod_refuses_a_pod_no_controller_would_replace(fake, home):
    """Fake API server (none can run here): a bare pod (no ownerReferences) deleted would never come back."""
    sec = secrets(fake)
    with fake.lock:
        fake.add_pod("scheduler-master-bare", {"app": "scheduler-master"}, "master", None)
    before = objects(fake)
    with pytest.raises(ActivityFailed, match="no controller owns it"):
        actions.kill_master(target="scheduler-master-bare", configuration=configuration(), secrets=sec)
    assert objects(fake) == before and not Ledger(home).open_faults()


# ---------------------------------------------------------------------------------------------------- Chaos Mesh
def test_partition_workers_creates_one_network_chaos_with_duration_and_undo_deletes_exactly_it(fake, home):
    """Fake API server (none can run here). With Chaos Mesh installed, partition_workers creates one NetworkChaos:
    named from the fault id, labelled as ours, ``spec.duration`` set (Chaos Mesh ends it even if we die), the
    chosen workers selected by pod name and the masters by their label selector (a replacement master is cut
    too). heal_partition deletes that object by name; the operator's own NetworkChaos stays."""
    sentinel_chaos(fake)
    cfg, sec = configuration(), secrets(fake)
    record = actions.partition_workers(workers="scheduler-worker-0,scheduler-worker-1", peers="masters",
                                       duration=45, configuration=cfg, secrets=sec)
    name = f"chaosscheduler-{record['id']}"
    assert record["method"] == "chaos-mesh" and record["kind"] == "kubernetes-network"
    assert sorted(fake.chaos) == [(NS, name), (NS, "operator-latency")]
    body = fake.chaos[(NS, name)]
    assert body["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "chaosscheduler",
                                          "chaosscheduler/fault": record["id"],
                                          "chaosscheduler/action": "partition-workers"}
    spec = body["spec"]
    assert spec["action"] == "partition" and spec["duration"] == "45s" and spec["direction"] == "both"
    assert spec["mode"] == "all" and spec["selector"] == {"pods": {NS: ["scheduler-worker-0", "scheduler-worker-1"]}}
    assert spec["target"] == {"mode": "all", "selector": {"namespaces": [NS],
                                                          "labelSelectors": {"app": "scheduler-master"}}}

    result = rollbacks.heal_partition(configuration=cfg, secrets=sec)
    assert result["undone"] == [record["id"]]
    assert sorted(fake.chaos) == [(NS, "operator-latency")]
    deletes = [r["path"] for r in fake.requests if r["method"] == "DELETE"]
    assert deletes == [f"/apis/chaos-mesh.org/v1alpha1/namespaces/{NS}/networkchaos/{name}"]
    rollbacks.heal_partition(fault_id=record["id"], configuration=cfg, secrets=sec)  # idempotent


def test_loss_latency_and_isolation_as_network_chaos(fake, home):
    """Fake API server (none can run here): random loss and latency become Chaos Mesh's loss and delay actions
    (with duration); an isolation cuts the worker from every pod of the scheduler's namespace."""
    cfg, sec = configuration(), secrets(fake)
    loss = actions.partition_workers(workers="scheduler-worker-0", mode="loss", loss=0.3, direction="to",
                                     duration=30, configuration=cfg, secrets=sec)
    spec = fake.chaos[(NS, f"chaosscheduler-{loss['id']}")]["spec"]
    assert spec["action"] == "loss" and spec["loss"] == {"loss": "30", "correlation": "0"}
    assert spec["direction"] == "to" and spec["duration"] == "30s"
    latency = actions.partition_workers(workers="scheduler-worker-1", mode="latency", latency_ms=250, duration=20,
                                        configuration=cfg, secrets=sec)
    spec = fake.chaos[(NS, f"chaosscheduler-{latency['id']}")]["spec"]
    assert spec["action"] == "delay" and spec["delay"]["latency"] == "250ms" and spec["duration"] == "20s"
    isolated = actions.isolate_worker(worker="scheduler-worker-2", duration=15, configuration=cfg, secrets=sec)
    spec = fake.chaos[(NS, f"chaosscheduler-{isolated['id']}")]["spec"]
    assert spec["action"] == "partition" and spec["target"]["selector"] == {"namespaces": [NS]}
    assert spec["selector"] == {"pods": {NS: ["scheduler-worker-2"]}}
    with pytest.raises(ActivityFailed, match="worker 'scheduler-worker-0' cannot be isolated now"):
        actions.isolate_worker(worker="scheduler-worker-0", configuration=cfg, secrets=sec)  # not stacked
    assert len(rollbacks.undo_all_faults(configuration=cfg, secrets=sec)["undone"]) == 3
    assert fake.chaos == {}


def test_the_reaper_deletes_the_network_chaos_at_its_deadline(home, run_id, monkeypatch, tmp_path):
    """Fake API server (none can run here). The self-expiry reaper, a process of its own rebuilt from the ledger's
    reference (which holds no token), authenticates through the kubeconfig of its environment and deletes the
    NetworkChaos at the deadline, as Chaos Mesh's spec.duration would stop it."""
    fake = make_fake()
    try:
        use_kubeconfig(monkeypatch, tmp_path, fake)
        record = actions.partition_workers(workers="1", duration=1.5, configuration=configuration(), secrets=None)
        assert (NS, f"chaosscheduler-{record['id']}") in fake.chaos
        wait_until(lambda: not fake.chaos, 20, message="the reaper deleted the NetworkChaos")
        wait_until(lambda: Ledger(home).get(record["id"])["state"] == "expired", 10)
        assert TOKEN not in open(Ledger(home).path).read()
    finally:
        fake.stop()


# ---------------------------------------------------------------------------------------------------- fallbacks
def test_network_policy_fallback_when_chaos_mesh_is_absent(home, run_id, no_kubeconfig):
    """Fake API server (none can run here), without the chaos-mesh.org API group. partition_workers falls back on a
    NetworkPolicy on the labelled targets that allows everything but the labelled peers (their IPs excepted from
    ipBlock too); isolate_worker on a deny-all policy. Undo deletes the policies and every label it added."""
    fake = make_fake(chaos_mesh=False)
    try:
        cfg, sec = configuration(), secrets(fake)
        labels_before = objects(fake)[2]
        record = actions.partition_workers(workers="scheduler-worker-1", peers="masters", direction="both",
                                           duration=60, configuration=cfg, secrets=sec)
        assert record["method"] == "networkpolicy"
        name, fid = f"chaosscheduler-{record['id']}", record["id"]
        policy = fake.policies[(NS, name)]
        assert policy["metadata"]["labels"]["chaosscheduler/fault"] == fid
        spec = policy["spec"]
        assert spec["podSelector"] == {"matchLabels": {f"target.chaosscheduler/{fid}": "true"}}
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        allowed = spec["ingress"][0]["from"]
        assert allowed[0]["podSelector"]["matchExpressions"] == [{"key": f"peer.chaosscheduler/{fid}",
                                                                  "operator": "DoesNotExist"}]
        masters = fake.pod_names("scheduler-master")
        assert sorted(allowed[1]["ipBlock"]["except"]) == sorted(f"{fake.pod(m)['status']['podIP']}/32"
                                                                 for m in masters)
        assert spec["egress"][0]["to"] == allowed
        assert fake.pod("scheduler-worker-1")["metadata"]["labels"][f"target.chaosscheduler/{fid}"] == "true"
        assert all(fake.pod(m)["metadata"]["labels"][f"peer.chaosscheduler/{fid}"] == "true" for m in masters)

        isolated = actions.isolate_worker(worker="scheduler-worker-3", duration=60, configuration=cfg, secrets=sec)
        deny = fake.policies[(NS, f"chaosscheduler-{isolated['id']}")]["spec"]
        assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny and "egress" not in deny

        rollbacks.undo_all_faults(configuration=cfg, secrets=sec)
        assert fake.policies == {} and objects(fake)[2] == labels_before
    finally:
        fake.stop()


def test_network_policy_mode_refuses_what_it_cannot_do_and_creates_nothing(home, run_id, no_kubeconfig):
    """Fake API server (none can run here). Policies only add allowances: an operator's policy that already selects
    the target would keep the traffic flowing, so the fault is refused; latency and random loss need Chaos Mesh
    (or exec-nft for loss). Each refusal names the reason, and nothing is created or labelled."""
    fake = make_fake(chaos_mesh=False)
    try:
        cfg, sec = configuration(), secrets(fake)
        with fake.lock:
            fake.policies[(NS, "allow-workers")] = {
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "allow-workers", "namespace": NS, "labels": {"team": "platform"}},
                "spec": {"podSelector": {"matchLabels": {"app": "scheduler-worker"}}, "policyTypes": ["Ingress"],
                         "ingress": [{}]}}
        before = objects(fake)
        with pytest.raises(ActivityFailed, match="NetworkPolicy schedule-system/allow-workers also selects"):
            actions.partition_workers(workers="scheduler-worker-0", configuration=cfg, secrets=sec)
        with pytest.raises(ActivityFailed, match="latency on Kubernetes needs Chaos Mesh"):
            actions.partition_workers(workers="1", mode="latency", configuration=cfg, secrets=sec)
        with pytest.raises(ActivityFailed, match="cannot drop a share of the packets"):
            actions.partition_workers(workers="1", mode="loss", loss=0.3, configuration=cfg, secrets=sec)
        with pytest.raises(ActivityFailed, match="Chaos Mesh is not installed"):
            actions.isolate_worker(configuration=configuration(network={"mode": "chaos-mesh"}), secrets=sec)
        assert objects(fake) == before
        assert not Ledger(home).open_faults()
    finally:
        fake.stop()


def test_exec_nft_mode_applies_our_own_table_in_the_pods_and_undo_deletes_it(fake, home):
    """Fake API server (none can run here). In exec-nft mode the partition is the hosts' nft table (kernel
    timeouts included) sent on stdin to ``nft -f -`` in each target container over the exec websocket; undo deletes
    exactly that table (the pod's other tables stay)."""
    cfg, sec = configuration(network={"mode": "exec-nft"}), secrets(fake)
    record = actions.partition_workers(workers="scheduler-worker-0,scheduler-worker-2", peers="masters", mode="loss",
                                       loss=0.25, duration=30, configuration=cfg, secrets=sec)
    table = f"chaosscheduler_{record['id']}"
    assert record["method"] == "exec-nft" and record["applied_on"] == ["scheduler-worker-0", "scheduler-worker-2"]
    rules = fake.nft[(NS, "scheduler-worker-0")][table]
    for master in fake.pod_names("scheduler-master"):
        assert f"{fake.pod(master)['status']['podIP']} timeout 30000ms" in rules
    assert "numgen random mod 10000 < 2500 drop" in rules
    assert fake.execs[0]["argv"] == ["nft", "-f", "-"] and fake.execs[0]["container"] == "worker"
    with fake.lock:
        fake.nft[(NS, "scheduler-worker-0")]["operator_filter"] = "table inet operator_filter {}"
    rollbacks.heal_partition(configuration=cfg, secrets=sec)
    assert fake.nft[(NS, "scheduler-worker-0")] == {"operator_filter": "table inet operator_filter {}"}
    assert fake.nft[(NS, "scheduler-worker-2")] == {}


def overlapping(execs):
    """Whether every exec's [started, ended] interval overlaps every other's: they all ran at once."""
    return all(a["started"] < b["ended"] and b["started"] < a["ended"] for a in execs for b in execs if a is not b)


def test_exec_nft_mode_cuts_every_pod_at_once_and_heals_them_at_once(fake, home):
    """Fake API server (none can run here); each exec takes 0.3 s in the container. The table goes into every target
    pod at once (the execs overlap; one after another they could not), the record's started_at is the last pod's
    applied_at, and undo removes it from every pod at once too."""
    cfg, sec = configuration(network={"mode": "exec-nft"}), secrets(fake)
    cfg["chaosscheduler_max_worker_share"] = 1
    fake.exec_seconds = 0.3
    record = actions.partition_workers(workers="all", peers="masters", duration=30, configuration=cfg, secrets=sec)
    workers = fake.pod_names("scheduler-worker")
    applies = [e for e in fake.execs if e["argv"] == ["nft", "-f", "-"]]
    assert sorted(e["pod"] for e in applies) == sorted(workers) == sorted(record["applied_on"])
    assert overlapping(applies), [(e["pod"], e["started"], e["ended"]) for e in applies]
    assert record["started_at"] == max(record["applied_at"].values()) == record["last_applied_at"]
    assert record["first_applied_at"] == min(record["applied_at"].values())
    assert record["fanout"]["concurrency"] == 16
    fake.execs.clear()
    rollbacks.heal_partition(configuration=cfg, secrets=sec)
    deletes = [e for e in fake.execs if e["argv"][:3] == ["nft", "delete", "table"]]
    assert sorted(e["pod"] for e in deletes) == sorted(workers) and overlapping(deletes)
    assert all(fake.nft[(NS, w)] == {} for w in workers)
    assert set(Ledger(home).get(record["id"])["removed_at"]) == set(workers)


def test_exec_nft_mode_with_a_width_of_one_cuts_pod_after_pod(fake, home):
    """Fake API server. ``chaosscheduler_concurrency: 1`` is the old serial behaviour: no two execs overlap."""
    cfg, sec = configuration(network={"mode": "exec-nft"}), secrets(fake)
    cfg.update(chaosscheduler_max_worker_share=1, chaosscheduler_concurrency=1)
    fake.exec_seconds = 0.05
    record = actions.partition_workers(workers="all", peers="masters", duration=30, configuration=cfg, secrets=sec)
    applies = sorted((e for e in fake.execs if e["argv"] == ["nft", "-f", "-"]), key=lambda e: e["started"])
    assert len(applies) == len(record["targets"]) > 1
    assert all(a["ended"] <= b["started"] for a, b in zip(applies, applies[1:]))
    rollbacks.heal_partition(configuration=cfg, secrets=sec)


# ---------------------------------------------------------------------------------------------------- heal
def test_heal_from_the_cluster_removes_only_our_labelled_objects(home, run_id, monkeypatch, tmp_path):
    """Fake API server (none can run here). With the ledger gone, ``chaosscheduler heal --from-hosts
    --kubernetes-namespace NS`` finds our NetworkChaos, NetworkPolicy and pod labels by their labels and removes
    them; the operator's NetworkChaos, its NetworkPolicy and an object merely named like ours stay."""
    fake = make_fake()
    try:
        use_kubeconfig(monkeypatch, tmp_path, fake)
        sentinel_chaos(fake)
        with fake.lock:
            fake.policies[(NS, "operator-deny")] = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                                    "metadata": {"name": "operator-deny", "namespace": NS,
                                                                 "labels": {"app.kubernetes.io/managed-by": "helm"}},
                                                    "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
            fake.chaos[(NS, "chaosscheduler-fimpostor")] = {
                "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaos",
                "metadata": {"name": "chaosscheduler-fimpostor", "namespace": NS, "labels": {"team": "sre"}},
                "spec": {"action": "partition"}}
        chaos = actions.partition_workers(workers="scheduler-worker-0", duration=300, configuration=configuration())
        policy = actions.partition_workers(workers="scheduler-worker-1", duration=300,
                                           configuration=configuration(network={"mode": "networkpolicy"}))
        assert (NS, f"chaosscheduler-{chaos['id']}") in fake.chaos
        assert (NS, f"chaosscheduler-{policy['id']}") in fake.policies
        os.remove(Ledger(home).path)  # the ledger is lost: only the cluster knows

        found = heal(home, from_hosts=True, dry_run=True, kubernetes_namespaces=[NS])
        assert f"NetworkChaos {NS}/chaosscheduler-{chaos['id']}" in found["tables"]
        assert f"NetworkPolicy {NS}/chaosscheduler-{policy['id']}" in found["tables"]
        assert (NS, f"chaosscheduler-{chaos['id']}") in fake.chaos  # dry run: nothing removed

        report = heal(home, from_hosts=True, kubernetes_namespaces=[NS])
        assert not [e for e in report["errors"] if "Kubernetes" in e or NS in e], report["errors"]
        assert sorted(fake.chaos) == [(NS, "chaosscheduler-fimpostor"), (NS, "operator-latency")]
        assert sorted(fake.policies) == [(NS, "operator-deny")]
        assert not any(k.startswith(("target.chaosscheduler/", "peer.chaosscheduler/"))
                       for labels in objects(fake)[2].values() for k in labels)
    finally:
        fake.stop()


# ---------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("cfg_changes,call,named", [
    ({"namespace": ""}, "kill", "chaosscheduler_kubernetes.namespace"),
    ({"namespace": "Schedule_System"}, "kill", "chaosscheduler_kubernetes.namespace"),
    ({"masters": {"selector": "app=no-such-master"}}, "kill", "chaosscheduler_kubernetes.masters.selector"),
    ({"workers": {"selector": ""}}, "partition", "chaosscheduler_kubernetes.workers.selector"),
    ({"workers": {"selector": "app in (a,"}}, "partition", "chaosscheduler_kubernetes.workers.selector"),
    ({"leader": {"source": "lease", "name": "no-such-lease"}}, "kill", "target 'leader'"),
    ({"leader": {"source": "raft"}}, "kill", "chaosscheduler_kubernetes.leader.source"),
    ({"kill": {"mode": "evict"}}, "kill", "chaosscheduler_kubernetes.kill.mode"),
    ({"network": {"mode": "iptables"}}, "partition", "chaosscheduler_kubernetes.network.mode"),
    ({}, "unknown-worker", "argument 'worker'"),
    ({}, "unknown-peer", "argument 'peers'"),
    ({}, "stop-by-delete", "SIGSTOP needs kill.mode 'exec-kill'"),
])
def test_bad_input_fails_naming_the_argument_and_creates_nothing(fake, home, cfg_changes, call, named):
    """Fake API server (none can run here). Each mistake is an ActivityFailed whose message names the key or
    argument at fault; no object is created, deleted or labelled, and the ledger holds no open fault."""
    cfg, sec = configuration(**cfg_changes), secrets(fake)
    before = objects(fake)
    with pytest.raises(ActivityFailed) as caught:
        if call == "kill":
            actions.kill_master(configuration=cfg, secrets=sec)
        elif call == "partition":
            actions.partition_workers(workers="1", configuration=cfg, secrets=sec)
        elif call == "unknown-worker":
            actions.isolate_worker(worker="scheduler-worker-9", configuration=cfg, secrets=sec)
        elif call == "unknown-peer":
            actions.partition_workers(workers="1", peers="master-that-is-not", configuration=cfg, secrets=sec)
        else:
            actions.kill_master(signal="SIGSTOP", configuration=cfg, secrets=sec)
    assert named in str(caught.value)
    assert objects(fake) == before
    assert not Ledger(home).open_faults()


def test_credentials_come_from_the_secrets_and_never_reach_the_ledger(fake, home):
    """Fake API server (none can run here). The KUBERNETES_* secrets configure the client exactly as
    chaostoolkit-kubernetes does (a wrong token is refused by the server: 401, named in the failure); the fault's
    platform reference keeps the non-secret keys only."""
    with pytest.raises(ActivityFailed, match="401"):
        actions.kill_master(configuration=configuration(), secrets=dict(secrets(fake), KUBERNETES_API_KEY="wrong"))
    record = actions.kill_master(dry_run=True, configuration=configuration(), secrets=secrets(fake))
    assert record["state"] == "dry-run" and fake.deletions == []
    assert record["platform"]["client"] == {"KUBERNETES_HOST": fake.url}
    assert TOKEN not in json.dumps(record)
    real = actions.partition_workers(workers="1", duration=30, configuration=configuration(), secrets=secrets(fake))
    assert TOKEN not in open(Ledger(home).path).read()
    rollbacks.heal_partition(fault_id=real["id"], configuration=configuration(), secrets=secrets(fake))


def test_workers_from_pod_readiness_without_prometheus(fake, home):
    """Fake API server (none can run here). Without prometheus_base_url a worker is alive while its pod is Ready
    (Kubernetes' view, not the scheduler's: docs/kubernetes.md); a StatefulSet worker deleted comes back under its
    name, not Ready at first."""
    from chaosscheduler.platforms import for_settings

    platform = for_settings(config.load(configuration()), secrets(fake))
    assert [w["alive"] for w in platform.workers()] == [True] * 4
    with fake.lock:
        fake.delete_pod(NS, "scheduler-worker-3", 0)
    platform.forget()
    states = {w["name"]: w["alive"] for w in platform.workers()}
    assert states["scheduler-worker-3"] is False
    wait_until(lambda: platform.forget() or all(w["alive"] for w in platform.workers()), 10)
    snapshot = copy.deepcopy(fake.pod("scheduler-worker-3"))
    assert snapshot["status"]["containerStatuses"][0]["restartCount"] == 0


class _Prometheus:
    """A stand-in for the Prometheus client (the metrics forms are tested against a real Prometheus in the hosts
    platform's tests): it answers the worker queries with series labelled by ``instance``, as a pod scrape would."""

    def __init__(self, answers):
        self.answers = answers

    def query(self, expr, at=None):
        return [(labels, time.time(), value) for labels, value in self.answers.get(expr, [])]

    def scrape_interval(self):
        return 1.0


def test_workers_from_the_schedulers_metrics_are_matched_to_pods_by_ip(fake, home):
    """Fake API server (none can run here). With prometheus_base_url the workers are the scheduler's own view:
    series labelled ``instance="<pod IP>:<port>"`` are matched to the pods the selector finds right now."""
    from chaosscheduler.metrics.forms import DEFAULT_QUERIES
    from chaosscheduler.platforms import for_settings

    cfg = dict(configuration(workers={"selector": "app=scheduler-worker", "slots": 8}),
               prometheus_base_url="http://127.0.0.1:9")
    platform = for_settings(config.load(cfg), secrets(fake))
    ip = {name: fake.pod(name)["status"]["podIP"] for name in fake.pod_names("scheduler-worker")}
    platform._prometheus = _Prometheus({
        DEFAULT_QUERIES["worker_up"]: [({"instance": f"{ip[w]}:1235"}, 1.0)
                                       for w in ("scheduler-worker-0", "scheduler-worker-1", "scheduler-worker-3")],
        DEFAULT_QUERIES["worker_running"]: [({"instance": f"{ip['scheduler-worker-1']}:1235"}, 3.0)]})
    workers = {w["name"]: w for w in platform.workers()}
    assert [n for n, w in sorted(workers.items()) if w["alive"]] == ["scheduler-worker-0", "scheduler-worker-1",
                                                                     "scheduler-worker-3"]
    assert workers["scheduler-worker-1"]["running_count"] == 3 and workers["scheduler-worker-1"]["slots"] == 8
    assert platform.metrics is not None  # the probes take their metrics forms
