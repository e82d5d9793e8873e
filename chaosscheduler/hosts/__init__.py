"""Where a command runs: this machine, one of its network namespaces, a remote host over SSH (:mod:`.ssh`), and
many of them at once (:mod:`.fanout`).

Every command is an argv list. No host ever builds a shell string.
"""

from .local import CommandError, LocalHost, NetnsHost, Result

__all__ = ["CommandError", "LocalHost", "NetnsHost", "Result"]
