"""``pip install chaosscheduler`` gives a user the experiments: the source distribution is built from a copy of this
checkout, the wheel from that source distribution (as ``python -m build`` does), and the wheel is installed in a
fresh virtual environment; from there ``chaosscheduler experiments write`` writes them out and the real
``chaos validate`` accepts each of them.

The fresh environment gets the wheel alone (``--no-deps``); the wheel's requirements (chaostoolkit, chaostoolkit-lib,
requests, ...) come from the test's own environment through a plain path in a ``.pth`` file, so the test needs no
network. A plain path adds that directory to ``sys.path`` without running its ``.pth`` files, so the editable
install of this checkout is not visible there: the test checks that the package imported is the wheel's.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IGNORE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                ".hypothesis", "journal*.json", "*.log", "report*.html")


def _have(module: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not (_have("setuptools") and _have("wheel")),
                                 reason="building the wheel offline needs setuptools and wheel (the test extra)"),
              pytest.mark.timeout(600)]


def sh(argv, cwd, **kwargs):
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, argv))}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the wheel built from this checkout's source distribution installed in it."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    sh([sys.executable, "setup.py", "-q", "sdist", "-d", work / "sdist"], cwd=src)
    (sdist,) = os.listdir(work / "sdist")
    sh([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", work / "dist",
        work / "sdist" / sdist], cwd=work)
    (wheel,) = os.listdir(work / "dist")
    venv = work / "venv"
    sh([sys.executable, "-m", "venv", "--without-pip", venv], cwd=work)
    site = subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "_test_requirements.pth"), "w") as handle:
        handle.write(sysconfig.get_paths()["purelib"] + "\n")
    sh([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-deps",
        "--no-index", work / "dist" / wheel], cwd=work)
    return {"work": work, "venv": venv, "wheel": work / "dist" / wheel}


def test_the_wheel_holds_the_experiments_and_var_files(installed):
    import zipfile

    names = zipfile.ZipFile(installed["wheel"]).namelist()
    for name in sorted(os.listdir(os.path.join(ROOT, "experiments"))):
        if name.endswith(".json"):
            assert f"chaosscheduler/experiments/{name}" in names
    for name in sorted(os.listdir(os.path.join(ROOT, "experiments", "vars"))):
        assert f"chaosscheduler/experiments/vars/{name}" in names


def test_experiments_written_from_the_installed_wheel_pass_chaos_validate(installed):
    work, venv = installed["work"], installed["venv"]
    python = venv / "bin" / "python"
    where = sh([python, "-c", "import chaosscheduler, chaosscheduler.shipped as s; "
                              "print(chaosscheduler.__file__); print(s.experiments_dir())"], cwd=work).stdout.split()
    assert all(path.startswith(str(venv)) for path in where), where  # the wheel's package, not this checkout
    out = work / "mine"
    written = sh([venv / "bin" / "chaosscheduler", "experiments", "write", out], cwd=work)
    assert "run one with: chaos run" in written.stdout
    experiments = sorted(n for n in os.listdir(os.path.join(ROOT, "experiments")) if n.endswith(".json"))
    assert len(experiments) == 3
    for name in experiments + [os.path.join("vars", n) for n in os.listdir(os.path.join(ROOT, "experiments", "vars"))]:
        with open(os.path.join(ROOT, "experiments", name), "rb") as a, open(out / name, "rb") as b:
            assert a.read() == b.read(), f"{name}: the installed copy differs from the checkout's"
    for name in experiments:  # chaos validate imports every Python activity and control and checks its arguments
        proc = sh([python, "-m", "chaostoolkit", "--no-version-check", "--no-log-file", "validate", out / name],
                  cwd=work)
        assert "experiment syntax and semantic look valid" in (proc.stdout + proc.stderr).lower(), proc.stderr
    for name in os.listdir(out / "vars"):  # chaos validate takes no var file: each is a configuration object
        with open(out / "vars" / name) as handle:
            assert isinstance(json.load(handle).get("configuration"), dict), name


def test_a_jsonpath_tolerance_works_with_the_extras_installed(tmp_path):
    """Our probes return dicts; a user's ``jsonpath`` tolerance on one needs ``jsonpath2``, which chaostoolkit does
    not install: the ``cli`` (and ``test``) extra does. A real ``chaos run`` of a probe returning a dict."""
    experiment = {
        "version": "1.0.0", "title": "a jsonpath tolerance", "description": "jsonpath2 is installed",
        "steady-state-hypothesis": {"title": "the value is 3", "probes": [{
            "type": "probe", "name": "a-dict", "tolerance": {"type": "jsonpath", "path": "$.value", "expect": [3]},
            "provider": {"type": "python", "module": "json", "func": "loads",
                         "arguments": {"s": "{\"value\": 3, \"unit\": \"s\"}"}}}]},
        "method": []}
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(experiment))
    proc = subprocess.run([sys.executable, "-m", "chaostoolkit", "--no-version-check", "--no-log-file", "run", path,
                           "--journal-path", tmp_path / "journal.json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with open(tmp_path / "journal.json") as handle:
        journal = json.load(handle)
    assert journal["status"] == "completed" and journal["steady_states"]["before"]["steady_state_met"] is True
