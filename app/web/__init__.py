"""What the routers share about HTTP: dependencies (`deps`), Server-Sent Events framing (`sse`)
and the request middleware (`middleware`). Routers import this, never each other."""
