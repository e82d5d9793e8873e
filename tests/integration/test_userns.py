"""A user without root runs the worker-disconnect experiment — embedded cluster, network namespaces, nft isolation —
inside one unprivileged user namespace (``chaosscheduler userns``), and nothing is left behind or visible outside.

The test drops to the ``nobody`` account. That account cannot read this venv's interpreter when it lives under
/root (pyenv), so the test runs Debian's own /usr/bin/python3 with this venv's site-packages on PYTHONPATH; it is
skipped when that interpreter is missing or of another minor version (compiled extensions would not load).
"""

import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import pytest

from chaosscheduler import procs
from chaosscheduler.testbed import network
from tests.conftest import NEEDS_ETCD, NEEDS_ROOT

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYSTEM_PYTHON = "/usr/bin/python3"


def _system_python_matches() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    out = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                         text=True)
    return out.stdout.strip() == str(sys.version_info[:2])


pytestmark = [NEEDS_ROOT, NEEDS_ETCD,
              pytest.mark.skipif(not _system_python_matches(),
                                 reason=f"{SYSTEM_PYTHON} missing or not Python {sys.version_info[:2]}"),
              pytest.mark.skipif(shutil.which("runuser") is None, reason="runuser (util-linux) missing")]


def test_non_root_user_runs_worker_disconnect_inside_a_user_namespace():
    work = tempfile.mkdtemp(prefix="csu", dir="/tmp")
    os.chmod(work, 0o777)
    nobody = pwd.getpwnam("nobody")
    try:
        env = {"PATH": "/usr/bin:/bin", "HOME": work, "CHAOSSCHEDULER_HOME": os.path.join(work, "home"),
               "CHAOSSCHEDULER_CLUSTER": "userns", "LANG": "C.UTF-8",
               "PYTHONPATH": os.pathsep.join([ROOT, sysconfig.get_paths()["purelib"]])}
        argv = ["runuser", "-u", nobody.pw_name, "--", "env", "-i"] + [f"{k}={v}" for k, v in env.items()] + [
            SYSTEM_PYTHON, "-m", "chaosscheduler.cli", "userns", "--",
            SYSTEM_PYTHON, "-m", "chaostoolkit", "--no-version-check", "--log-file", os.path.join(work, "chaos.log"),
            "run", os.path.join(ROOT, "experiments", "worker-disconnect.json"),
            "--journal-path", os.path.join(work, "journal.json")]
        proc = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        with open(os.path.join(work, "journal.json")) as handle:
            journal = json.load(handle)
        assert journal["status"] == "completed" and journal["deviated"] is False
        faults = journal["chaosscheduler"]["faults"]
        assert [f["action"] for f in faults] == ["isolate_worker"] and faults[0]["state"] == "undone"
        # everything lived in the user's own namespaces: nothing appeared in, or was left in, the real ones
        assert [n for n in network.existing_namespaces() if n.startswith("cs-userns-")] == []
        state_dir = os.path.join(env["CHAOSSCHEDULER_HOME"], "testbed", "userns")
        assert procs.pids_with_marker(state_dir) == []
        assert procs.pids_with_marker(f"reaper:{env['CHAOSSCHEDULER_HOME']}") == []
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_userns_without_a_command_is_a_clear_error():
    proc = subprocess.run([sys.executable, "-m", "chaosscheduler.cli", "userns"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "give the command to run" in proc.stderr
