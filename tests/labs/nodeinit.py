"""PID 1 of one lab node: names the node, gives it its own directories, starts its services and reaps every
process of the node until it is killed.

Run as ``ip netns exec <netns> unshare --uts --pid --mount --fork --kill-child --mount-proc python nodeinit.py
<node.json>``: the node then has its own network, host name, process list and mounts. The lab records the
``unshare`` process; a SIGKILL to it kills this process (``--kill-child``), and the kernel then kills every process
of the node's PID namespace: nothing of a node outlives its record.

``node.json``: ``{"hostname": str, "run_tmpfs": [dirs to create in a fresh /run], "binds": [[source, target] or
[source, target, "optional"] (skipped when the target does not exist)], "private_tmp": {"source": dir, "keep":
[paths under /tmp that stay visible]}, "services": [{"name": str, "argv": [...], "log": path, "env": {...}}]}``.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time


def _mount(argv):
    subprocess.run(["mount"] + argv, check=True)


def main(path: str) -> None:
    with open(path) as handle:
        node = json.load(handle)
    socket.sethostname(node["hostname"])
    if "run_tmpfs" in node:  # a /run of its own: PID files, sshd's privilege separation directory
        _mount(["-t", "tmpfs", "-o", "mode=0755", "run", "/run"])
        for sub in node["run_tmpfs"]:
            os.makedirs(os.path.join("/run", sub), mode=0o755)
    for source, target, *optional in node.get("binds", []):
        if optional and not os.path.exists(target):
            continue
        _mount(["--bind", source, target])
    private = node.get("private_tmp")
    if private:  # a /tmp of its own, as every host has; the paths in "keep" (the lab's files) stay visible
        keep = [path for path in private.get("keep", []) if path.startswith("/tmp/")]
        for i, path in enumerate(keep):
            os.makedirs(f"/run/.keep/{i}")
            _mount(["--bind", path, f"/run/.keep/{i}"])
        _mount(["--bind", private["source"], "/tmp"])
        for i, path in enumerate(keep):
            os.makedirs(path, exist_ok=True)
            _mount(["--move", f"/run/.keep/{i}", path])
    services = {}
    for service in node.get("services", []):
        env = dict(os.environ, **service.get("env", {}))
        with open(service["log"], "ab") as log:
            child = subprocess.Popen(service["argv"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        services[child.pid] = service
    # PID 1 of the node: reap every child and orphan; SIGTERM ends the node (the kernel kills the rest).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(os.path.join(os.path.dirname(path), "ready"), "w") as handle:
        handle.write(str(os.getpid()))
    while True:
        try:
            pid, status = os.wait()
            if pid in services:  # a service that exits is worth knowing at once (the lab fails fast on it)
                with open(services.pop(pid)["log"].rsplit(".", 1)[0] + ".exited", "w") as handle:
                    handle.write(f"{os.waitstatus_to_exitcode(status)}\n")
        except ChildProcessError:  # no child right now: an orphan may still be reparented to us
            time.sleep(0.2)


if __name__ == "__main__":
    main(sys.argv[1])
