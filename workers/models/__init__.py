"""Models on a runtime: pulling Hugging Face snapshots into the runtime's cache (`pull`, `hub`,
`files`, `progress`), serving them with an engine (`engines`, `process`, `supervisor`), and the
state of each installation this worker runs (`installation`, `proxy`). The job executors and
control actions that use them are in `workers.executors.models`."""
