"""The interruption matrix: the real ``chaos run`` of each experiment stopped with SIGINT, SIGTERM or SIGKILL at
each phase (steady state before, the fault just injected, a wait with the fault in place, the rollbacks).

After every cell the fault is gone — at once (rollbacks, control) or at its deadline (self-expiry, within 1 s) —,
``chaosscheduler heal`` exits 0 and leaves the hosts at their baseline, and the operator's sentinel rules (root
namespace and every cluster namespace) are byte-for-byte unchanged. The CI subset is one experiment × three signals
× the two phases where a fault is live or being undone; the other 30 cells are marked ``slow``:

    scripts/test -m slow tests/reliability/test_interruptions.py      # or: python benchmarks/reliability_matrix.py
"""

import pytest

from . import harness
from .conftest import REAL

pytestmark = REAL + [pytest.mark.e2e]

CI_CELLS = [("worker-disconnect", sig, phase) for sig in harness.SIGNALS for phase in ("injected", "rollbacks")] \
    + [("worker-disconnect", "SIGTERM", "wait")]  # the cell that used to end "completed", exit 0
ALL_CELLS = [(e, s, p) for e in harness.EXPERIMENTS for s in harness.SIGNALS for p in harness.PHASES]
SLOW_CELLS = [cell for cell in ALL_CELLS if cell not in CI_CELLS]


def judge(cell: harness.Cell) -> None:
    where = f"{cell.experiment} {cell.signal} {cell.phase}"
    assert not cell.error, f"{where}: {cell.error}"
    assert cell.problems == [], f"{where}: {cell.problems}"
    assert cell.leftovers == [] and cell.sentinel_diffs == [] and cell.heal_rc == 0
    assert cell.sentinels_compared >= 2, "the sentinels were not compared"
    if cell.phase != "before":
        assert cell.faults, f"{where}: no fault was injected, the phase was not reached"
    for fault in cell.faults:
        assert fault["ended"] in ("before the signal", "by the run", "at its deadline"), fault
        if fault["ended"] == "at its deadline":
            assert -0.05 <= fault["overshoot"] <= harness.OVERSHOOT_TARGET, fault
    if cell.signal == "SIGKILL":
        assert cell.exit_code == -9 and cell.status is None  # no journal: chaos never got to write it
        if cell.phase in ("injected", "wait"):  # a fault was live when chaos died: only self-expiry can end it
            assert any(f["ended"] == "at its deadline" for f in cell.faults), cell.faults
    else:  # SIGINT, SIGTERM: at every phase an interrupted run (exit 1), its faults undone by the run itself
        assert cell.exit_code == 1 and cell.status == "interrupted", f"{where}: {cell.exit_code} {cell.status}"
        assert cell.control.startswith("cleanup ran"), f"{where}: the control's cleanup did not run: {cell.control}"
        assert not any(f["ended"] == "at its deadline" for f in cell.faults), \
            f"{where}: the run itself should have undone its faults: {cell.faults}"


@pytest.mark.parametrize("experiment,sig,phase", CI_CELLS, ids=["-".join(c) for c in CI_CELLS])
def test_an_interrupted_run_leaves_nothing_behind(experiment, sig, phase):
    judge(harness.run_cell(experiment, sig, phase))


@pytest.mark.slow
@pytest.mark.parametrize("experiment,sig,phase", SLOW_CELLS, ids=["-".join(c) for c in SLOW_CELLS])
def test_full_matrix_cell(experiment, sig, phase):
    judge(harness.run_cell(experiment, sig, phase))
