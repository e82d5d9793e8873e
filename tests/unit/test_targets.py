"""Pure target selection: which master to kill, which workers to cut, from which peers, and how many at most.

Every mode is checked with seeded random generators; every bad input must raise ConfigurationError whose message
names the argument (or the configuration key) so the user knows what to change.
"""

import random

import pytest

from chaosscheduler.errors import ConfigurationError
from chaosscheduler.targets import check_share, peer_nodes, pick_master, pick_worker, pick_workers

MASTERS = ["master-1", "master-2", "master-3"]
WORKERS = ["worker-1", "worker-2", "worker-3", "worker-4"]
ROLES = {"masters": MASTERS, "registry": ["etcd-1"], "nodes": ["etcd-1"] + MASTERS + WORKERS + ["load"]}
SHELL_NAMES = ["master-1;rm -rf /", "$(reboot)", "`id`", "master-1 && halt", "master-1|x", "../master-1",
               "-rf", "master 1", "master-1\nreboot", "master-1>x", "*", ".hidden", "x" * 64, "méster"]
SEEDS = range(40)


def rng(seed: int = 0) -> random.Random:
    return random.Random(seed)


def refused(argument: str, func, *args):
    with pytest.raises(ConfigurationError) as info:
        func(*args)
    assert argument in str(info.value), f"{argument!r} not named in: {info.value}"
    assert "\n" not in str(info.value).strip(), "the message must be one line (chaoslib keeps only the first)"
    return str(info.value)


# ---------------------------------------------------------------------------------------------------- pick_master
def test_leader_targets_the_current_leader():
    assert pick_master("leader", MASTERS, MASTERS, "master-2", rng()) == "master-2"


def test_leader_without_a_leader_is_refused():
    refused("'leader'", pick_master, "leader", MASTERS, MASTERS, None, rng())


@pytest.mark.parametrize("seed", SEEDS)
def test_follower_is_a_running_master_that_never_leads(seed):
    running = ["master-1", "master-2", "master-3"]
    chosen = pick_master("follower", MASTERS, running, "master-2", rng(seed))
    assert chosen in running and chosen != "master-2"


def test_follower_covers_every_follower_over_seeds():
    assert {pick_master("follower", MASTERS, MASTERS, "master-1", rng(s)) for s in SEEDS} == {"master-2",
                                                                                            "master-3"}


def test_follower_skips_stopped_masters():
    for seed in SEEDS:
        assert pick_master("follower", MASTERS, ["master-1", "master-3"], "master-1", rng(seed)) == "master-3"


def test_follower_when_only_the_leader_runs_is_refused():
    refused("'follower'", pick_master, "follower", MASTERS, ["master-1"], "master-1", rng())


def test_random_is_any_running_master():
    chosen = {pick_master("random", MASTERS, ["master-2", "master-3"], "master-2", rng(s)) for s in SEEDS}
    assert chosen == {"master-2", "master-3"}


def test_random_with_nothing_running_is_refused():
    refused("'random'", pick_master, "random", MASTERS, [], None, rng())


def test_a_named_running_master():
    assert pick_master("master-3", MASTERS, MASTERS, "master-1", rng()) == "master-3"
    assert pick_master(" master-3 ", MASTERS, MASTERS, "master-1", rng()) == "master-3"


def test_a_named_master_that_is_not_running_is_refused():
    message = refused("'master-3'", pick_master, "master-3", MASTERS, ["master-1"], "master-1", rng())
    assert "not running" in message


@pytest.mark.parametrize("target", ["master-9", "worker-1", "etcd-1", "Master-1"])
def test_an_unknown_master_is_refused_with_the_known_ones(target):
    message = refused("argument 'target'", pick_master, target, MASTERS, MASTERS, "master-1", rng())
    assert "unknown" in message and "master-1, master-2, master-3" in message


@pytest.mark.parametrize("target", SHELL_NAMES + ["", " ", ","])
def test_master_names_with_shell_metacharacters_are_refused(target):
    refused("argument 'target'", pick_master, target, MASTERS, MASTERS, "master-1", rng())


def test_two_masters_named_at_once_are_refused():
    refused("argument 'target'", pick_master, "master-1,master-2", MASTERS, MASTERS, "master-1", rng())


@pytest.mark.parametrize("target", [None, 1, 1.5, True, False, ["master-1"], {"name": "master-1"}])
def test_master_target_of_a_wrong_type_is_refused(target):
    refused("argument 'target'", pick_master, target, MASTERS, MASTERS, "master-1", rng())


# ---------------------------------------------------------------------------------------------------- pick_workers
def test_all_is_every_candidate():
    assert pick_workers("all", ["worker-3", "worker-1"], WORKERS, rng()) == ["worker-1", "worker-3"]


def test_all_without_candidates_is_refused():
    refused("argument 'workers'", pick_workers, "all", [], WORKERS, rng())


@pytest.mark.parametrize("count", [1, 2, 4, "1", "3", "04"])
@pytest.mark.parametrize("seed", range(5))
def test_a_count_picks_that_many_distinct_candidates(count, seed):
    chosen = pick_workers(count, WORKERS, WORKERS, rng(seed))
    assert len(chosen) == int(count) == len(set(chosen))
    assert chosen == sorted(chosen) and set(chosen) <= set(WORKERS)


def test_a_count_chooses_only_among_candidates():
    for seed in SEEDS:
        assert set(pick_workers(2, ["worker-2", "worker-4", "worker-3"], WORKERS, rng(seed))) <= {
            "worker-2", "worker-3", "worker-4"}


def test_a_count_is_random_over_seeds():
    assert len({tuple(pick_workers(2, WORKERS, WORKERS, rng(s))) for s in SEEDS}) > 1


@pytest.mark.parametrize("count", [0, "0", "00", -1])
def test_a_partition_of_zero_workers_is_refused(count):
    message = refused("argument 'workers'", pick_workers, count, WORKERS, WORKERS, rng())
    assert "zero workers" in message


@pytest.mark.parametrize("count", [5, "5", 1000])
def test_more_workers_than_available_is_refused(count):
    message = refused("argument 'workers'", pick_workers, count, WORKERS, WORKERS, rng())
    assert "available" in message


def test_count_beyond_the_candidates_left_is_refused():
    refused("argument 'workers'", pick_workers, 3, ["worker-1", "worker-2"], WORKERS, rng())


@pytest.mark.parametrize("share, expected", [("25%", 1), ("50%", 2), ("51%", 3), ("100%", 4), ("1%", 1),
                                             ("0.5%", 1), ("25.5%", 2), ("99.9%", 4), ("75%", 3)])
def test_a_percentage_rounds_up_and_takes_at_least_one(share, expected):
    chosen = pick_workers(share, WORKERS, WORKERS, rng())
    assert len(chosen) == expected == len(set(chosen))


def test_a_percentage_is_of_the_candidates():
    assert len(pick_workers("50%", ["worker-1", "worker-2"], WORKERS, rng())) == 1


@pytest.mark.parametrize("share", ["0%", "0.0%", "100.1%", "150%", "1000%"])
def test_a_percentage_outside_0_100_is_refused(share):
    message = refused("argument 'workers'", pick_workers, share, WORKERS, WORKERS, rng())
    assert "(0, 100]" in message


@pytest.mark.parametrize("share", ["-50%", "%", "50 %", "50%%", "fifty%", "5e1%", "%50"])
def test_malformed_percentages_are_refused(share):
    refused("argument 'workers'", pick_workers, share, WORKERS, WORKERS, rng())


def test_a_percentage_without_candidates_is_refused():
    refused("argument 'workers'", pick_workers, "50%", [], WORKERS, rng())


@pytest.mark.parametrize("spec", [2.0, 0.5, 1.0, float("nan")])
def test_float_counts_are_refused(spec):
    message = refused("argument 'workers'", pick_workers, spec, WORKERS, WORKERS, rng())
    assert "integer" in message


@pytest.mark.parametrize("spec", [True, False])
def test_bools_are_refused(spec):
    refused("argument 'workers'", pick_workers, spec, WORKERS, WORKERS, rng())


@pytest.mark.parametrize("spec, expected", [("worker-2", ["worker-2"]),
                                            ("worker-3,worker-1", ["worker-1", "worker-3"]),
                                            (" worker-3 , worker-1 ", ["worker-1", "worker-3"]),
                                            (["worker-4", "worker-2"], ["worker-2", "worker-4"]),
                                            (("worker-4",), ["worker-4"]),
                                            ("worker-1,worker-1", ["worker-1"])])
def test_named_workers(spec, expected):
    assert pick_workers(spec, WORKERS, WORKERS, rng()) == expected


@pytest.mark.parametrize("spec", ["worker-9", "worker-1,worker-9", ["worker-1", "master-1"], "Worker-1"])
def test_unknown_workers_are_refused_with_the_known_ones(spec):
    message = refused("argument 'workers'", pick_workers, spec, WORKERS, WORKERS, rng())
    assert "unknown" in message and "worker-1, worker-2, worker-3, worker-4" in message


def test_a_named_worker_that_cannot_be_targeted_now_is_refused():
    message = refused("argument 'workers'", pick_workers, "worker-1,worker-2", ["worker-2", "worker-3"],
                      WORKERS, rng())
    assert "worker-1" in message and "worker-2" not in message.split("'workers':")[1]


@pytest.mark.parametrize("spec", SHELL_NAMES + ["", ",", "worker-1,", ["worker-1; id"], ["worker-1", 3]])
def test_worker_names_with_shell_metacharacters_are_refused(spec):
    refused("argument 'workers'", pick_workers, spec, WORKERS, WORKERS, rng())


@pytest.mark.parametrize("spec", [None, [], {"worker-1": 1}, object()])
def test_worker_specs_of_a_wrong_type_are_refused(spec):
    refused("argument 'workers'", pick_workers, spec, WORKERS, WORKERS, rng())


# ---------------------------------------------------------------------------------------------------- pick_worker
STATES = [{"name": "worker-1", "alive": True, "running": ["a"]},
          {"name": "worker-2", "alive": True, "running": ["b", "c", "d"]},
          {"name": "worker-3", "alive": True, "running": ["e", "f", "g"]},
          {"name": "worker-4", "alive": True, "running": []}]


def test_busiest_is_the_worker_running_most_tasks_ties_by_name():
    assert pick_worker("busiest", STATES, WORKERS, rng()) == "worker-2"


def test_busiest_only_among_candidates():
    assert pick_worker("busiest", STATES, ["worker-1", "worker-3", "worker-4"], rng()) == "worker-3"
    assert pick_worker("busiest", STATES, ["worker-4"], rng()) == "worker-4"


def test_busiest_with_no_running_field_counts_zero():
    states = [{"name": "worker-1", "alive": True}, {"name": "worker-2", "alive": True, "running": ["x"]}]
    assert pick_worker("busiest", states, ["worker-1", "worker-2"], rng()) == "worker-2"


def test_busiest_without_candidates_is_refused():
    refused("'busiest'", pick_worker, "busiest", STATES, [], rng())


def test_random_worker_is_a_candidate():
    chosen = {pick_worker("random", STATES, ["worker-1", "worker-4"], rng(s)) for s in SEEDS}
    assert chosen == {"worker-1", "worker-4"}


def test_random_worker_without_candidates_is_refused():
    refused("'random'", pick_worker, "random", STATES, [], rng())


def test_a_named_worker():
    assert pick_worker("worker-4", STATES, WORKERS, rng()) == "worker-4"


def test_a_named_worker_that_is_not_a_candidate_is_refused():
    message = refused("'worker-4'", pick_worker, "worker-4", STATES, ["worker-1"], rng())
    assert "cannot be isolated now" in message


@pytest.mark.parametrize("spec", ["worker-9", "master-1", "WORKER-1"])
def test_an_unknown_worker_is_refused(spec):
    message = refused("argument 'worker'", pick_worker, spec, STATES, WORKERS, rng())
    assert "unknown" in message


def test_two_workers_named_at_once_are_refused():
    message = refused("argument 'worker'", pick_worker, "worker-1,worker-2", STATES, WORKERS, rng())
    assert "partition_workers" in message


@pytest.mark.parametrize("spec", SHELL_NAMES + [None, 3, 2.5, True, ""])
def test_a_worker_name_that_is_bad_is_refused(spec):
    refused("argument 'worker'", pick_worker, spec, STATES, WORKERS, rng())


# ---------------------------------------------------------------------------------------------------- peer_nodes
def test_peers_masters_registry_all():
    assert peer_nodes("masters", ROLES, ["worker-1"]) == MASTERS
    assert peer_nodes("registry", ROLES, ["worker-1"]) == ["etcd-1"]
    assert peer_nodes("all", ROLES, ["worker-1", "worker-2"]) == sorted(
        ["etcd-1", "load", "master-1", "master-2", "master-3", "worker-3", "worker-4"])


def test_named_peers_never_include_the_targets():
    assert peer_nodes("master-1,worker-1,worker-2", ROLES, ["worker-1"]) == ["master-1", "worker-2"]
    assert peer_nodes(["etcd-1", "load"], ROLES, ["worker-1"]) == ["etcd-1", "load"]


def test_peers_that_leave_nothing_are_refused():
    refused("argument 'peers'", peer_nodes, "worker-1", ROLES, ["worker-1"])
    refused("argument 'peers'", peer_nodes, "masters", ROLES, MASTERS)


@pytest.mark.parametrize("spec", ["", None])
def test_empty_peers_are_refused(spec):
    message = refused("argument 'peers'", peer_nodes, spec, ROLES, ["worker-1"])
    assert "'masters', 'registry', 'all'" in message


@pytest.mark.parametrize("spec", ["nobody", "master-1,master-9", "Masters", "ALL"])
def test_unknown_peers_are_refused(spec):
    message = refused("argument 'peers'", peer_nodes, spec, ROLES, ["worker-1"])
    assert "unknown" in message


@pytest.mark.parametrize("spec", SHELL_NAMES + [3, 2.5, True, {"a": 1}, [], ","])
def test_bad_peer_specs_are_refused(spec):
    refused("argument 'peers'", peer_nodes, spec, ROLES, ["worker-1"])


# ---------------------------------------------------------------------------------------------------- check_share
def test_by_default_one_worker_must_stay_reachable():
    check_share(WORKERS[:3], [], WORKERS, None)
    message = refused("chaosscheduler_max_worker_share", check_share, WORKERS, [], WORKERS, None)
    assert "4 of 4" in message and "1.0" in message


def test_already_cut_workers_count_towards_the_share():
    check_share(["worker-1"], ["worker-2", "worker-3"], WORKERS, None)
    refused("chaosscheduler_max_worker_share", check_share, ["worker-1"], ["worker-2", "worker-3", "worker-4"],
            WORKERS, None)


def test_a_worker_cut_twice_is_counted_once():
    check_share(["worker-1"], ["worker-1", "worker-2", "worker-3"], WORKERS, None)


@pytest.mark.parametrize("share, allowed", [(0.25, 1), (0.5, 2), (0.74, 2), (0.75, 3), (1.0, 4)])
def test_a_configured_share_is_the_upper_bound(share, allowed):
    check_share(WORKERS[:allowed], [], WORKERS, share)
    if allowed < len(WORKERS):
        message = refused("chaosscheduler_max_worker_share", check_share, WORKERS[:allowed + 1], [], WORKERS, share)
        assert f"{allowed + 1} of 4" in message


def test_share_one_allows_cutting_every_worker():
    check_share(WORKERS, [], WORKERS, 1.0)
    check_share(["worker-1"], WORKERS, WORKERS, 1.0)


def test_a_single_worker_cluster_cannot_lose_its_worker_by_default():
    refused("chaosscheduler_max_worker_share", check_share, ["worker-1"], [], ["worker-1"], None)
    check_share(["worker-1"], [], ["worker-1"], 1.0)
