"""Job executors, keyed by job type. A runtime advertises exactly the types registered here
that its host can run (see `available`)."""
