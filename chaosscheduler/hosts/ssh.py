"""Run argv lists on a remote host over SSH (paramiko).

Every command is an argv list; it becomes one command line only here, at the SSH boundary, with ``shlex.join``
quoting each element for the remote POSIX shell, so no element is ever interpreted by it. Privileged commands get
``sudo -n --`` in front when the account is not root (``ssh.sudo: true``).

Why paramiko (not asyncssh): our activities are synchronous and short; paramiko is synchronous, needs no event loop
inside ``chaos``, takes an already-connected socket (``sock=``, which is how we reach hosts inside network
namespaces) and is the SSH library of Ansible and Fabric. One transport per host is kept for the life of the
process and reused by every command (a command costs one channel, a few ms).

Self-expiry on the remote host: :meth:`SSHHost.expire_later` starts a detached timer *on the host*
(``setsid -f sh -c 'sleep N; exec ARGV'``, its script constant and every value passed as a positional parameter),
which undoes the fault at its deadline even if this process, its reaper and the SSH connection are all gone.
"""

import io
import logging
import os
import re
import shlex
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import ConfigurationError
from .local import CommandError, Result

__all__ = ["SSHHost", "close_all", "command_line", "timer_argv", "EXPIRY_PREFIX"]

logger = logging.getLogger("chaostoolkit")

EXPIRY_PREFIX = "chaosscheduler-expire-"
_TIMER_SCRIPT = 'exec </dev/null >/dev/null 2>&1; sleep "$1"; shift; exec "$@"'
_MARKER = re.compile(r"^[a-z0-9-]{1,64}$")
_clients: Dict[Tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


def command_line(argv: Sequence[str], sudo: bool = False) -> str:
    """The remote command line for ``argv``: every element quoted for a POSIX shell."""
    items = [str(a) for a in argv]
    if not items:
        raise ValueError("an empty argv cannot be run")
    if any("\0" in a for a in items):
        raise ValueError("argv elements cannot hold NUL bytes")
    return shlex.join((["sudo", "-n", "--"] if sudo else []) + items)


def timer_argv(marker: str, seconds: float, argv: Sequence[str]) -> List[str]:
    """A detached remote timer that runs ``argv`` after ``seconds``; ``marker`` (its ``$0``) names it for cancel."""
    if not _MARKER.match(marker):
        raise ValueError(f"timer marker {marker!r} must be [a-z0-9-]")
    return ["setsid", "-f", "sh", "-c", _TIMER_SCRIPT, EXPIRY_PREFIX + marker, f"{max(0.0, seconds):.3f}"] + \
        [str(a) for a in argv]


def _load_key(text: str) -> Any:
    import paramiko

    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except Exception:  # a key of another type: try the next (never log the text itself)
            continue
    raise ConfigurationError("the SSH key secret is not an unencrypted Ed25519, ECDSA or RSA private key")


class SSHHost:
    """Commands on one remote host. ``ssh`` is the node's normalised ssh settings; ``secrets`` the activity's
    secrets (the key or password is read from them by name, never stored or logged)."""

    def __init__(self, host: str, ssh: Dict[str, Any], netns: Optional[str] = None,
                 secrets: Optional[Dict[str, Any]] = None, node: str = ""):
        self.host = host
        self.ssh = ssh
        self.netns = netns
        self.node = node or host
        self._secrets = secrets or {}
        self.name = f"ssh {ssh['user']}@{host}:{ssh['port']}"

    def __repr__(self) -> str:
        return f"SSHHost({self.name!r})"

    # ------------------------------------------------------------------ connection
    def _secret(self, name: Optional[str]) -> Optional[str]:
        if not name:
            return None
        value = self._secrets.get(name)
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"SSH secret {name!r} is not among this activity's secrets (declare it in the "
                                     f"experiment's secrets and list its scope in the provider's 'secrets')")
        return value

    def _key(self) -> Tuple[Any, ...]:
        s = self.ssh
        return (self.host, s["port"], s["user"], self.netns, s.get("key_file"), s.get("key_secret"),
                s.get("password_secret"), s.get("known_hosts"), s.get("strict_host_keys"))

    def _client(self) -> Any:
        key = self._key()
        with _clients_lock:
            client = _clients.get(key)
            if client is not None and client.get_transport() is not None and client.get_transport().is_active():
                return client
            if client is not None:
                client.close()
            client = self._connect()
            _clients[key] = client
            return client

    def _connect(self) -> Any:
        try:
            import paramiko
        except ImportError:
            raise ConfigurationError("the hosts platform needs paramiko: pip install 'chaosscheduler[ssh]'") from None

        from ..metrics.transport import TransportError, connect

        s = self.ssh
        client = paramiko.SSHClient()
        if s.get("known_hosts"):
            client.load_host_keys(os.path.expanduser(s["known_hosts"]))
        else:
            client.load_system_host_keys()
        client.set_missing_host_key_policy(paramiko.RejectPolicy() if s.get("strict_host_keys", True)
                                           else paramiko.WarningPolicy())
        try:
            sock = connect(self.host, s["port"], s["timeout"], self.netns)
        except TransportError as e:
            raise CommandError([], f"{self.name}: {e}") from e
        pkey_text = self._secret(s.get("key_secret"))
        try:
            client.connect(self.host, port=s["port"], username=s["user"], sock=sock, timeout=s["timeout"],
                           banner_timeout=s["timeout"], auth_timeout=s["timeout"],
                           pkey=_load_key(pkey_text) if pkey_text else None,
                           key_filename=os.path.expanduser(s["key_file"]) if s.get("key_file") else None,
                           password=self._secret(s.get("password_secret")),
                           allow_agent=not (pkey_text or s.get("key_file")), look_for_keys=False)
        except paramiko.BadHostKeyException as e:
            sock.close()
            raise CommandError([], f"{self.name}: host key mismatch ({e.__class__.__name__}): refusing to connect") \
                from None
        except paramiko.SSHException as e:
            sock.close()
            raise CommandError([], f"{self.name}: SSH failed: {e}") from None
        except OSError as e:
            sock.close()
            raise CommandError([], f"{self.name}: {e}") from None
        client.get_transport().set_keepalive(5)
        return client

    def close(self) -> None:
        with _clients_lock:
            client = _clients.pop(self._key(), None)
        if client is not None:
            client.close()

    # ------------------------------------------------------------------ commands
    def run(self, argv: Sequence[str], input: Optional[str] = None, timeout: float = 30.0,
            check: bool = True, privileged: bool = True) -> Result:
        """Run ``argv`` on the host; same contract as :meth:`LocalHost.run`. ``privileged`` commands get sudo when
        the account is not root and ``ssh.sudo`` is true."""
        line = command_line(argv, sudo=privileged and self.ssh["user"] != "root" and bool(self.ssh.get("sudo")))
        shown = " ".join(str(a) for a in argv)
        for attempt in (1, 2):  # one reconnect: a cached transport may have died since its last use
            try:
                client = self._client()
                channel = client.get_transport().open_session(timeout=self.ssh["timeout"])
                break
            except CommandError:
                raise
            except Exception as e:
                self.close()
                if attempt == 2:
                    raise CommandError(argv, f"{shown} on {self.name}: cannot open a session: {e}") from None
        try:
            channel.exec_command(line)
            if input is not None:
                channel.sendall(input.encode())
            channel.shutdown_write()
            code, out, err = _collect(channel, timeout)
        except TimeoutError:
            channel.close()
            raise CommandError(argv, f"{shown} on {self.name} did not finish within {timeout} s") from None
        except Exception as e:
            channel.close()
            self.close()
            raise CommandError(argv, f"{shown} on {self.name}: connection failed: {e}") from None
        result = Result(code, out, err)
        if check and code != 0:
            detail = (err or out).strip().splitlines()
            raise CommandError(argv, f"{shown} on {self.name} failed ({code}): "
                                     f"{detail[0] if detail else 'no output'}", code, err)
        return result

    # ------------------------------------------------------------------ remote self-expiry
    def expire_later(self, marker: str, seconds: float, argv: Sequence[str]) -> None:
        """Arm a timer on the host that runs ``argv`` in ``seconds``, independent of this process and connection."""
        self.run(timer_argv(marker, seconds, argv), timeout=15)

    def cancel_expiry(self, marker: str) -> bool:
        """Stop the timer ``marker`` if it is still waiting; True when one was stopped."""
        if not _MARKER.match(marker):
            raise ValueError(f"timer marker {marker!r} must be [a-z0-9-]")
        # "[c]haosscheduler-..." matches the timer's command line but not pkill's (nor sudo's) own
        name = EXPIRY_PREFIX + marker
        result = self.run(["pkill", "-f", "--", f"[{name[0]}]{name[1:]} "], timeout=15, check=False)
        return result.returncode == 0


def _collect(channel: Any, timeout: float) -> Tuple[int, str, str]:
    deadline = time.monotonic() + timeout
    out: List[bytes] = []
    err: List[bytes] = []
    pause = 0.0005
    while True:
        busy = False
        if channel.recv_ready():
            out.append(channel.recv(65536))
            busy = True
        if channel.recv_stderr_ready():
            err.append(channel.recv_stderr(65536))
            busy = True
        if not busy:
            if channel.exit_status_ready() and (channel.eof_received or channel.closed):
                break
            if time.monotonic() > deadline:
                raise TimeoutError
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        else:
            pause = 0.0005
    code = channel.recv_exit_status()
    channel.close()
    return code, b"".join(out).decode(errors="replace"), b"".join(err).decode(errors="replace")


def close_all() -> None:
    """Close every cached SSH connection of this process."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()
