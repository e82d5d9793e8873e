"""Submit witness tasks with a command line the platform's users already run: an argv template executed on this
machine or, over SSH, on a submit host of the ``hosts`` platform. Example (Slurm)::

    {"type": "command", "on": "master-1",
     "argv": ["sbatch", "--parsable", "--requeue", "--output=/dev/null", "--job-name={task}", "--wrap", "{command}"],
     "job_id_regex": "^(\\\\d+)",
     "status_argv": ["sacct", "-n", "-P", "-X", "-j", "{job_ids}", "-o", "JobID,State,End,NodeList"],
     "status_regex": "^(?P<job>\\\\d+)\\\\|(?P<state>COMPLETED)\\\\|(?P<at>[^|]*)\\\\|(?P<host>.*)$",
     "cancel_argv": ["scancel", "{job_ids}"]}

Placeholders: ``{task}``, ``{duration}``, ``{duration_int}``, ``{command}`` (the task as one shell-quoted line),
``{argv}`` (the task as separate elements when it is a whole element), ``{evidence}``, ``{run}``; ``{job_id}`` /
``{job_ids}`` in the status and cancel templates. Outcome: exit 0 with a job id matched by ``job_id_regex`` in the
output is ``ok``; a timeout, an exit code in ``indeterminate_exit_codes`` (default 75, EX_TEMPFAIL) or an error
matching ``indeterminate_regex`` (default: "timed out") is ``info`` (it may have been accepted); any other failure
is ``fail``.
"""

import datetime
import math
import re
import shlex
import time
from typing import Any, Dict, List, Optional

from ...errors import ConfigurationError
from ...hosts import CommandError, LocalHost
from ..collectors import _run
from .base import Submitter, check_template, expand, result

__all__ = ["CommandSubmitter", "validate", "build"]

KEYS = {"type", "argv", "on", "job_id_regex", "timeout", "indeterminate_exit_codes", "indeterminate_regex",
        "status_argv", "status_regex", "cancel_argv", "batch"}


def _regex(key: str, value: Any, groups: tuple = ()) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"chaosscheduler_witness.submitter.{key} must be a regular expression, got {value!r}")
    try:
        compiled = re.compile(value, re.M)
    except re.error as e:
        raise ConfigurationError(f"chaosscheduler_witness.submitter.{key} is not a valid regular expression: {e}") \
            from None
    missing = [g for g in groups if g not in compiled.groupindex]
    if missing:
        raise ConfigurationError(f"chaosscheduler_witness.submitter.{key} needs the named group(s) "
                                 f"{', '.join(f'(?P<{g}>...)' for g in missing)}")
    if not groups and compiled.groups < 1:
        raise ConfigurationError(f"chaosscheduler_witness.submitter.{key} needs one group around the job id")
    return value


def validate(options: Dict[str, Any]) -> Dict[str, Any]:
    unknown = sorted(set(options) - KEYS)
    if unknown:
        raise ConfigurationError(f"unknown chaosscheduler_witness.submitter key(s) {', '.join(unknown)} for type "
                                 f"'command'; known: {', '.join(sorted(KEYS - {'type'}))}")
    out: Dict[str, Any] = {"type": "command",
                           "argv": check_template("argv", options.get("argv"), ["{command}|{argv}"]),
                           "on": options.get("on") or "local",
                           "job_id_regex": _regex("job_id_regex", options.get("job_id_regex", r"^\s*([A-Za-z0-9._-]+)")),
                           "indeterminate_regex": _regex("indeterminate_regex",
                                                         options.get("indeterminate_regex", r"(?i)(timed? ?out)")),
                           "status_argv": None, "status_regex": None, "cancel_argv": None}
    if not isinstance(out["on"], str):
        raise ConfigurationError(f"chaosscheduler_witness.submitter.on must be 'local' or a node name of the hosts "
                                 f"platform, got {out['on']!r}")
    timeout = options.get("timeout", 30.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0.1 <= timeout <= 600:
        raise ConfigurationError(f"chaosscheduler_witness.submitter.timeout must be 0.1-600 seconds, got {timeout!r}")
    out["timeout"] = float(timeout)
    codes = options.get("indeterminate_exit_codes", [75])
    if not isinstance(codes, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in codes):
        raise ConfigurationError(f"chaosscheduler_witness.submitter.indeterminate_exit_codes must be a list of exit "
                                 f"codes, got {codes!r}")
    out["indeterminate_exit_codes"] = codes
    if options.get("status_argv") is not None:
        out["status_argv"] = check_template("status_argv", options["status_argv"], ["{job_id}|{job_ids}"])
        out["status_regex"] = _regex("status_regex", options.get("status_regex", r"^(?P<job>\S+)\s+(?P<state>COMPLETED)"),
                                     ("job", "state"))
    if options.get("cancel_argv") is not None:
        out["cancel_argv"] = check_template("cancel_argv", options["cancel_argv"], ["{job_id}|{job_ids}"])
    batch = options.get("batch", 200)
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 10000:
        raise ConfigurationError(f"chaosscheduler_witness.submitter.batch must be 1-10000 job ids per status or "
                                 f"cancel call, got {batch!r}")
    out["batch"] = batch
    return out


def _when(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        return None


class CommandSubmitter(Submitter):
    kind = "command"

    def __init__(self, options: Dict[str, Any], host: Any, run_id: str = "", evidence: str = ""):
        self.options = options
        self.host = host
        self.values = {"run": run_id, "evidence": evidence}
        self.job_re = re.compile(options["job_id_regex"], re.M)
        self.indeterminate_re = re.compile(options["indeterminate_regex"], re.M)
        self.reports_completions = bool(options["status_argv"])

    def submit(self, task_id: str, argv: List[str], duration: float) -> Dict[str, Any]:
        started = time.monotonic()
        values = dict(self.values, task=task_id, duration=duration, duration_int=int(math.ceil(duration)),
                      command=shlex.join(argv), argv=list(argv))
        line = expand(self.options["argv"], values)
        try:
            done = _run(self.host, line, self.options["timeout"])
        except CommandError as e:
            # could not start (local: not installed -> refused) or SSH broke / timed out (sent? unknown)
            outcome = "fail" if e.returncode is None and "not installed" in str(e) else "info"
            return result(outcome, started, error=str(e))
        output = (done.stdout or "") + (done.stderr or "")
        if done.returncode == 0:
            found = self.job_re.search(done.stdout or "")
            if found:
                return result("ok", started, job_id=found.group(1))
            return result("info", started, error=f"exit 0 but no job id in the output: {output.strip()[:200]!r}")
        error = f"exit {done.returncode}: {output.strip()[:300]}"
        if done.returncode in self.options["indeterminate_exit_codes"] or self.indeterminate_re.search(output):
            return result("info", started, error=error)
        return result("fail", started, error=error)

    def _batches(self, jobs: Dict[str, str]) -> List[List[str]]:
        ids = sorted(set(jobs.values()))
        size = self.options["batch"]
        return [ids[i:i + size] for i in range(0, len(ids), size)]

    def _run_for(self, template: List[str], ids: List[str]) -> List[Any]:
        if any("{job_id}" in item for item in template):
            return [_run(self.host, expand(template, dict(self.values, job_id=i)), self.options["timeout"])
                    for i in ids]
        return [_run(self.host, expand(template, dict(self.values, job_ids=ids)), self.options["timeout"])]

    def completions(self, jobs: Dict[str, str]) -> List[Dict[str, Any]]:
        if not self.options["status_argv"] or not jobs:
            return []
        by_job = {job: task for task, job in jobs.items()}
        pattern = re.compile(self.options["status_regex"], re.M)
        out = []
        for batch in self._batches(jobs):
            for done in self._run_for(self.options["status_argv"], batch):
                for found in pattern.finditer(done.stdout or ""):
                    groups = found.groupdict()
                    task = by_job.get(groups["job"])
                    if task:
                        out.append({"task": task, "job_id": groups["job"], "at": _when(groups.get("at")),
                                    "host": groups.get("host") or None, "state": groups["state"]})
        return out

    def cleanup(self, jobs: Dict[str, str]) -> Dict[str, Any]:
        if not self.options["cancel_argv"] or not jobs:
            return {"cancelled": [], "errors": [], "supported": bool(self.options["cancel_argv"])}
        errors = []
        for batch in self._batches(jobs):
            try:
                for done in self._run_for(self.options["cancel_argv"], batch):
                    if done.returncode != 0:
                        errors.append((done.stderr or done.stdout).strip()[:200])
            except CommandError as e:
                errors.append(str(e))
        return {"cancelled": [], "requested": len(jobs), "errors": errors, "supported": True}

    def describe(self) -> Dict[str, Any]:
        return {"type": "command", "on": self.options["on"], "argv": self.options["argv"]}


def build(options: Dict[str, Any], platform: Any, context: Dict[str, Any]) -> CommandSubmitter:
    if options["on"] == "local":
        host: Any = LocalHost()
    else:
        try:
            host = platform.host(options["on"])
        except (NotImplementedError, KeyError) as e:
            raise ConfigurationError(f"chaosscheduler_witness.submitter.on names {options['on']!r}, which is not a "
                                     f"node this platform can run commands on: {e}") from None
    return CommandSubmitter(options, host, context.get("run_id", ""), context.get("evidence", ""))
