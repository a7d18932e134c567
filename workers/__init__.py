"""The runtime worker. It shares only the message contract (`app.contract`) with the API.

A job's journey through it:
- `__main__`: the command line, built from `config.WorkerConfig` (every setting a flag and a
  `BERTH_WORKER_*` variable).
- `process`: signals, the direct control endpoint (its address from `ec2_metadata` on EC2), one
  `Worker` per registration; `lifetime`: one process per data directory, dying with its parent.
- `registration`: the saved registration (`runtime.json`), registering, registering again.
- `worker`: heartbeats, receiving from the job and control queues (`transport`), stopping well.
- `job_run`: claim, open the job's secrets (`sealed`), execute (`executors`), keep the lease and
  the message's visibility, the final event, release.
- `executors`: what runs a job (`registry`: job types, control actions and the host's facts;
  `base.WorkerHost`: the package cache and model host the process builds once and lends to every
  job as `ctx.host`); `sandbox`, `packages`, `models`, `ssh`: what those executors run.
- `spool` and `event_sender`: a job's events, durable on disk until the API has them, and their
  delivery, each claim on its own.
- `control` and `control_server`: control requests from the queue and the endpoint, one answer
  (or, on the endpoint's `/control/stream`, an answer streamed as it arrives).
- `api_client`, `transport`, `mailbox`: the runtime API, the queues, a received message.
- `retry`, `concurrency`: the one retry helper; small asyncio pieces.
"""
