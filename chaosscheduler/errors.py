"""Exceptions raised inside chaosscheduler.

Activities convert them to :class:`chaoslib.exceptions.ActivityFailed` at the boundary, keeping the message:
chaoslib keeps only the first line of an exception, so every message here is one complete, actionable line.
"""

__all__ = ["ChaosSchedulerError", "ConfigurationError", "TestbedError", "FaultError", "LedgerError"]


class ChaosSchedulerError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigurationError(ChaosSchedulerError, ValueError):
    """An argument or a configuration value is not acceptable; nothing was done."""


class TestbedError(ChaosSchedulerError):
    """The embedded cluster could not be started, inspected or stopped."""

    __test__ = False  # not a pytest test class


class FaultError(ChaosSchedulerError):
    """A fault could not be injected or undone."""


class LedgerError(ChaosSchedulerError):
    """The fault ledger is unreadable, corrupt or locked."""
