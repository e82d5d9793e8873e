"""A user without root runs the worker-disconnect experiment — embedded cluster, network namespaces, nft isolation —
inside one unprivileged user namespace (``chaosscheduler userns``), and nothing is left behind or visible outside.

The test drops to the ``nobody`` account, which may not be able to read this checkout or this venv at all: a clone
under /root (mode 0700) is the common newcomer's case, and a pyenv interpreter lives there too. So the test gives
that account a world-readable copy, in a temporary directory it removes afterwards, of what the run needs: the
package and the experiments of this checkout, and the installed distributions that ``chaostoolkit`` and
``chaosscheduler`` require (their files as listed in their metadata, ~25 MB; hard links where the file system
allows). It runs Debian's own /usr/bin/python3 with that copy on PYTHONPATH, and is skipped when that interpreter
is missing or of another minor version (compiled extensions would not load).
"""

import importlib.metadata
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List

import pytest
from packaging.requirements import Requirement

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


def _distributions(names: List[str]) -> Dict[str, importlib.metadata.Distribution]:
    """The installed distributions ``names`` need, transitively (requirements without extras)."""
    found: Dict[str, importlib.metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in found:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an optional platform-specific requirement that pip did not install
        found[key] = dist
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return found


def _place(source: str, target: str) -> None:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        os.link(source, target)  # same file system: instant, no space
    except OSError:
        shutil.copy2(source, target)


def readable_copy(work: str) -> str:
    """Copy what the run needs into ``work/py`` (one directory for PYTHONPATH), readable by anyone; return it."""
    target = os.path.join(work, "py")
    for name in ("chaosscheduler", "experiments"):
        shutil.copytree(os.path.join(ROOT, name), os.path.join(target, name),
                        ignore=shutil.ignore_patterns("__pycache__"))
    for key, dist in _distributions(["chaostoolkit", "chaosscheduler"]).items():
        if key == "chaosscheduler":
            continue  # an editable install: the package itself was copied from the checkout above
        for file in dist.files or []:
            relative = str(file)
            source = str(dist.locate_file(file))
            if relative.startswith("..") or os.path.isabs(relative) or "__pycache__" in relative or \
                    not os.path.isfile(source):
                continue  # console scripts (../../bin) and byte code are not needed
            _place(source, os.path.join(target, relative))
    for directory, subdirs, files in os.walk(work):
        os.chmod(directory, 0o755)
        for name in files:
            path = os.path.join(directory, name)
            os.chmod(path, os.stat(path).st_mode | 0o444)
    os.chmod(work, 0o777)  # the run writes its state home, journal and log here
    return target


def _userns_refused_to(account: str) -> str:
    """Why ``account`` may not create a user namespace here ("" when it may): a chroot (as in
    shared/tools/fresh-debian.sh), a sysctl or AppArmor forbids it. The test is about our code, not this kernel."""
    probe = subprocess.run(["runuser", "-u", account, "--", "unshare", "--user", "--map-root-user", "true"],
                           capture_output=True, text=True)
    return "" if probe.returncode == 0 else (probe.stderr.strip() or f"exit {probe.returncode}")


def test_non_root_user_runs_worker_disconnect_inside_a_user_namespace():
    nobody = pwd.getpwnam("nobody")
    refused = _userns_refused_to(nobody.pw_name)
    if refused:
        pytest.skip(f"this machine does not let {nobody.pw_name} create a user namespace ({refused}): a chroot, "
                    f"kernel.unprivileged_userns_clone=0 or an AppArmor restriction")
    work = tempfile.mkdtemp(prefix="csu", dir="/tmp")
    try:
        copy = readable_copy(work)
        env = {"PATH": "/usr/bin:/bin", "HOME": work, "CHAOSSCHEDULER_HOME": os.path.join(work, "home"),
               "CHAOSSCHEDULER_CLUSTER": "userns", "LANG": "C.UTF-8", "PYTHONPATH": copy}
        argv = ["runuser", "-u", nobody.pw_name, "--", "env", "-i"] + [f"{k}={v}" for k, v in env.items()] + [
            SYSTEM_PYTHON, "-m", "chaosscheduler.cli", "userns", "--",
            SYSTEM_PYTHON, "-m", "chaostoolkit", "--no-version-check", "--log-file", os.path.join(work, "chaos.log"),
            "run", os.path.join(copy, "experiments", "worker-disconnect.json"),
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
