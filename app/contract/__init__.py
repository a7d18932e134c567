"""The worker contract: `messages` (queue messages and runtime HTTP bodies), `policy` (the sandbox
policy), `signing` (proxy tokens and signed control requests) and `ssh` (the infra SSH documents
and the payloads and results of SSH jobs)."""
