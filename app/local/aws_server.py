"""The local stack's stand-in for AWS: moto's server (DynamoDB, SQS, KMS) in a process of its own.

Run by LocalStack as `python -m app.local.aws_server --port N --state-dir DIR`. A process of its
own because moto handles each request in pure Python: sharing one interpreter lock with the API,
every AWS call waited for the API's threads and every API request for moto's (the dispatch
benchmark's p50 halved when it moved out; docs/decisions.md). KMS keys persist in DIR
(app.local.kms_state). It exits when stdin closes, so it never outlives the stack that started it.
"""

import argparse
import logging
import sys
import threading
from pathlib import Path

FORGET_INTERVAL_SECONDS = 5.0


def forget_tracked_instances() -> None:
    """moto records every model object it ever creates (for its dashboard): without this the
    process keeps every item of every transaction. Nothing reads those records."""
    from moto.core.base_backend import model_data

    for models in model_data.values():
        for model in models.values():
            model.instances_tracked.clear()  # type: ignore[attr-defined]  # moto's BaseModel metaclass sets it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True, help="where KMS keys are kept")
    parser.add_argument("--region", default="us-east-1")
    options = parser.parse_args()

    from moto.server import ThreadedMotoServer

    from app.local import kms_state, moto_fidelity

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per AWS call otherwise
    moto_fidelity.install()
    keys_file = options.state_dir / kms_state.STATE_FILE
    kms_state.restore(keys_file, options.region)
    kms_state.save_on_change(keys_file, options.region)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=options.port, verbose=False)
    server.start()
    stopped = threading.Event()

    def forget_periodically() -> None:
        while not stopped.wait(FORGET_INTERVAL_SECONDS):
            forget_tracked_instances()

    threading.Thread(target=forget_periodically, name="moto-tracking", daemon=True).start()
    sys.stdin.read()  # until the stack closes the pipe, or exits
    stopped.set()
    server.stop()


if __name__ == "__main__":
    main()
