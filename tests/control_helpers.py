"""Probes the control tests put into their experiments (``"module": "tests.control_helpers"``, with the checkout on
``PYTHONPATH``): what the control tells probes in the ``chaos`` process, and a wait the test releases by a file."""

import os
from typing import Any, Dict, List, Optional

from chaosscheduler import runs
from chaosscheduler.timing import wait_until

__all__ = ["phase", "phase_is", "phase_is_not", "observed", "wait_for_file"]


def phase() -> Optional[str]:
    return runs.current_phase()


def phase_is(expected: str) -> bool:
    return runs.current_phase() == expected


def phase_is_not(unexpected: str) -> bool:
    return runs.current_phase() != unexpected


def observed() -> List[Dict[str, Any]]:
    return runs.observed_faults()


def wait_for_file(path: str, timeout: float = 120.0) -> Dict[str, Any]:
    """Say the wait started (``<path>.waiting``), then poll until ``path`` exists: a long-running Python probe whose
    end the test decides. A signal that chaoslib turns into an exception ends it early."""
    with open(path + ".waiting", "w") as handle:
        handle.write(str(os.getpid()))
    wait_until(lambda: os.path.exists(path), timeout, interval=0.01, message=f"the file {path}")
    return {"released": True}
