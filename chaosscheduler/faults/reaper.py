"""The self-expiry reaper: a detached process per fault that undoes the fault at its deadline.

    python -m chaosscheduler.faults.reaper --home HOME --fault ID

It exits as soon as the fault is closed by someone else (rollback, control, heal), and is otherwise independent
of the ``chaos`` process: killing that one with SIGKILL leaves the reaper to do its job.
"""

import argparse
import signal
import sys
import time

from ..errors import ChaosSchedulerError
from ..ledger import OPEN_STATES, Ledger
from .lifecycle import undo

CHECK_EVERY = 0.25


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--fault", required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ledger = Ledger(args.home)
    while True:
        try:
            record = ledger.get(args.fault)
        except ChaosSchedulerError as e:
            print(f"reaper {args.fault}: {e}", flush=True)
            return 1
        if record.get("state") not in OPEN_STATES:
            return 0
        deadline = record.get("deadline")
        if deadline is None:
            return 0
        left = deadline - time.time()
        if left <= 0:
            break
        time.sleep(min(left, CHECK_EVERY))
    for attempt in range(20):
        try:
            record = undo(ledger, args.fault, reason="expired")
            print(f"reaper {args.fault}: {record['state']} {time.time() - deadline:.3f} s after the deadline",
                  flush=True)
            return 0
        except Exception as e:  # keep trying: a transient failure must not leave the fault in place
            print(f"reaper {args.fault}: undo failed ({e}); retrying", flush=True)
            time.sleep(min(0.5 * (attempt + 1), 5))
    return 1


if __name__ == "__main__":
    sys.exit(main())
