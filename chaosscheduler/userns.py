"""Run a command inside one unprivileged user namespace where this user is "root": the whole embedded cluster
with network namespaces and network faults, no real root needed.

    chaosscheduler userns -- chaos run experiments/worker-disconnect.json

The command runs as PID 1's child in new user, network, mount and PID namespaces (``unshare --user
--map-root-user --net --mount --pid --fork``), with a private tmpfs on /run/netns. When it exits, the kernel
ends every process left in the PID namespace and frees every network namespace: nothing can outlive it, and
nothing is changed outside it. Embedded clusters started inside are only visible inside.
"""

import os
import shutil
import subprocess
import sys
from typing import List, Optional

from .errors import ChaosSchedulerError

__all__ = ["command", "available", "main"]

SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def command(argv: List[str]) -> List[str]:
    """The argv that runs ``argv`` inside the user namespace."""
    if not argv:
        raise ChaosSchedulerError("chaosscheduler userns: give the command to run, e.g. -- chaos run EXPERIMENT")
    if shutil.which("unshare") is None:
        raise ChaosSchedulerError("the 'unshare' command is missing: apt-get install util-linux")
    return ["unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--mount-proc",
            sys.executable, "-m", "chaosscheduler.userns", "--inside", "--"] + list(argv)


def available() -> Optional[str]:
    """None when this process may create a user namespace; otherwise why not, as an actionable sentence."""
    if shutil.which("unshare") is None:
        return "the 'unshare' command is missing: apt-get install util-linux"
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True, text=True)
    if probe.returncode == 0:
        return None
    return (f"unprivileged user namespaces are not allowed here ({probe.stderr.strip() or probe.returncode}): the "
            f"kernel refuses them inside a chroot, when sysctl kernel.unprivileged_userns_clone=0 or "
            f"user.max_user_namespaces=0, and where AppArmor restricts them (Ubuntu 24.04: "
            f"kernel.apparmor_restrict_unprivileged_userns); run as root instead")


def run(argv: List[str]) -> int:
    """Run ``argv`` inside the namespaces; its exit code. Raises ChaosSchedulerError, saying why, where
    unprivileged user namespaces are not allowed."""
    full = command(argv)
    reason = available()
    if reason:
        raise ChaosSchedulerError(reason)
    return subprocess.run(full).returncode


def _inside(argv: List[str]) -> int:
    os.makedirs("/run/netns", exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run/netns"], capture_output=True, text=True)
    if mount.returncode != 0:
        print(f"chaosscheduler userns: cannot mount a private /run/netns: {mount.stderr.strip()}", file=sys.stderr)
        return 2
    env = dict(os.environ, CHAOSSCHEDULER_USERNS="1")
    path = env.get("PATH", "").split(os.pathsep)
    env["PATH"] = os.pathsep.join(path + [d for d in SBIN if d not in path])
    try:
        return subprocess.run(argv, env=env).returncode
    except FileNotFoundError:
        print(f"chaosscheduler userns: command not found: {argv[0]}", file=sys.stderr)
        return 127


def main() -> int:
    args = sys.argv[1:]
    if args[:2] == ["--inside", "--"]:
        return _inside(args[2:])
    if args[:1] == ["--"]:
        args = args[1:]
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
