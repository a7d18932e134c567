"""Infra SSH documents shared by the API and the runtime: `hosts` (inventory entries, host key
pins, client key references, forwards), `actions` (typed parameters, the argv template and its
rendering), `inventory` (the YAML document) and `jobs` (payloads and results of `ssh.run` and
`ssh.forward`). Pure pydantic; nothing here connects anywhere."""
