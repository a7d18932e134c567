"""One module per group of verbs, each with its own `app` (a Typer); `berth_cli.app` mounts them."""
