"""The embedded cluster's etcd keys, shared by masters and workers."""

LEADER_KEY = "/cs/leader"          # the leader's name and election time, under its lease
TASKS = "/cs/tasks/"               # one JSON record per task (state, attempt, history), written by the leader only
WORKERS = "/cs/workers/"           # a worker's registration, under its heartbeat lease
STATUS = "/cs/worker-status/"      # alive/dead and the history of dead declarations, written by the leader
MAX_TASKS_PER_JOB = 100            # etcd's default limit of operations in one transaction is 128
