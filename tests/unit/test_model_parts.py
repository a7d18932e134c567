"""The pieces of model jobs that need no hub: the contract, the file selection, progress and its
throttle, GPU hand-out, engine availability, and engine processes outliving nothing."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.contract.messages import ControlMessage, JobType
from app.contract.models import (
    EngineRequest,
    InstallationStatus,
    ModelProgress,
    ModelPullPayload,
    ModelServePayload,
    ServingEngine,
    progress_for,
)
from tests.support.hub import demo_llama_files
from tests.support.model_jobs import FAKE_ENGINE, engine_pids
from tests.support.model_repos import ENGINE_FILES, sharded_llama_files
from workers.config import WorkerConfig
from workers.executors import registry
from workers.models import engines
from workers.models.files import RepoFile, select_engine_files
from workers.models.host import GpuPool, ModelHost, NotEnoughGpus
from workers.models.progress import ProgressThrottle


def repo(paths: list[str]) -> list[RepoFile]:
    return [RepoFile(path, 1, "0" * 40) for path in paths]


# --- the contract ----------------------------------------------------------------------------


def test_model_attach_is_a_job_type_and_model_actions_are_control_actions():
    assert JobType("model.attach") is JobType.model_attach
    for action in ("model.status", "model.proxy", "model.evict"):
        ControlMessage(request_id="r", workspace_id="w", job_id="j", action=action, deadline=1.0)


def test_a_pull_payload_names_its_source_for_its_install_mode():
    assert ModelPullPayload(model="org/name").revision == "main"
    with pytest.raises(ValidationError, match="pull_from_source needs `model`"):
        ModelPullPayload()
    with pytest.raises(ValidationError, match="mount_volume needs `local_path`"):
        ModelPullPayload(install_mode="mount_volume")
    with pytest.raises(ValidationError, match="absolute path"):
        ModelPullPayload(install_mode="mount_volume", local_path="models/llama")
    with pytest.raises(ValidationError, match="served by the API itself"):
        ModelPullPayload(install_mode="external_endpoint", model="org/name")
    with pytest.raises(ValidationError, match="engine"):
        ModelServePayload(model="org/name")
    assert ServingEngine.parse("vLLM") is ServingEngine.vllm


def test_the_token_is_revealed_only_in_the_message_payload():
    payload = ModelServePayload(model="org/name", token="hf_secret_value", engine={"served_model_name": "m"})

    assert "hf_secret_value" not in payload.model_dump_json() and "hf_secret_value" not in repr(payload)
    assert payload.message_payload()["token"] == "hf_secret_value"
    assert ModelServePayload.model_validate(payload.message_payload()) == payload


def test_progress_moves_through_the_installation_statuses():
    serving = [progress_for(status, fraction, serving=True) for status, fraction in [
        (InstallationStatus.queued, 0), (InstallationStatus.checking, 0), (InstallationStatus.downloading, 0),
        (InstallationStatus.downloading, 0.5), (InstallationStatus.downloading, 1), (InstallationStatus.verifying, 1),
        (InstallationStatus.attached, 0), (InstallationStatus.ready, 0)]]
    assert serving == [0, 0, 1, 45, 90, 94, 95, 100]
    assert progress_for(InstallationStatus.attached, serving=False) == 100
    with pytest.raises(ValueError):
        progress_for(InstallationStatus.failed, serving=True)
    assert ModelProgress.of_event({"step": "x"}) is None
    assert ModelProgress.of_event({"installation_status": "ready", "progress": 100}).progress == 100


def test_the_proxy_reaches_only_the_openai_routes():
    assert EngineRequest(method="POST", path="v1/chat/completions").path == "v1/chat/completions"
    for path in ("v1/load_lora_adapter", "metrics", "/v1/models", "v1/models/../sleep"):
        with pytest.raises(ValidationError, match="only v1/models"):
            EngineRequest(method="GET", path=path)


# --- which files an engine needs --------------------------------------------------------------


def test_an_engine_gets_safetensors_config_and_tokenizer_and_nothing_else():
    assert {f.path for f in select_engine_files(repo(list(sharded_llama_files(64))))} == ENGINE_FILES
    assert {f.path for f in select_engine_files(repo(list(demo_llama_files())))} == {
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}


def test_mistral_style_consolidated_weights_are_skipped_beside_transformers_shards():
    files = ["consolidated.safetensors", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
             "model.safetensors.index.json", "params.json", "config.json", "tokenizer.model.v3", "tekken.json"]
    assert {f.path for f in select_engine_files(repo(files))} == {
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json",
        "config.json"}


def test_a_repo_with_only_pytorch_weights_gets_its_bin_shards_and_index():
    files = ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin", "pytorch_model.bin.index.json",
             "training_args.bin", "config.json", "vocab.txt", "tf_model.h5"]
    assert {f.path for f in select_engine_files(repo(files))} == {
        "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin", "pytorch_model.bin.index.json",
        "config.json", "vocab.txt"}


def test_an_embedding_model_keeps_its_sentence_transformers_pooling_config():
    files = ["model.safetensors", "config.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json",
             "onnx/model.onnx", "openvino/openvino_model.xml"]
    assert {f.path for f in select_engine_files(repo(files))} == {
        "model.safetensors", "config.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json"}


# --- progress throttle, GPUs -------------------------------------------------------------------


def test_progress_events_come_at_most_twice_a_second_and_then_only_for_a_percent_or_after_five_seconds():
    throttle = ProgressThrottle(total=1000, now=0.0)

    assert throttle.due(500, 0.4) is False  # too soon
    assert throttle.due(500, 0.5) is True
    assert throttle.due(505, 1.5) is False  # less than 1 %
    assert throttle.due(505, 5.6) is True  # but it has been 5 s
    assert throttle.due(505, 20.0) is False  # nothing new
    assert throttle.due(600, 20.1) is True


def test_gpus_are_handed_out_once_and_given_back():
    pool = GpuPool(["GPU-a", "GPU-b", "GPU-c"])

    assert pool.take(2) == ["GPU-a", "GPU-b"]
    with pytest.raises(NotEnoughGpus, match=r"needs 2 GPU\(s\); 1 of this runtime's 3 are free"):
        pool.take(2)
    pool.give_back(["GPU-a"])
    assert pool.take(2) == ["GPU-a", "GPU-c"]


def test_the_workers_own_cuda_visible_devices_are_the_gpus_it_hands_out(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert GpuPool().ids == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert GpuPool().ids == []


# --- engines -----------------------------------------------------------------------------------


def test_a_runtime_advertises_only_the_engines_it_can_start(tmp_path):
    fake = [sys.executable, str(FAKE_ENGINE)]

    assert engines.available({"vllm": fake}) == {"vllm": True, "sglang": False}
    assert engines.available({"vllm": ["/nonexistent/vllm", "serve"]}) == {"vllm": False, "sglang": False}
    assert engines.available({"vllm": ["no-such-command-here", "serve"]})["vllm"] is False
    assert registry.detect_runtimes(ModelHost(tmp_path, {"vllm": fake}))["vllm"] is True
    assert registry.detect_runtimes(ModelHost(tmp_path, {"vllm": ["/nonexistent/vllm", "serve"]}))["vllm"] is False
    assert registry.detect_runtimes(None)["vllm"] is False


@pytest.mark.parametrize("exit_how", ["killed", "exits"])
def test_an_engine_does_not_outlive_its_worker(tmp_path, exit_how):
    marker = tmp_path / "engine-marker"
    script = (
        "import asyncio, sys\n"
        "from workers.models.process import EngineProcess\n"
        "async def main():\n"
        f"    engine = EngineProcess([sys.executable, '-c', 'import time; time.sleep(300)', '{marker}'], {{}})\n"
        "    await engine.start()\n"
        "    print(engine.pid, flush=True)\n"
        "    await asyncio.to_thread(sys.stdin.readline)  # then exit without stopping the engine\n"
        "asyncio.run(main())\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parents[2])
    engine_pid = int(worker.stdout.readline())
    assert eventually(lambda: engine_pid in engine_pids(marker))  # /proc shows it once its exec is done
    if exit_how == "killed":
        os.kill(worker.pid, signal.SIGKILL)  # no clean-up runs: only the kernel's parent-death signal
    else:
        worker.stdin.write("exit\n")
        worker.stdin.flush()
    worker.wait(timeout=30)

    assert eventually(lambda: engine_pid not in engine_pids(marker))


def eventually(condition, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_worker_settings_give_the_vllm_command_and_the_volumes_a_mount_may_use(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTH_WORKER_VLLM_COMMAND", "/opt/vllm/bin/vllm serve")
    monkeypatch.setenv("BERTH_WORKER_MODEL_VOLUME_ROOTS", json.dumps([str(tmp_path / "volumes")]))

    host = ModelHost.from_config(WorkerConfig(api_url="http://api", data_dir=tmp_path / "data"))

    assert host.engine_commands == {"vllm": ["/opt/vllm/bin/vllm", "serve"]}
    assert host.volume_roots == ((tmp_path / "volumes").resolve(),)
    assert host.hub_cache == tmp_path / "data" / "models" / "hub"
    monkeypatch.delenv("BERTH_WORKER_VLLM_COMMAND")
    monkeypatch.delenv("BERTH_WORKER_MODEL_VOLUME_ROOTS")
    defaults = WorkerConfig(api_url="http://api")
    assert (defaults.vllm_command, defaults.model_volume_roots) == ("vllm serve", [])
