"""Leader from a command: the scheduler's own CLI (or a log) asked on each master's host, or once on a submit host.

Options are those of a command source (:mod:`chaosscheduler.platforms.commands`: ``argv``, ``on``, ``format``,
``fields``/``pattern``/``items``, ``timeout``, ``time_format``) plus:

* ``leads``: a rule a record must match to name a leader (default ``{"exit_status": "^0$"}``);
* ``leader_field``: the field naming the leader (default ``node``, the master the command ran on, when ``on`` is
  ``every-master``; else ``output`` for format ``text`` and ``leader`` otherwise), matched to a master by name, host
  or address, or through ``names``;
* ``since_field`` (default ``since``): the leader's own timestamp of its election, read with ``time_format``.

Two ways to use it:

* **each master says whether it leads** (``on: "every-master"``, the default): the command runs on every master's
  host; the masters whose record matches ``leads`` claim the lead. Slurm (a standby ``slurmctld`` answers ``scontrol
  ping`` as UP, so ask each controller's own log, guarded by its PID file)::

      {"source": "command", "argv": ["sh", "-c", "kill -0 \\"$(cat /run/slurmctld.pid)\\" && tac
       /var/log/slurm/slurmctld.log | grep -m 1 -E 'Running as primary controller|running in background mode'"],
       "format": "regex", "pattern": "^\\\\[(?P<since>[^\\\\]]+)\\\\] (?P<role>.*)$",
       "leads": {"role": "Running as primary controller"}}

* **one answer names the leader** (``on: "masters"``, ``"local"`` or a node): e.g. ``nomad server members`` with
  ``format: "fields"``, ``leads: {"leader": "true"}``, ``leader_field: "name"``.

Resolution: the poll interval plus one round of commands (every master is asked in turn in the first way).
"""

from typing import Any, Dict, List

from ...errors import ChaosSchedulerError, ConfigurationError
from .. import commands
from . import LeaderSource, match_master


def _fail(where: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"leader.{where.removeprefix('leader.')}: {message}")


class Source(LeaderSource):
    kind = "command"
    OPTIONS = {"argv": "required", "on": "every-master", "leads": None, "leader_field": None,
               "since_field": "since", "names": None, **{k: None for k in commands.SPEC_KEYS - {"argv", "on"}}}
    EXTRA = {"leads": None, "leader_field": None, "since_field": "since", "names": None}

    @classmethod
    def check(cls, options: Dict[str, Any]) -> Dict[str, Any]:
        cls.refuse_unknown(options)
        out = commands.check_source("leader", options, _fail, default_on="every-master", extra=cls.EXTRA)
        if out["on"] == "every-worker":
            raise _fail("on", "a leader is asked on the masters: use every-master, masters, local or a node name")
        out["leads"] = commands.check_rule("leader.leads", out["leads"], _fail, default_field="output") or \
            [{"exit_status": "^0$"}]
        if out["leader_field"] is None:
            out["leader_field"] = ("node" if out["on"] == "every-master" else
                                   "output" if out["format"] == "text" else "leader")
        for key in ("leader_field", "since_field"):
            if not isinstance(out[key], str) or not out[key]:
                raise _fail(key, f"must name a field, got {out[key]!r}")
        if out["names"] is not None and not isinstance(out["names"], dict):
            raise _fail("names", "must map the command's answers to master names")
        return dict(out, source="command")

    def read(self) -> Dict[str, Any]:
        runner = self.env.runner
        if runner is None:
            raise ChaosSchedulerError("leader source 'command' runs on the hosts platform only")
        o = self.options
        records = runner.records(o)
        if o["on"] != "every-master" and not records:
            raise ChaosSchedulerError(f"{o['argv'][0]}: no output names a leader")
        errors = [r["error"] for r in records if r.get("error")]
        if errors and len(errors) == len(records):
            raise ChaosSchedulerError(f"no master answered: {'; '.join(errors)}")
        claims: List[str] = []
        since: Dict[str, Any] = {}
        seen = set()
        for record in records:
            key = record.get("node")
            if o["on"] == "every-master":
                if key in seen:
                    continue  # the first record of each master speaks for it
                seen.add(key)
            if record.get("error") or not commands.matches(record, o["leads"]):
                continue
            name = match_master(record.get(o["leader_field"]), self.env.masters, o["names"])
            if name and name not in claims:
                claims.append(name)
                since[name] = commands.timestamp(record.get(o["since_field"]), o["time_format"])
        claims.sort()
        leader = claims[0] if len(claims) == 1 else None
        return {"leader": leader, "since": since.get(leader) if leader else None, "claims": claims,
                **({"errors": errors} if errors else {})}
