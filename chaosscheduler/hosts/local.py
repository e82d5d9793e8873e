"""Run argv lists on this machine, optionally inside a named network namespace."""

import dataclasses
import subprocess
from typing import List, Optional, Sequence

from ..errors import ChaosSchedulerError

__all__ = ["CommandError", "Result", "LocalHost", "NetnsHost"]


class CommandError(ChaosSchedulerError):
    """A command exited non-zero, timed out or could not be started; the message holds its stderr."""

    def __init__(self, argv: Sequence[str], message: str, returncode: Optional[int] = None, stderr: str = ""):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(message)


@dataclasses.dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class LocalHost:
    """Commands on this machine, in the root network namespace."""

    name = "localhost"

    def prefix(self) -> List[str]:
        return []

    def run(self, argv: Sequence[str], input: Optional[str] = None, timeout: float = 30.0,
            check: bool = True) -> Result:
        full = self.prefix() + [str(a) for a in argv]
        try:
            proc = subprocess.run(full, input=input, capture_output=True, text=True, timeout=timeout,
                                  stdin=None if input is not None else subprocess.DEVNULL)
        except FileNotFoundError as e:
            raise CommandError(full, f"cannot run {full[0]!r} on {self.name}: not installed or not on PATH") from e
        except subprocess.TimeoutExpired as e:
            raise CommandError(full, f"{' '.join(full)} on {self.name} did not finish within {timeout} s") from e
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise CommandError(full, f"{' '.join(full)} on {self.name} failed ({proc.returncode}): "
                                     f"{detail[0] if detail else 'no output'}", proc.returncode, proc.stderr)
        return result

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class NetnsHost(LocalHost):
    """Commands inside the named network namespace (``ip netns exec NAME ...``)."""

    def __init__(self, netns: str):
        self.netns = netns
        self.name = f"netns {netns}"

    def prefix(self) -> List[str]:
        return ["ip", "netns", "exec", self.netns]
