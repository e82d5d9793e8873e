"""chaosscheduler: Chaos Toolkit activities that prove a master/worker scheduling platform survives the loss of
its leader, a network partition and a lost worker."""

__version__ = "0.1.0"
