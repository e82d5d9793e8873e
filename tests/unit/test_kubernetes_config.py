"""The kubernetes platform's pure parts: the description (validated by key, normalised), label selectors (parsed,
negated, matched), the NetworkChaos and NetworkPolicy bodies, Lease holder mapping, exec exit codes, and the
reference (no secret values)."""

import json

import pytest

from chaosscheduler import config
from chaosscheduler.errors import ConfigurationError, FaultError
from chaosscheduler.faults.kubernetes import network_chaos_body, network_policy_body, object_name, selects
from chaosscheduler.platforms import from_reference
from chaosscheduler.platforms.kubernetes import KubernetesPlatform
from chaosscheduler.platforms.kubernetes_api import _exit_code, client_reference
from chaosscheduler.platforms.kubernetes_config import negated_requirements, parse_kubernetes, parse_selector
from chaosscheduler.platforms.leader.lease import holder_pod, parse_time
from tests.fakes.k8s_api import matches


def description(**changes):
    data = {"namespace": "schedule-system", "masters": "app=scheduler-master", "workers": {"app": "scheduler-worker"},
            "leader": {"source": "lease", "name": "scheduler-master"}}
    data.update(changes)
    return data


def test_a_description_is_normalised_with_every_default():
    d = parse_kubernetes(description())
    assert d["masters"] == {"selector": {"matchLabels": {"app": "scheduler-master"}, "matchExpressions": [],
                                         "text": "app=scheduler-master"},
                            "namespace": "schedule-system", "container": None}
    assert d["workers"]["selector"]["text"] == "app=scheduler-worker" and d["workers"]["slots"] is None
    assert d["registry"] is None
    assert d["leader"] == {"source": "lease", "name": "scheduler-master", "namespace": "schedule-system",
                           "holder_regex": None}
    assert d["kill"] == {"mode": "delete-pod", "command": ["kill", "-s", "{signal}", "1"], "ready_timeout": 120.0,
                         "container": None}
    assert d["network"] == {"mode": "auto", "container": None, "device": None}
    assert d["worker_status"] == "auto" and d["same_clock"] is False and d["slots"] == 4
    json.dumps(d)


def test_settings_carry_the_description_and_other_platforms_ignore_an_empty_one():
    settings = config.load({"chaosscheduler_platform": "kubernetes", "chaosscheduler_kubernetes": description()})
    assert settings.kubernetes["namespace"] == "schedule-system"
    assert config.load({"chaosscheduler_kubernetes": None}).kubernetes is None
    with pytest.raises(ConfigurationError, match="chaosscheduler_kubernetes.namespace"):
        config.load({"chaosscheduler_kubernetes": description(namespace="")})  # checked even when unused
    with pytest.raises(ConfigurationError, match="needs chaosscheduler_kubernetes"):
        config.load({"chaosscheduler_platform": "kubernetes"})


@pytest.mark.parametrize("changes,named", [
    ({"namespace": None}, "namespace"),
    ({"namespace": "-bad"}, "namespace"),
    ({"masters": None}, "masters"),
    ({"masters": {"selector": "app=x", "replicas": 3}}, "masters: unknown key(s) replicas"),
    ({"masters": "app=a,,app=b"}, "masters.selector"),
    ({"masters": {"app": "bad value"}}, "masters.selector"),
    ({"masters": "!app=x"}, "masters.selector"),
    ({"workers": {"selector": "app=w", "slots": 0}}, "workers.slots"),
    ({"leader": None}, "leader"),
    ({"leader": {"source": "lease"}}, "leader.name"),
    ({"leader": {"source": "lease", "name": "l", "holder_regex": "(a)(b)"}}, "leader.holder_regex"),
    ({"leader": {"source": "promql", "query": ""}}, "leader"),
    ({"kill": {"command": "kill -9 1"}}, "kill.command"),
    ({"kill": {"ready_timeout": 0}}, "kill.ready_timeout"),
    ({"network": {"device": "eth0; rm"}}, "network.device"),
    ({"metrics": {"queries": {"nope": "up"}}}, "metrics.queries"),
    ({"metrics": {"token_secret": "a token value with spaces"}}, "metrics.token_secret"),
    ({"same_clock": "yes"}, "same_clock"),
    ({"colour": "blue"}, "unknown key(s) colour"),
])
def test_mistakes_are_refused_naming_the_key(changes, named):
    data = description()
    data.update(changes)
    data = {k: v for k, v in data.items() if not (k in ("namespace", "masters", "leader") and v is None)}
    with pytest.raises(ConfigurationError, match="chaosscheduler_kubernetes") as caught:
        parse_kubernetes(data)
    assert named in str(caught.value)


@pytest.mark.parametrize("text,labels,expressions,canonical", [
    ("app=a", {"app": "a"}, [], "app=a"),
    ("app==a, tier!=db", {"app": "a"}, [{"key": "tier", "operator": "NotIn", "values": ["db"]}], "app=a,tier!=db"),
    ("env in (prod, staging),!canary", {}, [{"key": "env", "operator": "In", "values": ["prod", "staging"]},
                                          {"key": "canary", "operator": "DoesNotExist"}],
     "env in (prod,staging),!canary"),
    ("app.kubernetes.io/component notin (web),release", {},
     [{"key": "app.kubernetes.io/component", "operator": "NotIn", "values": ["web"]},
      {"key": "release", "operator": "Exists"}], "app.kubernetes.io/component!=web,release"),
])
def test_selectors_are_read_as_kubectl_reads_them(text, labels, expressions, canonical):
    parsed = parse_selector(text)
    assert parsed["matchLabels"] == labels and parsed["matchExpressions"] == expressions
    assert parsed["text"] == canonical
    assert parse_selector(parsed["text"]) == parsed  # the canonical form reads back the same


@pytest.mark.parametrize("labels", [
    {}, {"app": "a"}, {"app": "a", "tier": "db"}, {"app": "b", "env": "prod"}, {"env": "staging", "canary": "1"},
    {"app": "a", "env": "prod", "release": "x"}, {"app.kubernetes.io/component": "web", "release": "y"},
])
@pytest.mark.parametrize("text", ["app=a", "app=a,tier!=db", "env in (prod,staging),!canary",
                                  "app.kubernetes.io/component notin (web),release"])
def test_our_selectors_the_fakes_matcher_and_negation_agree(text, labels):
    """Three independent readings of a selector: the fake API server's matcher, ``selects`` on the parsed form
    (what a NetworkPolicy's podSelector does), and its negation (a pod fails the selector iff it matches one
    negated requirement: how a policy allows every pod but the peers)."""
    parsed = parse_selector(text)
    expected = matches(text, labels)
    assert selects(parsed, labels) is expected
    assert any(selects({"matchExpressions": [n]}, labels) for n in negated_requirements(parsed)) is not expected


def test_a_network_chaos_always_expires_and_selects_exactly_the_targets():
    record = {"id": "fabc123", "kind": "kubernetes-network", "action": "partition_workers", "targets": ["w-1"],
              "peers": ["m-1"], "mode": "drop", "loss": 1.0, "direction": "from", "duration": 12.2,
              "run_id": "run-1", "deadline": 0}
    body = network_chaos_body(record, "ns", {"ns": ["w-1"]}, {"pods": {"ns": ["m-1"]}}, device="eth1")
    assert body["metadata"]["name"] == object_name("fabc123") == "chaosscheduler-fabc123"
    assert body["spec"] == {"mode": "all", "selector": {"pods": {"ns": ["w-1"]}}, "direction": "from",
                            "target": {"mode": "all", "selector": {"pods": {"ns": ["m-1"]}}}, "duration": "13s",
                            "action": "partition", "device": "eth1"}
    with pytest.raises(FaultError, match="spec.duration"):
        network_chaos_body(dict(record, duration=None), "ns", {"ns": ["w-1"]}, {})
    with pytest.raises(ValueError):
        object_name("F-1; rm")


def test_a_network_policy_allows_all_but_the_peers_or_nothing():
    record = {"id": "fabc123", "kind": "kubernetes-network", "targets": ["w-1"], "peers": ["m-1", "m-2"],
              "direction": "to"}
    spec = network_policy_body(record, "ns", ["10.0.0.2", "10.0.0.1", "fd00::1"])["spec"]
    assert spec["policyTypes"] == ["Egress"] and "ingress" not in spec
    to = spec["egress"][0]["to"]
    assert to[1] == {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.1/32", "10.0.0.2/32"]}}
    assert to[2] == {"ipBlock": {"cidr": "::/0", "except": ["fd00::1/128"]}}
    isolation = network_policy_body(dict(record, peers=["*"], direction="both"), "ns", [])["spec"]
    assert isolation == {"podSelector": {"matchLabels": {"target.chaosscheduler/fabc123": "true"}},
                         "policyTypes": ["Ingress", "Egress"]}


def test_lease_holders_map_to_master_pods():
    masters = [{"name": "master-7c9-abcde", "address": "10.1.0.5"}, {"name": "master-7c9-fghij", "address": "10.1.0.6"}]
    assert holder_pod("master-7c9-abcde", masters) == "master-7c9-abcde"
    assert holder_pod("master-7c9-fghij_6f1c1c8e-8e5b-4a54-a2b4-1f3d1d3c9b11", masters) == "master-7c9-fghij"
    assert holder_pod("10.1.0.6", masters) == "master-7c9-fghij"
    assert holder_pod("id=master-7c9-abcde;term=4", masters, r"id=([^;]+)") == "master-7c9-abcde"
    assert holder_pod("master-gone_1", masters) is None and holder_pod("", masters) is None
    assert parse_time("2024-05-01T10:00:00.250000Z") == pytest.approx(1714557600.25)
    assert parse_time("not a time") is None


def test_exec_status_documents_give_the_exit_code():
    assert _exit_code('{"metadata":{},"status":"Success"}') == 0
    assert _exit_code('{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":'
                      '[{"reason":"ExitCode","message":"137"}]}}') == 137
    assert _exit_code('{"status":"Failure","message":"container not found"}') == 126


def test_the_reference_holds_no_secret_value():
    secrets = {"KUBERNETES_HOST": "https://10.0.0.1:6443", "KUBERNETES_API_KEY": "s3cr3t", "KUBERNETES_PASSWORD": "pw",
               "KUBERNETES_CONTEXT": "prod", "prom_token": "t0k3n"}
    assert client_reference(secrets) == {"KUBERNETES_HOST": "https://10.0.0.1:6443", "KUBERNETES_CONTEXT": "prod"}
    platform = KubernetesPlatform(parse_kubernetes(description()), "http://prometheus:9090", secrets)
    reference = platform.reference()
    text = json.dumps(reference)
    assert "s3cr3t" not in text and "pw" not in text and "t0k3n" not in text
    rebuilt = from_reference(json.loads(text))
    assert isinstance(rebuilt, KubernetesPlatform) and rebuilt.reference() == reference
    assert platform.fault_kinds == {"process": "kubernetes-pod", "network": "kubernetes-network",
                                    "latency": "kubernetes-network"}


@pytest.mark.parametrize("experiment", ["master-crash", "network-partition", "worker-disconnect"])
def test_the_kubernetes_var_file_configures_every_experiment(experiment):
    """The experiments declare the key (Chaos Toolkit ignores undeclared var-file keys) and the example validates."""
    declared = json.load(open(f"experiments/{experiment}.json"))["configuration"]
    assert "chaosscheduler_kubernetes" in declared and declared["chaosscheduler_kubernetes"] is None
    values = json.load(open("experiments/vars/kubernetes.json"))["configuration"]
    assert set(values) <= set(declared)
    merged = {k: v for k, v in declared.items() if not (isinstance(v, dict) and "type" in v)}
    merged.update(values)
    settings = config.load(merged)
    assert settings.platform == "kubernetes" and settings.kubernetes["namespace"] == "schedule-system"
    assert settings.kubernetes["masters"]["selector"]["text"] == "app=scheduler-master"
