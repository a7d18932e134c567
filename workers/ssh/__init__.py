"""The runtime's SSH client for infra SSH jobs: `connection` (pinned host keys, the job's client
key), `command` (one command within a timeout and an output cap) and `forward` (a local port
forward and HTTP through it). The executors in `workers.executors.ssh` drive them."""
