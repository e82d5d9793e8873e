"""The command line's small edges: ``--version``, plain-text help everywhere, ``testbed down`` of a cluster that does
not exist, and ``experiments list|write`` (refusing to overwrite a different file unless ``--force``, clear errors,
nothing left behind on a refusal). Run as ``python -m chaosscheduler.cli`` in a subprocess, as a user would."""

import argparse
import json
import os
import re
import subprocess
import sys

import pytest

import chaosscheduler
from chaosscheduler import cli, shipped

SHIPPED = ["master-crash.json", "network-partition.json", "worker-disconnect.json"]


def run(*args, home=None):
    env = dict(os.environ)
    if home:
        env["CHAOSSCHEDULER_HOME"] = home
    return subprocess.run([sys.executable, "-m", "chaosscheduler.cli", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_version():
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"chaosscheduler {chaosscheduler.__version__}"


def _parsers():
    """Every (sub)parser of the CLI, found by building it as main() does and walking the subparser actions."""
    captured = {}
    real_parse = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        captured["parser"] = self
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = capture
    try:
        with pytest.raises(SystemExit):
            cli.main([])
    finally:
        argparse.ArgumentParser.parse_args = real_parse
    todo, found = [captured["parser"]], []
    while todo:
        parser = todo.pop()
        found.append(parser)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return found


# reStructuredText / Sphinx markup that has no business in a terminal
MARKUP = re.compile(r"``|:(func|class|mod|meth|ref|attr):|^\s*\.\. |\*\*\w")


def test_every_help_text_is_plain():
    parsers = _parsers()
    assert len(parsers) >= 12  # the top level, testbed and its 4 actions, experiments and its 2, heal, ...
    for parser in parsers:
        text = parser.format_help()
        assert not MARKUP.search(text), f"markup in '{parser.prog} --help':\n{text}"
    assert not MARKUP.search(run("--help").stdout)


def test_down_of_a_cluster_that_does_not_exist_says_there_was_none(tmp_path):
    home = str(tmp_path)
    proc = run("testbed", "down", "--name", "nosuchthing", home=home)
    assert proc.returncode == 0, proc.stderr
    assert "there was none" in proc.stdout and "removed" not in proc.stdout
    assert os.listdir(home) == []  # not even a lock file


def test_experiments_list_names_every_shipped_file():
    proc = run("experiments", "list")
    assert proc.returncode == 0, proc.stderr
    for name in SHIPPED + ["vars/broken-no-reschedule.json", "vars/kubernetes.json"]:
        assert name in proc.stdout
    with open(os.path.join(shipped.experiments_dir(), "master-crash.json")) as handle:
        assert json.load(handle)["title"] in proc.stdout


def test_experiments_write_writes_experiments_and_var_files(tmp_path):
    target = tmp_path / "new" / "dir"
    proc = run("experiments", "write", str(target))
    assert proc.returncode == 0, proc.stderr
    names = sorted(e["name"] for e in shipped.catalogue())
    written = sorted(os.path.relpath(os.path.join(d, f), target) for d, _, fs in os.walk(target) for f in fs)
    assert written == names and set(SHIPPED) <= set(written) and any(n.startswith("vars/") for n in written)
    for name in names:
        with open(os.path.join(shipped.experiments_dir(), name), "rb") as a, open(target / name, "rb") as b:
            assert a.read() == b.read()
    assert oct(os.stat(target / "master-crash.json").st_mode & 0o777) == oct(0o666 & ~_umask())
    again = run("experiments", "write", str(target))  # identical files: nothing to refuse
    assert again.returncode == 0 and f"0 written, 0 replaced, {len(names)} unchanged" in again.stdout


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_experiments_write_refuses_to_overwrite_a_different_file_unless_forced(tmp_path):
    (tmp_path / "vars").mkdir()
    mine = tmp_path / "vars" / "kubernetes.json"
    mine.write_text('{"configuration": {"mine": 1}}')
    proc = run("experiments", "write", str(tmp_path))
    assert proc.returncode == 2
    assert "refusing to overwrite 1 file(s)" in proc.stderr and str(mine) in proc.stderr and "--force" in proc.stderr
    assert mine.read_text() == '{"configuration": {"mine": 1}}'
    assert sorted(os.listdir(tmp_path)) == ["vars"] and os.listdir(tmp_path / "vars") == ["kubernetes.json"]
    forced = run("experiments", "write", str(tmp_path), "--force")
    assert forced.returncode == 0 and f"replaced  {mine}" in forced.stdout
    with open(os.path.join(shipped.experiments_dir(), "vars", "kubernetes.json")) as handle:
        assert mine.read_text() == handle.read()


def test_experiments_write_errors_are_clear(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    proc = run("experiments", "write", str(a_file))
    assert proc.returncode == 2 and "exists and is not a directory" in proc.stderr
    (tmp_path / "d" / "master-crash.json").mkdir(parents=True)
    proc = run("experiments", "write", str(tmp_path / "d"))
    assert proc.returncode == 2 and "is a directory" in proc.stderr
    assert os.listdir(tmp_path / "d") == ["master-crash.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_experiments_write_into_an_unwritable_directory_leaves_nothing(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    proc = run("experiments", "write", str(locked / "sub"))
    assert proc.returncode == 2 and "cannot write the experiments" in proc.stderr
    assert os.listdir(locked) == []


def test_a_failed_write_removes_what_it_created(tmp_path, monkeypatch):
    """A write that fails half-way (disk full, a permission denied deep down) takes back the files and directories
    it had created."""
    calls = []
    real = shipped._write_file

    def failing(path, data):
        calls.append(path)
        if len(calls) == 4:
            raise OSError(28, "No space left on device", path)
        real(path, data)

    monkeypatch.setattr(shipped, "_write_file", failing)
    with pytest.raises(chaosscheduler.errors.ChaosSchedulerError, match="No space left on device"):
        shipped.write(str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
