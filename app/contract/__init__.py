"""The worker contract: `messages` (queue messages and runtime HTTP bodies), `policy` (the sandbox
policy), `signing` (proxy tokens and signed control requests), `logs` (the one log format) and
`aws` (the one boto3 client configuration)."""
