"""The `berth` command line: a client of berth's HTTP API (`berth login`, `berth jobs ...`,
`berth sandboxes ...`), plus `berth up` (the local stack) and `berth worker` (a runtime worker).

It reaches berth over HTTP only; import-linter (pyproject.toml) keeps it from importing the
API's code, except `app.local` and `workers.__main__` for the two verbs that run them.
"""


def main() -> None:
    from berth_cli.app import cli

    cli(prog_name="berth")
