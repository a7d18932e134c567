"""The worker contract: `messages` (queue messages and runtime HTTP bodies), `policy` (the sandbox
policy), `signing` (proxy tokens and signed control requests), `sealing` (runtime keys and sealed
values), `ssh` (the infra SSH documents and the payloads and results of SSH jobs), `models` and
`packages` (model and MCP package jobs), `logs` (the one log format) and `aws` (the one boto3 client
configuration)."""
