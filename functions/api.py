"""Lambda entry point for both API surfaces: Mangum around the same FastAPI app.

Lifespan is off because Mangum would enter it on every invocation; nothing in the app needs it.
The garbage collector is paused while the app is built and the survivors are frozen: a cold
start allocates many long-lived objects, and collecting them is pure waste (docs/benchmarks.md).
If an import fails here the function cannot start at all, so nothing needs the GC back sooner.
"""

import gc
import logging

gc.disable()

from mangum import Mangum  # noqa: E402

from app.main import create_app  # noqa: E402

app = create_app()
handler = Mangum(app, lifespan="off")
# Mangum logs a line per request; berth's access log already has one, with more in it.
logging.getLogger("mangum.http").setLevel(logging.WARNING)

gc.enable()
gc.freeze()
