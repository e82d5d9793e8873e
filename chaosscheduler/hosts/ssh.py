"""Run argv lists on a remote host over SSH (asyncssh, on one event-loop thread of this process).

Every command is an argv list; it becomes one command line only here, at the SSH boundary, with ``shlex.join``
quoting each element for the remote POSIX shell, so no element is ever interpreted by it. Privileged commands get
``sudo -n --`` in front when the account is not root (``ssh.sudo: true``).

Why asyncssh (measured, see docs/performance.md "SSH layer"): a fault over many hosts opens and authenticates every
connection first, then sends the commands together. asyncssh does both for hundreds of hosts on one event loop at
about a third of paramiko's CPU per host (paramiko needs a thread and its own packetizer per host), it takes an
already-connected socket (``sock=``, how we reach hosts inside network namespaces), verifies host keys against
known_hosts, and reads keys from a secret's text. Our activities stay synchronous: :meth:`SSHHost.run` hands the
coroutine to the loop thread and waits for its answer, so any thread (a fan-out worker, a chaos background activity)
may call it. One connection per host is kept for the life of the process and reused by every command (a command
costs one channel, a few ms).

Self-expiry on the remote host: :meth:`SSHHost.expire_later` starts a detached timer *on the host*
(``setsid -f sh -c 'sleep N; exec ARGV'``, its script constant and every value passed as a positional parameter),
which undoes the fault at its deadline even if this process, its reaper and the SSH connection are all gone.
"""

import asyncio
import concurrent.futures
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
# the timer says its PID (its process group: setsid made it the leader) before it lets go of the SSH channel
_TIMER_SCRIPT = 'echo "$$"; exec </dev/null >/dev/null 2>&1; sleep "$1"; shift; exec "$@"'
DISARM_MARGIN = 2.0  # seconds: a timer is stopped by its recorded process group only this long before its end
_MARKER = re.compile(r"^[a-z0-9-]{1,64}$")


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


# ---------------------------------------------------------------------------------------------------- the loop
class _Loop:
    """One asyncio loop on a daemon thread, and the connections it holds (key -> SSHClientConnection). A forked
    child (its pid differs) starts a loop of its own and never touches its parent's connections."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = -1
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.connections: Dict[Tuple[Any, ...], Any] = {}
        self.connecting: Dict[Tuple[Any, ...], asyncio.Lock] = {}

    def get(self) -> asyncio.AbstractEventLoop:
        with self.lock:
            if self.loop is None or self.pid != os.getpid():
                self.pid = os.getpid()
                self.loop = asyncio.new_event_loop()
                self.connections, self.connecting = {}, {}
                threading.Thread(target=self.loop.run_forever, name="chaosscheduler-ssh", daemon=True).start()
            return self.loop

    def call(self, coroutine: Any, timeout: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.get())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError from None


_LOOP = _Loop()


def _quiet_asyncssh() -> None:
    """asyncssh logs every connection and channel at INFO; keep its records out of chaostoolkit.log unless asked."""
    log = logging.getLogger("asyncssh")
    if log.level == logging.NOTSET:
        log.setLevel(logging.WARNING)


def _load_key(text: str) -> Any:
    import asyncssh

    try:
        return asyncssh.import_private_key(text)
    except (asyncssh.KeyImportError, ValueError):  # never log the text itself
        raise ConfigurationError("the SSH key secret is not an unencrypted OpenSSH or PEM private key "
                                 "(Ed25519, ECDSA or RSA)") from None


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

    def _options(self) -> Dict[str, Any]:
        """asyncssh connect options; secrets resolved here, in the caller's thread (errors name the secret)."""
        import asyncssh

        s = self.ssh
        pkey_text = self._secret(s.get("key_secret"))
        keys: List[Any] = []
        if pkey_text:
            keys.append(_load_key(pkey_text))
        if s.get("key_file"):
            keys.append(os.path.expanduser(s["key_file"]))
        known_file = os.path.expanduser(s["known_hosts"]) if s.get("known_hosts") else \
            os.path.expanduser("~/.ssh/known_hosts")
        known: Any = known_file
        if not s.get("strict_host_keys", True):
            # like a "warn" policy: a key we know must match; an unknown host is accepted with a warning
            entries: Any = ([], [], [])
            if os.path.exists(known_file):
                entries = asyncssh.match_known_hosts(asyncssh.read_known_hosts(known_file), self.host, self.host,
                                                     s["port"])
            if entries[0] or entries[1] or entries[2]:
                known = entries
            else:
                logger.warning("%s: host key not in %s; accepted without verification (strict_host_keys is "
                               "false)", self.name, known_file)
                known = None
        elif not os.path.exists(known_file):
            known = ([], [], [])  # nothing known: every host key is refused, with a clear error below
        options = dict(username=s["user"], known_hosts=known, connect_timeout=s["timeout"],
                       login_timeout=s["timeout"], keepalive_interval=5, config=None,
                       password=self._secret(s.get("password_secret")))
        if keys:  # the configured key only; without one: the SSH agent and ~/.ssh's keys, as ssh itself does
            options.update(client_keys=keys, agent_path=None)
        return options

    async def _connection(self, options: Dict[str, Any]) -> Any:
        key = self._key()
        conn = _LOOP.connections.get(key)
        if conn is not None and not conn.is_closed():
            return conn
        lock = _LOOP.connecting.setdefault(key, asyncio.Lock())
        async with lock:  # concurrent commands for one host share one connection
            conn = _LOOP.connections.get(key)
            if conn is not None and not conn.is_closed():
                return conn
            conn = await self._open(options)
            _LOOP.connections[key] = conn
            return conn

    async def _open(self, options: Dict[str, Any]) -> Any:
        import asyncssh

        from ..metrics.transport import TransportError, connect

        _quiet_asyncssh()
        timeout = self.ssh["timeout"]
        try:  # the socket is opened in the connecting namespace (a short thread that enters it)
            sock = await asyncio.get_running_loop().run_in_executor(
                None, lambda: connect(self.host, self.ssh["port"], timeout, self.netns))
        except TransportError as e:
            raise CommandError([], f"{self.name}: {e}") from None
        sock.setblocking(False)
        try:
            return await asyncio.wait_for(asyncssh.connect(self.host, self.ssh["port"], sock=sock, **options),
                                          timeout * 2)
        except asyncssh.HostKeyNotVerifiable as e:
            sock.close()
            raise CommandError([], f"{self.name}: host key not verified ({e.reason}): refusing to connect") from None
        except asyncssh.PermissionDenied as e:
            sock.close()
            raise CommandError([], f"{self.name}: SSH authentication failed: {e.reason}") from None
        except (asyncssh.Error, OSError, asyncio.TimeoutError) as e:
            sock.close()
            raise CommandError([], f"{self.name}: SSH failed: {str(e) or type(e).__name__}") from None

    def connect(self) -> None:
        """Open and authenticate the connection now (a fan-out does this for every host before its first command);
        raises CommandError naming the host when it cannot."""
        options = self._options()
        try:
            _LOOP.call(self._connection(options), self.ssh["timeout"] * 3 + 5)
        except TimeoutError:
            raise CommandError([], f"{self.name}: no SSH connection within {self.ssh['timeout'] * 3 + 5} s") from None

    def close(self) -> None:
        conn = _LOOP.connections.pop(self._key(), None) if _LOOP.pid == os.getpid() else None
        if conn is not None:
            _LOOP.get().call_soon_threadsafe(conn.close)

    # ------------------------------------------------------------------ commands
    async def _run(self, options: Dict[str, Any], line: str, input: Optional[str], timeout: float) -> Any:
        import asyncssh

        for attempt in (1, 2):  # one reconnect: a cached connection may have died since its last use
            conn = await self._connection(options)
            try:
                return await conn.run(line, input=input, timeout=timeout, check=False, errors="replace")
            except asyncssh.TimeoutError:
                raise
            except (asyncssh.ChannelOpenError, asyncssh.ConnectionLost, asyncssh.DisconnectError, OSError) as e:
                if _LOOP.connections.get(self._key()) is conn:
                    del _LOOP.connections[self._key()]
                conn.close()
                if attempt == 2:
                    raise CommandError([], f"connection failed: {str(e) or type(e).__name__}") from None
        raise AssertionError("unreachable")

    def run(self, argv: Sequence[str], input: Optional[str] = None, timeout: float = 30.0,
            check: bool = True, privileged: bool = True) -> Result:
        """Run ``argv`` on the host; same contract as :meth:`LocalHost.run`. ``privileged`` commands get sudo when
        the account is not root and ``ssh.sudo`` is true. Safe to call from any thread."""
        import asyncssh

        line = command_line(argv, sudo=privileged and self.ssh["user"] != "root" and bool(self.ssh.get("sudo")))
        shown = " ".join(str(a) for a in argv)
        options = self._options()
        try:
            done = _LOOP.call(self._run(options, line, input, timeout), timeout + self.ssh["timeout"] * 3 + 5)
        except (asyncssh.TimeoutError, TimeoutError):
            raise CommandError(argv, f"{shown} on {self.name} did not finish within {timeout} s") from None
        except CommandError as e:
            raise CommandError(argv, f"{shown} on {self.name}: {e}" if not str(e).startswith(self.name)
                               else str(e)) from None
        code = done.returncode if done.returncode is not None else 255
        result = Result(code, done.stdout or "", done.stderr or "")
        if check and code != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise CommandError(argv, f"{shown} on {self.name} failed ({code}): "
                                     f"{detail[0] if detail else 'no output'}", code, result.stderr)
        return result

    # ------------------------------------------------------------------ remote self-expiry
    def expire_later(self, marker: str, seconds: float, argv: Sequence[str]) -> Dict[str, Any]:
        """Arm a timer on the host that runs ``argv`` in ``seconds``, independent of this process and connection.
        Returns ``{"pid": its process group on the host or None, "ends_after": our clock before it was armed +
        seconds}``: until then it is certainly still waiting, so :meth:`cancel_expiry` may stop it by that group."""
        sent = time.time()
        result = self.run(timer_argv(marker, seconds, argv), timeout=15)
        first = (result.stdout.strip().splitlines() or [""])[0]
        return {"pid": int(first) if first.isdigit() and int(first) > 1 else None,
                "ends_after": round(sent + seconds, 6)}

    def cancel_expiry(self, marker: str, timer: Optional[Dict[str, Any]] = None) -> bool:
        """Stop the timer ``marker`` if it is still waiting; True when one was stopped. With the ``timer`` that
        :meth:`expire_later` returned, well before its end: ``kill`` of its recorded process group (the timer's
        shell and its ``sleep``; nothing else can hold that group while the timer waits). Otherwise, or if that
        fails: ``pkill -f`` of its marker (which scans every process of the host)."""
        if not _MARKER.match(marker):
            raise ValueError(f"timer marker {marker!r} must be [a-z0-9-]")
        pid = (timer or {}).get("pid")
        if isinstance(pid, int) and pid > 1 and time.time() < float(timer.get("ends_after") or 0) - DISARM_MARGIN:
            if self.run(["kill", "-s", "TERM", "--", f"-{pid}"], timeout=15, check=False).returncode == 0:
                return True
        # "[c]haosscheduler-..." matches the timer's command line but not pkill's (nor sudo's) own
        name = EXPIRY_PREFIX + marker
        result = self.run(["pkill", "-f", "--", f"[{name[0]}]{name[1:]} "], timeout=15, check=False)
        return result.returncode == 0


def close_all() -> None:
    """Close every cached SSH connection of this process."""
    if _LOOP.loop is None or _LOOP.pid != os.getpid():
        return
    connections = list(_LOOP.connections.values())
    _LOOP.connections.clear()

    async def close() -> None:
        for conn in connections:
            conn.close()
        await asyncio.gather(*(conn.wait_closed() for conn in connections), return_exceptions=True)

    try:
        _LOOP.call(close(), 10)
    except TimeoutError:
        logger.warning("SSH connections still closing after 10 s")
