"""The worker contract: `messages` (queue messages and runtime HTTP bodies), `policy` (the sandbox
policy) and `signing` (proxy tokens and signed control requests)."""
