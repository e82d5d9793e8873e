"""A scheduler client written in Python, for the witness's ``python`` submitter tests: it "accepts" jobs into a list
(or refuses, or times out, as told by the options)."""

ACCEPTED = []


def submit(task_id, argv, command, duration, options):
    mode = options.get("mode", "ok")
    if mode == "timeout":
        raise TimeoutError("the scheduler did not answer")
    if mode == "refuse":
        raise RuntimeError("queue closed")
    ACCEPTED.append((task_id, argv, command, duration))
    return f"job-{len(ACCEPTED)}"


def completions(jobs, options):
    return [{"task": task, "at": 1.0, "host": "n1"} for task in jobs]
