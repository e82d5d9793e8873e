"""Where answers about a platform come from when it is not the embedded cluster: Prometheus (PromQL), and the
connections (plain, or opened inside a network namespace of this machine) that SSH, HTTP leader sources and
Prometheus share."""
