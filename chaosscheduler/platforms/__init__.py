"""Who is who on the platform under test: masters, the leader, workers, tasks; where each node's commands run.

``for_settings`` builds the platform an experiment's configuration describes; ``from_reference`` rebuilds it from the
small reference stored in every ledger record, so heal and self-expiry work in another process.
"""

from typing import Any, Dict

from ..config import Settings
from ..errors import ConfigurationError
from .base import Platform

__all__ = ["Platform", "for_settings", "from_reference"]


def for_settings(settings: Settings) -> Platform:
    if settings.platform == "testbed":
        from .testbed import TestbedPlatform

        return TestbedPlatform(settings.cluster, settings.home)
    raise ConfigurationError(f"unsupported platform {settings.platform!r}")


def from_reference(reference: Dict[str, Any]) -> Platform:
    kind = reference.get("platform")
    if kind == "testbed":
        from .testbed import TestbedPlatform

        return TestbedPlatform(reference["cluster"], reference["home"], must_exist=False)
    raise ConfigurationError(f"unsupported platform reference {reference!r}")
