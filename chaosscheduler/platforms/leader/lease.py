"""Leader from a Kubernetes Lease (``coordination.k8s.io/v1``): the pod named by ``spec.holderIdentity``.

``{"source": "lease", "name": "scheduler-master", "namespace": "schedule-system"}``. client-go's leader election
writes ``<hostname>_<uuid>`` (a pod's hostname is its name), others write the pod name or its IP: the holder is
matched to a master pod by its name, by its IP, or by the text before the first ``_``; ``holder_regex`` (one group:
the pod name or IP) reads any other form. A lease past ``renewTime + leaseDurationSeconds`` (by the cluster's
clock, compared with ours) still names its holder: the scheduler decides when it expires, not us.

``since`` is ``spec.acquireTime``, the new holder's own timestamp of its election (the cluster's clock: probes use
it only with ``same_clock``). Resolution: the poll interval plus one request.

Built by the kubernetes platform (it owns the API client); not one of the hosts platform's sources.
"""

import datetime
import re
from typing import Any, Dict, List, Optional

from . import LeaderSource


def parse_time(text: Any) -> Optional[float]:
    """RFC 3339 (``2024-05-01T10:00:00.123456Z``, the API's MicroTime and Time) as a Unix timestamp."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.timestamp()


def holder_pod(holder: Any, masters: List[Dict[str, Any]], pattern: Optional[str] = None) -> Optional[str]:
    """The master pod a Lease's ``holderIdentity`` names, or None."""
    if not isinstance(holder, str) or not holder:
        return None
    candidates = [holder]
    if pattern:
        found = re.search(pattern, holder)
        candidates = [found.group(1)] if found and found.group(1) else []
    elif "_" in holder:
        candidates.append(holder.split("_", 1)[0])
    for candidate in candidates:
        for master in masters:
            if candidate in (master["name"], master.get("address")):
                return master["name"]
    return None


class Source(LeaderSource):
    kind = "lease"
    OPTIONS = {"name": "required", "namespace": "required", "holder_regex": None}

    def __init__(self, options: Dict[str, Any], env: Any, api: Any):
        super().__init__(options, env)
        self.api = api

    def read(self) -> Dict[str, Any]:
        o = self.options
        lease = self.api.lease(o["namespace"], o["name"])
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        leader = holder_pod(holder, self.env.masters, o["holder_regex"])
        errors = []
        if holder and leader is None:  # a deleted pod (the one just killed) or an identity in another form
            names = ", ".join(m["name"] for m in self.env.masters) or "none"
            errors.append(f"lease {o['namespace']}/{o['name']} is held by {holder!r}, none of the running master "
                          f"pods ({names}): the holder is gone, or set leader.holder_regex in "
                          f"chaosscheduler_kubernetes if the identity holds the pod name in another form")
        return {"leader": leader, "since": parse_time(spec.get("acquireTime")) if leader else None,
                "holder": holder, "transitions": spec.get("leaseTransitions"),
                "renewed_at": parse_time(spec.get("renewTime")), **({"errors": errors} if errors else {})}
