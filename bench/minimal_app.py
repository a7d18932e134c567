"""The cold-start baseline: the smallest FastAPI + Mangum Lambda that answers `GET /v1/health`.

The route is a plain `def`, like berth's, so both pay the same first trip through the threadpool.
"""

from fastapi import FastAPI
from mangum import Mangum

app = FastAPI()


@app.get("/v1/health")
def health() -> dict:
    return {"status": "ok"}


handler = Mangum(app, lifespan="off")
