"""The timing checks the control runs when an experiment loads, on the three shipped experiments."""

import json
import os

import pytest
from chaoslib.configuration import load_configuration

from chaosscheduler.errors import ChaosSchedulerError
from chaosscheduler.experiment_checks import check_experiment, review, warnings_of_run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(name, **overrides):
    with open(os.path.join(ROOT, "experiments", f"{name}.json")) as handle:
        experiment = json.load(handle)
    configuration = load_configuration(experiment["configuration"])
    configuration.update(overrides)
    return experiment, configuration


@pytest.mark.parametrize("name", ["master-crash", "worker-disconnect", "network-partition"])
def test_the_shipped_experiments_pass_their_own_checks(name):
    experiment, configuration = load(name)
    assert review(experiment, configuration)["warnings"] == []
    assert check_experiment(experiment, configuration) is None  # the control reads a truthy answer as a problem


def test_a_fault_shorter_than_the_detection_bound_is_refused_with_the_variable_to_change():
    experiment, configuration = load("worker-disconnect", fault_duration=60)
    with pytest.raises(ChaosSchedulerError) as e:
        check_experiment(experiment, configuration)
    message = str(e.value)
    assert "'isolate-the-busiest-worker' (isolate_worker) undoes itself after 60 s" in message
    assert "waits up to 95 s (timeout)" in message and "fault_duration" in message
    experiment, configuration = load("worker-disconnect", fault_duration=60, detection_timeout=50,
                                     detection_limit=45, rescheduling_deadline=40, rescheduling_latency_limit=40)
    assert check_experiment(experiment, configuration) is None


def test_a_probe_of_the_method_before_a_fault_does_not_wait_for_that_fault():
    """Only a probe after the fault (later in the method, or the hypothesis after it) waits for its effect."""
    def probe(name, timeout):
        return {"type": "probe", "name": name, "provider": {"type": "python", "module": "chaosscheduler.probes",
                                                            "func": "leader_election_time",
                                                            "arguments": {"timeout": timeout}}}

    kill = {"type": "action", "name": "kill", "provider": {"type": "python", "module": "chaosscheduler.actions",
                                                           "func": "kill_master", "arguments": {"duration": 5}}}
    assert check_experiment({"method": [probe("before", 20), kill]}, {}) is None
    with pytest.raises(ChaosSchedulerError, match="'kill' .* undoes itself after 5 s, but 'after' waits up to 20 s"):
        check_experiment({"method": [probe("before", 1), kill, probe("after", 20)]}, {})
    with pytest.raises(ChaosSchedulerError, match="but 'hypothesis' waits up to 20 s"):
        check_experiment({"method": [kill], "steady-state-hypothesis": {"title": "t", "probes": [
            probe("hypothesis", 20)]}}, {})


def test_a_probe_that_gives_up_before_its_limit_is_refused():
    experiment, configuration = load("master-crash", stall_timeout=3)
    with pytest.raises(ChaosSchedulerError, match="stops waiting after 3 s.*before its limit of 5 s"):
        check_experiment(experiment, configuration)


def test_a_fault_that_expires_during_its_own_pause_is_refused():
    experiment, configuration = load("network-partition", split_seconds=58)
    with pytest.raises(ChaosSchedulerError, match="during its own pause of 58 s"):
        check_experiment(experiment, configuration)


def test_a_split_shorter_than_the_heartbeat_timeout_is_said():
    experiment, configuration = load("network-partition", heartbeat_timeout=300)
    check_experiment(experiment, configuration)
    warnings = warnings_of_run()
    assert len(warnings) == 1 and "8 s, shorter than the 300 s heartbeat timeout" in warnings[0]
    assert "cannot fail on the split" in warnings[0]
    # the embedded cluster's own timeout (heartbeat_ttl) when the variable is null
    experiment, configuration = load("network-partition", split_seconds=3)
    assert "embedded cluster's heartbeat_ttl" in review(experiment, configuration)["warnings"][0]


def test_a_threshold_variable_that_is_not_declared_is_named():
    experiment, configuration = load("worker-disconnect")
    del configuration["fault_duration"]
    with pytest.raises(ChaosSchedulerError, match="duration must be a number of seconds, got '\\$\\{fault_duration\\}'"):
        check_experiment(experiment, configuration)
