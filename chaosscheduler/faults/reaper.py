"""The self-expiry reaper: a detached process per fault that undoes the fault at its deadline.

    python -m chaosscheduler.faults.reaper --home HOME --fault ID

It exits as soon as the fault is closed by someone else (rollback, control, heal), and is otherwise independent
of the ``chaos`` process: killing that one with SIGKILL leaves the reaper to do its job. It keeps its own copy of
the fault record (``<home>/reapers/<id>.json``, written before it starts), so a ledger that becomes unreadable
(corrupt, deleted) — even before the reaper first read it — does not stop it: it then undoes the fault from its
copy.
"""

import argparse
import contextlib
import signal
import sys
import time
from typing import Any, Dict, Optional

from .._files import read_json
from ..errors import ChaosSchedulerError
from ..ledger import OPEN_STATES, Ledger
from .base import fault_class
from .lifecycle import copy_path, undo

CHECK_EVERY = 0.25
WARM_BEFORE = 1.0  # seconds before the deadline: import what the undo needs (not at start, while injecting)
WARM_PER_HOST = 0.025  # ... plus this per target: the connections to every target are opened before the deadline


def warm_before(record: Dict[str, Any]) -> float:
    """Seconds before the deadline to prepare: longer for a fault over many hosts (connecting them all first)."""
    return min(10.0, WARM_BEFORE + WARM_PER_HOST * len(record.get("targets") or []))


def _log(fault_id: str, message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} reaper {fault_id}: {message}", flush=True)


def _warm(record: Dict[str, Any]) -> Any:
    """Import now what undoing ``record`` will need (the platform and fault modules: ~50 ms on 2 cores) and open the
    connections to every target at once (a fault over many SSH hosts), so that the deadline only pays for the undo
    commands themselves. Returns the platform (reused by the undo), or None."""
    from ..platforms import from_reference

    with contextlib.suppress(Exception):  # a bad record is reported at the deadline, by the undo itself
        platform = from_reference(record["platform"])
        if platform.available() is None:
            missing = fault_class(record["kind"])(record).prepare(platform)
            if missing:
                _log(record["id"], f"cannot reach {', '.join(sorted(missing))} yet; will retry at the deadline")
        return platform
    return None


def _undo_from_copy(record: Dict[str, Any], platform: Any = None) -> None:
    from ..platforms import from_reference

    platform = platform or from_reference(record["platform"])
    if platform.available() is None:
        fault_class(record["kind"])(record).undo(platform)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--fault", required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ledger = Ledger(args.home)
    copy: Optional[Dict[str, Any]] = None
    try:  # the copy written before this process started: the ledger may be unreadable from the first moment
        copy = read_json(copy_path(args.home, args.fault))
    except (OSError, ValueError):
        copy = None
    ledger_ok = True
    warmed = False
    platform = None
    started = time.monotonic()
    while True:
        try:
            record = ledger.get(args.fault)
            copy, ledger_ok = record, True
        except ChaosSchedulerError as e:
            if copy is None:
                if time.monotonic() - started > 30:  # never saw the record: nothing to undo
                    _log(args.fault, f"no record to act on: {e}")
                    return 1
                time.sleep(CHECK_EVERY)
                continue
            if ledger_ok:
                _log(args.fault, f"ledger unreadable ({e}); going on with my own copy of the fault")
            record, ledger_ok = copy, False
        if record.get("state") not in OPEN_STATES or record.get("deadline") is None:
            return 0
        left = record["deadline"] - time.time()
        if left <= 0:
            break
        if not warmed and left <= warm_before(record):
            platform = _warm(record)
            warmed = True
            continue
        time.sleep(min(left, CHECK_EVERY))
    deadline = record["deadline"]
    for attempt in range(20):
        try:
            if ledger_ok:
                record = undo(ledger, args.fault, reason="expired", platform=platform)
                _log(args.fault, f"{record['state']} {time.time() - deadline:.3f} s after the deadline")
            else:
                _undo_from_copy(record, platform)
                _log(args.fault, f"undone from my copy {time.time() - deadline:.3f} s after the deadline; "
                                 f"the ledger could not record it")
            return 0
        except Exception as e:  # keep trying: a transient failure must not leave the fault in place
            _log(args.fault, f"undo failed ({e}); retrying")
            platform = None  # rebuilt (fresh connections) for the next attempt
            time.sleep(min(0.5 * (attempt + 1), 5))
            try:
                ledger.get(args.fault)
                ledger_ok = True
            except ChaosSchedulerError:
                ledger_ok = False
    return 1


if __name__ == "__main__":
    sys.exit(main())
