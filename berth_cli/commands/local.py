"""`berth up` runs the local stack, `berth worker` a runtime worker. Both run berth's own code
in this process, so they import it, and only when run: every other verb speaks HTTP alone."""

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer()

DEFAULT_DATA_DIR = Path.home() / ".berth"


@app.command()
def up(
    port: Annotated[int, typer.Option(envvar="BERTH_PORT", help="API port")] = 7500,
    moto_port: Annotated[int, typer.Option(envvar="BERTH_MOTO_PORT", help="embedded AWS (moto) port")] = 7566,
    data_dir: Annotated[Path, typer.Option(envvar="BERTH_DATA_DIR", help="where local state lives")] = DEFAULT_DATA_DIR,
    fresh: Annotated[bool, typer.Option("--fresh", help="start with empty state")] = False,
    worker: Annotated[bool, typer.Option(help="start the local shared worker")] = True,
) -> None:
    """Start the local stack: embedded moto (DynamoDB, SQS, KMS), the API, the sweeper and a worker."""
    from rich.console import Console

    from app.local.stack import LocalStack, StackOptions

    console = Console()
    stack = LocalStack(StackOptions(data_dir=data_dir, port=port, moto_port=moto_port, fresh=fresh, worker=worker))
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    with console.status("starting the local stack..."):
        stack.start()
    console.print(f"[bold green]berth is up[/] on {stack.api_url}")
    console.print(f"  interactive API docs  {stack.api_url}/api-docs")
    console.print(f"  embedded AWS (moto)   {stack.moto_url}")
    console.print(f"  state                 {data_dir} ({stack.restored_items} items restored "
                  f"in {stack.restore_seconds:.2f} s)")
    if not stack.services.settings.require_email_verification:
        console.print("  email verification    waived (BERTH_REQUIRE_EMAIL_VERIFICATION=false): accounts may mint "
                      "keys and join tokens and run jobs before verifying; operator rights still need a verified "
                      "address")
    console.print("  sign up:  curl -s -XPOST " + stack.api_url +
                  "/v1/auth/signup -H 'content-type: application/json' "
                  "-d '{\"name\":\"Ada\",\"email\":\"ada@example.com\",\"password\":\"s3cret-pass\"}'")
    console.print("Ctrl-C stops it; state is kept for the next run.")
    stopping.wait()
    with console.status("stopping..."):
        stack.stop()
    console.print("stopped; state saved.")


# Every argument, `--help` included, goes to the worker's own parser.
@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False)
def worker(context: typer.Context) -> None:
    """Run a runtime worker: `berth worker --api URL --join-token TOKEN` (`berth worker --help` lists every setting)."""
    from workers.__main__ import main as worker_main

    raise typer.Exit(worker_main(context.args, prog="berth worker"))
