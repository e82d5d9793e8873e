"""Who is who on the platform under test: masters, the leader, workers, tasks; where each node's commands run.

``for_settings`` builds the platform an experiment's configuration describes; ``from_reference`` rebuilds it from the
small reference stored in every ledger record, so heal and self-expiry work in another process. A reference never
holds a secret: a platform rebuilt in another process (heal, the reaper) authenticates with a key file or an SSH
agent, not with the secrets of the run that injected the fault.
"""

from typing import Any, Dict, Optional

from ..config import Settings
from ..errors import ConfigurationError
from .base import Platform

__all__ = ["Platform", "for_settings", "from_reference"]


def for_settings(settings: Settings, secrets: Optional[Dict[str, Any]] = None) -> Platform:
    platform = _for_settings(settings, secrets)
    platform.concurrency = settings.concurrency  # how many hosts a fault talks to at once (recorded with the fault)
    return platform


def _for_settings(settings: Settings, secrets: Optional[Dict[str, Any]] = None) -> Platform:
    if settings.platform == "testbed":
        from .testbed import TestbedPlatform

        return TestbedPlatform(settings.cluster, settings.home)
    if settings.platform == "hosts":
        from .hosts import HostsPlatform

        return HostsPlatform(settings.hosts or {}, settings.prometheus_base_url, secrets, settings.poll_interval)
    if settings.platform == "kubernetes":
        from .kubernetes import KubernetesPlatform

        return KubernetesPlatform(settings.kubernetes or {}, settings.prometheus_base_url, secrets,
                                  settings.poll_interval)
    raise ConfigurationError(f"unsupported platform {settings.platform!r}")


def from_reference(reference: Dict[str, Any]) -> Platform:
    kind = reference.get("platform")
    if kind == "testbed":
        from .testbed import TestbedPlatform

        return TestbedPlatform(reference["cluster"], reference["home"], must_exist=False)
    if kind == "hosts":
        from .hosts import HostsPlatform

        from ..context import _SECRETS  # a rollback of the same run has the run's secrets; heal and reapers do not

        return HostsPlatform(reference["hosts"], reference.get("prometheus_base_url", ""), secrets=_SECRETS.get())
    if kind == "kubernetes":
        from .kubernetes import KubernetesPlatform

        from ..context import _SECRETS  # the secrets of the activity running now, if any (a rollback's)

        return KubernetesPlatform(reference["kubernetes"], reference.get("prometheus_base_url", ""),
                                  secrets=_SECRETS.get(), client=reference.get("client"))
    raise ConfigurationError(f"unsupported platform reference {reference!r}")
