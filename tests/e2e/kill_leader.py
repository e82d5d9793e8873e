"""A stand-in for another tool's fault, used by a plain Chaos Toolkit ``process`` action in the e2e tests:
``kill_leader.py kill`` sends SIGKILL to the embedded cluster's leader master (its pid from the cluster's own
record), ``kill_leader.py restart`` starts again the masters that are not running. The cluster is named by the
environment the ``chaos`` process passes on (CHAOSSCHEDULER_HOME, CHAOSSCHEDULER_CLUSTER). Prints one JSON line."""

import json
import os
import signal
import sys
import time

from chaosscheduler.testbed import find


def main() -> int:
    tb = find(os.environ["CHAOSSCHEDULER_CLUSTER"], os.environ["CHAOSSCHEDULER_HOME"])
    if sys.argv[1:] == ["kill"]:
        leader = tb.leader()
        pid = tb.process(leader)["pid"]
        at = time.time()
        os.kill(pid, signal.SIGKILL)
        print(json.dumps({"killed": leader, "pid": pid, "at": at}))
        return 0
    if sys.argv[1:] == ["restart"]:
        started = [m.name for m in tb.nodes_of("master") if not tb.is_running(m.name)]
        for name in started:
            tb.restart_node(name)
        print(json.dumps({"restarted": started}))
        return 0
    print("usage: kill_leader.py kill|restart", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
