"""The ZooKeeper leader source against a real ZooKeeper (Debian ``zookeeper``, Java started by hand with a conf dir
of our own), DolphinScheduler-style: three "masters" stand for election through kazoo's Election recipe (ephemeral
sequential children of a lock path; the lowest one leads) and write the moment they win to a ground-truth log.
``kill_master`` kills the leading one over SSH (found by a pattern over its command line), ``leader_election_time``
times the takeover through the ZooKeeper source, and the result is checked against the candidates' log.
"""

import json
import os
import shutil
import sys
import uuid
from typing import Any, Dict, List

import pytest

from chaosscheduler import actions, probes, rollbacks
from chaosscheduler.ledger import Ledger
from chaosscheduler.testbed import remote
from chaosscheduler.testbed.spec import Node
from chaosscheduler.timing import wait_until
from tests.integration.test_platforms import FIGURES, MARGIN
from tests.integration.test_platforms_etcd import namespace_lab

ZK_JAR = "/usr/share/java/zookeeper.jar"
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
              pytest.mark.skipif(not os.path.exists(ZK_JAR), reason="ZooKeeper is not installed (apt zookeeper)"),
              pytest.mark.skipif(shutil.which("java") is None, reason="java is not installed"),
              pytest.mark.skipif(not os.path.exists("/usr/sbin/sshd"), reason="sshd is not installed")]

SESSION_TIMEOUT = 2.0
ELECTION_PATH = "/dolphinscheduler/lock/masters"
CANDIDATE = """
import json, sys, time
from kazoo.client import KazooClient
marker, name, hosts, path, log = sys.argv[1:6]
zk = KazooClient(hosts=hosts, timeout=float(sys.argv[6]))
zk.start(timeout=15)
def lead():
    with open(log, "a") as handle:
        handle.write(json.dumps({"ts": time.time(), "node": name, "event": "leader_acquired"}) + "\\n")
    while True:
        time.sleep(1)
zk.Election(path, name).run(lead)
"""


def zookeeper_argv(conf_dir: str) -> List[str]:
    return ["java", "-Xmx128m", "-cp", f"{conf_dir}:{ZK_JAR}", "-Dzookeeper.root.logger=INFO,CONSOLE",
            "org.apache.zookeeper.server.quorum.QuorumPeerMain", os.path.join(conf_dir, "zoo.cfg")]


@pytest.fixture
def zk_lab():
    name = ("z" + uuid.uuid4().hex)[:9]
    zk = Node(name="zk-1", role="zookeeper", netns=f"cs-{name}-zk-1", address="198.18.1.1", port=2181, index=1)
    masters = [Node(name=f"master-{i}", role="master", netns=f"cs-{name}-master-{i}", address=f"198.18.2.{i}",
                    port=0, index=i) for i in range(1, 4)]
    with namespace_lab(name, [zk] + masters) as lab:
        conf = os.path.join(lab["state_dir"], "zk")
        os.makedirs(os.path.join(conf, "data"))
        with open(os.path.join(conf, "zoo.cfg"), "w") as handle:
            handle.write(f"tickTime=500\ndataDir={conf}/data\nclientPort=2181\nclientPortAddress={zk.address}\n"
                         f"admin.enableServer=false\nmaxSessionTimeout=20000\n")
        lab["spawn"](zk, zookeeper_argv(conf))
        remote._wait_port(lab["switch"], zk.address, 2181, timeout=30)
        truth = os.path.join(lab["state_dir"], "elections.jsonl")
        commands = {}
        for master in masters:
            marker = f"zkcand-{name}-{master.name}"
            commands[master.name] = [sys.executable, "-c", CANDIDATE, marker, master.name, f"{zk.address}:2181",
                                     ELECTION_PATH, truth, str(SESSION_TIMEOUT)]
            lab["spawn"](master, commands[master.name])
        hosts = {
            "connect_netns": lab["switch"],
            "same_clock": True,
            "ssh": {"user": "root", "key_file": lab["files"]["client_key"], "known_hosts": lab["files"]["known_hosts"]},
            "masters": [{"name": m.name, "host": m.address,
                         "process": {"pattern": f"zkcand-{name}-{{name}} ", "restart_command": commands[m.name]}}
                        for m in masters],
            "registry": [{"name": "zk-1", "host": zk.address}],
            "leader": {"source": "zookeeper", "path": ELECTION_PATH},
        }
        yield {"truth": truth, "state_dir": lab["state_dir"],
               "configuration": {"chaosscheduler_platform": "hosts", "chaosscheduler_hosts": hosts,
                                 "chaosscheduler_home": lab["state_dir"]}}
        assert Ledger(lab["state_dir"]).open_faults() == []


def elections(path: str) -> List[Dict[str, Any]]:
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_kill_the_zookeeper_elected_leader_and_time_the_takeover(zk_lab):
    configuration = zk_lab["configuration"]
    wait_until(lambda: os.path.exists(zk_lab["truth"]) and elections(zk_lab["truth"]), 30, interval=0.1,
               message="a candidate elected")
    first = elections(zk_lab["truth"])[0]["node"]
    health = probes.cluster_health(configuration=configuration)
    assert health["leader"] == first and health["masters_running"] == 3
    record = actions.kill_master(target="leader", duration=60, configuration=configuration)
    assert record["targets"] == [first] and record["was_leader"]
    measured = probes.leader_election_time(timeout=30, configuration=configuration)["value"]
    t0 = record["started_at"]
    won = [e for e in elections(zk_lab["truth"]) if e["ts"] >= t0]
    stored = Ledger(zk_lab["state_dir"]).get(record["id"])["measurements"]["leader_election_time"]
    assert won and stored["new_leader"] == won[0]["node"] != first, (stored, won)
    truth = won[0]["ts"] - t0
    FIGURES.setdefault("zookeeper_election", []).append(round(measured - truth, 3))
    print(f"\nzookeeper: takeover {truth:.3f} s after the kill (session timeout {SESSION_TIMEOUT} s), "
          f"measured {measured:.3f} s")
    # the candidate logs just after ZooKeeper tells it; the source sees the lowest child one poll + request later
    assert truth - 0.05 <= measured <= truth + 0.05 + MARGIN, (measured, truth, stored)
    assert truth >= SESSION_TIMEOUT * 0.5  # ZooKeeper waited for the dead session to expire
    rollbacks.restart_master(configuration=configuration)
    wait_until(lambda: probes.cluster_health(configuration=configuration)["masters_running"] == 3, 30,
               interval=0.2, message="the killed candidate running again")
    assert probes.cluster_health(configuration=configuration)["leader"] == won[0]["node"]
