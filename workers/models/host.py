"""What this runtime offers model jobs: where its model cache lives, the serving engines it can
start (with the command for each), the host directories a `mount_volume` install may use, and its
GPUs, handed out to engines one job at a time.

There is one per worker process, built from the worker's settings when it starts (`from_config`)
and kept in its `WorkerHost`: model jobs find it as `ctx.host.models`, and the control actions
that no running job owns (evicting a revision) are given it by the executor registry, because the
cache outlives any one job.
"""

import os
import shlex
from pathlib import Path

from workers.config import WorkerConfig


class NotEnoughGpus(Exception):
    pass


class GpuPool:
    """The GPUs this worker may give engines, by the id CUDA_VISIBLE_DEVICES uses for them.

    The worker's own CUDA_VISIBLE_DEVICES (a container given some of the host's GPUs) is the list;
    otherwise every GPU nvidia-smi reports, by index. Detected on first use: nvidia-smi is slow.
    """

    def __init__(self, ids: list[str] | None = None):
        self._ids = ids
        self._taken: set[str] = set()

    @property
    def ids(self) -> list[str]:
        if self._ids is None:
            self._ids = _visible_gpu_ids()
        return self._ids

    def take(self, count: int) -> list[str]:
        free = [gpu for gpu in self.ids if gpu not in self._taken]
        if len(free) < count:
            raise NotEnoughGpus(f"the engine needs {count} GPU(s); {len(free)} of this runtime's "
                                f"{len(self.ids)} are free")
        chosen = free[:count]
        self._taken.update(chosen)
        return chosen

    def give_back(self, ids: list[str]) -> None:
        self._taken.difference_update(ids)


def _visible_gpu_ids() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [gpu.strip() for gpu in visible.split(",") if gpu.strip() and gpu.strip() != "-1"]
    from workers.executors import registry  # not at module level: the registry asks us which engines run

    return [str(index) for index in range(len(registry.detect_gpus()))]


class ModelHost:
    def __init__(self, model_dir: Path, engine_commands: dict[str, list[str]],
                 volume_roots: tuple[Path, ...] = (), gpus: GpuPool | None = None):
        self.model_dir = model_dir
        self.engine_commands = engine_commands  # engine name -> the command its arguments follow
        self.volume_roots = volume_roots
        self.gpus = gpus or GpuPool()

    @classmethod
    def from_config(cls, config: WorkerConfig) -> "ModelHost":
        return cls(
            model_dir=config.data_dir / "models",
            engine_commands={"vllm": shlex.split(config.vllm_command)},
            volume_roots=tuple(root.resolve() for root in config.model_volume_roots),
        )

    @property
    def hub_cache(self) -> Path:
        """A Hugging Face cache (`models--org--name/{blobs,snapshots,refs}`), shared by all jobs."""
        return self.model_dir / "hub"

    @property
    def state_dir(self) -> Path:
        """The worker's own records about the cache: which snapshots were verified complete."""
        return self.model_dir / "state"
