"""model.inspect against a real local hub: huggingface_hub itself does the HTTP, nothing is mocked."""

import asyncio
import json
import math
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import GatedRepoError

from tests.support.hub import (
    DEMO_BERT,
    DEMO_DIFFUSION,
    DEMO_GATED,
    DEMO_LLAMA,
    GRANTED_TOKEN,
    LLAMA_TENSORS,
    LocalHub,
    demo_llama_files,
    make_demo_hub,
)
from workers.executors.base import ExecutorError, JobContext
from workers.executors.model_inspect import EXECUTOR, JOB_TYPE, inspect_model


@pytest.fixture(scope="module")
def hub():
    with make_demo_hub() as hub:
        yield hub


@pytest.fixture(autouse=True)
def hub_environment(hub, monkeypatch, tmp_path):
    for name, value in hub.environment().items():
        monkeypatch.setenv(name, value)
    # huggingface_hub read HF_HUB_DISABLE_XET when first imported; the variable alone may come too late.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    # No ambient credentials: each test decides which token, if any, is sent.
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


def _job(payload: dict, events: list) -> JobContext:
    async def emit(step, status, message="", data=None):
        events.append((step, status, message, data))

    return JobContext(
        job_id="job-1",
        workspace_id="ws-1",
        job_type=JOB_TYPE,
        payload=payload,
        expires_at=0.0,
        emit=emit,
        work_dir="/nonexistent",
    )


# --- inspect_model ---------------------------------------------------------------------------


def test_llama_profile_matches_the_hub(hub):
    profile = inspect_model(DEMO_LLAMA, endpoint=hub.url)

    files = demo_llama_files()
    assert profile["model"] == DEMO_LLAMA
    assert profile["revision"] == hub.head_sha(DEMO_LLAMA)
    assert profile["architecture"] == "LlamaForCausalLM"
    assert profile["model_type"] == "llama"
    assert profile["parameter_count"] == sum(math.prod(shape) for shape in LLAMA_TENSORS.values())
    assert profile["files"] == [{"path": path, "size": len(content)} for path, content in sorted(files.items())]
    assert profile["total_bytes"] == sum(len(content) for content in files.values())
    assert profile["license"] == "apache-2.0"
    assert (profile["gated"], profile["gated_mode"]) == (False, None)
    assert profile["task"] == "text-generation"
    assert profile["library"] == "transformers"
    assert {"transformers", "safetensors", "llama", "conversational"} <= set(profile["tags"])
    assert profile["vllm"] == {"servable": True, "reason": "vLLM serves the LlamaForCausalLM architecture"}
    json.dumps(profile)  # the result is stored on the job as JSON


def test_revision_pins_an_earlier_commit(hub):
    first = hub.add_model("berth-test/pinned", {"config.json": b'{"model_type": "llama"}', "model.bin": b"v1"})
    second = hub.add_model("berth-test/pinned", {"config.json": b'{"model_type": "gpt2"}', "model.bin": b"v2-longer"})

    pinned = inspect_model("berth-test/pinned", first, endpoint=hub.url)
    latest = inspect_model("berth-test/pinned", endpoint=hub.url)

    assert (pinned["revision"], pinned["model_type"], pinned["total_bytes"]) == (first, "llama", 25)
    assert (latest["revision"], latest["model_type"], latest["total_bytes"]) == (second, "gpt2", 31)
    # A config with only a model_type is judged by it.
    assert pinned["vllm"]["servable"] is True


def test_endpoint_defaults_to_HF_ENDPOINT_read_at_call_time(hub):
    assert inspect_model(DEMO_LLAMA)["revision"] == hub.head_sha(DEMO_LLAMA)


def test_unknown_model(hub):
    with pytest.raises(ExecutorError, match="model berth-demo/missing not found"):
        inspect_model("berth-demo/missing", endpoint=hub.url)


def test_unknown_revision(hub):
    with pytest.raises(ExecutorError, match="revision 'v9' not found for model berth-demo/tiny-llama"):
        inspect_model(DEMO_LLAMA, "v9", endpoint=hub.url)


def test_malformed_model_id(hub):
    with pytest.raises(ExecutorError, match="not a valid model id"):
        inspect_model("a/b/c", endpoint=hub.url)


def test_unreachable_hub():
    with LocalHub() as stopped_hub:
        url = stopped_hub.url
    with pytest.raises(ExecutorError, match="model hub unreachable"):
        inspect_model(DEMO_LLAMA, endpoint=url)


def test_gated_repo_previews_from_public_metadata(hub):
    profile = inspect_model(DEMO_GATED, endpoint=hub.url)

    assert (profile["gated"], profile["gated_mode"]) == (True, "manual")
    assert profile["license"] == "llama3.1"
    assert profile["architecture"] == "LlamaForCausalLM"
    assert profile["revision"] == hub.head_sha(DEMO_GATED)
    assert profile["vllm"]["servable"] is True


def test_gated_repo_files_need_a_granted_token(hub, tmp_path):
    download = dict(repo_id=DEMO_GATED, filename="config.json", endpoint=hub.url, cache_dir=tmp_path)

    with pytest.raises(GatedRepoError) as anonymous:
        hf_hub_download(**download, token=False)
    with pytest.raises(GatedRepoError) as not_granted:
        hf_hub_download(**download, token="hf_someone_else")
    path = hf_hub_download(**download, token=GRANTED_TOKEN)

    assert anonymous.value.response.status_code == 401
    assert not_granted.value.response.status_code == 403
    assert open(path, "rb").read() == demo_llama_files()["config.json"]


@pytest.mark.parametrize(
    ("repo_id", "architecture", "reason"),
    [
        (DEMO_BERT, "BertForMaskedLM", "vLLM does not serve the BertForMaskedLM architecture"),
        (DEMO_DIFFUSION, "StableDiffusionPipeline", "vLLM does not serve the StableDiffusionPipeline architecture"),
    ],
)
def test_unservable_architectures(hub, repo_id, architecture, reason):
    profile = inspect_model(repo_id, endpoint=hub.url)

    assert profile["architecture"] == architecture
    assert profile["vllm"] == {"servable": False, "reason": reason}


def test_diffusers_files_include_nested_folders(hub):
    paths = [file["path"] for file in inspect_model(DEMO_DIFFUSION, endpoint=hub.url)["files"]]

    assert "unet/diffusion_pytorch_model.safetensors" in paths


def test_supported_architecture_without_weights_is_not_servable(hub):
    hub.add_model("berth-test/no-weights", {"config.json": b'{"architectures": ["MistralForCausalLM"]}'})

    profile = inspect_model("berth-test/no-weights", endpoint=hub.url)

    assert profile["vllm"] == {"servable": False, "reason": "the repo has no safetensors or .bin weights"}
    assert profile["parameter_count"] is None


@pytest.mark.parametrize(
    ("repo_id", "config", "servable"),
    [
        ("berth-test/qwen2-by-type", {"model_type": "qwen2"}, True),
        (
            "berth-test/llama-classifier",
            {"architectures": ["LlamaForSequenceClassification"], "model_type": "llama"},
            False,
        ),
    ],
)
def test_model_type_vouches_only_when_no_architecture_is_declared(hub, repo_id, config, servable):
    hub.add_model(repo_id, {"config.json": json.dumps(config).encode(), "model.safetensors": b"\0" * 64})

    assert inspect_model(repo_id, endpoint=hub.url)["vllm"]["servable"] is servable


def test_license_falls_back_to_the_hub_license_tag(hub):
    hub.add_model("berth-test/license-tag-only", {"model.bin": b"w"}, tags=("license:mit",))

    assert inspect_model("berth-test/license-tag-only", endpoint=hub.url)["license"] == "mit"


def test_parameter_count_comes_from_the_hub_safetensors_summary(hub):
    config = b'{"architectures": ["MistralForCausalLM"], "model_type": "mistral"}'
    hub.add_model(
        "berth-test/big-mistral",
        {"config.json": config, "model-00001-of-00002.safetensors": b"\0" * 64},
        safetensors_params=7_241_732_096,
    )

    profile = inspect_model("berth-test/big-mistral", endpoint=hub.url)

    assert profile["parameter_count"] == 7_241_732_096
    assert profile["vllm"]["servable"] is True


# --- the executor ----------------------------------------------------------------------------


def test_executor_reports_progress_and_returns_the_profile(hub):
    events = []

    result = asyncio.run(EXECUTOR(_job({"model": DEMO_LLAMA}, events)))

    assert result == inspect_model(DEMO_LLAMA, endpoint=hub.url)
    assert [(step, status) for step, status, _, _ in events] == [("resolve", "running"), ("resolve", "ok")]
    assert events[-1][3] == {"revision": hub.head_sha(DEMO_LLAMA), "vllm": result["vllm"]}


def test_executor_pins_the_requested_revision(hub):
    first = hub.add_model("berth-test/executor-pinned", {"model.safetensors": b"one"})
    hub.add_model("berth-test/executor-pinned", {"model.safetensors": b"two!"})

    result = asyncio.run(EXECUTOR(_job({"model": "berth-test/executor-pinned", "revision": first}, [])))

    assert result["revision"] == first


def test_executor_reports_hub_errors_as_a_failed_step(hub):
    events = []

    with pytest.raises(ExecutorError, match="not found"):
        asyncio.run(EXECUTOR(_job({"model": "berth-demo/missing"}, events)))

    assert [(step, status) for step, status, _, _ in events] == [("resolve", "running"), ("resolve", "error")]


@pytest.mark.parametrize(
    "payload",
    [{}, {"model": ""}, {"model": 42}, {"model": DEMO_LLAMA, "revision": ""}, {"model": DEMO_LLAMA, "extra": 1}],
)
def test_executor_rejects_a_bad_payload(payload):
    events = []

    with pytest.raises(ExecutorError, match="invalid model.inspect payload"):
        asyncio.run(EXECUTOR(_job(payload, events)))

    assert events == []


def test_executor_returns_at_once_when_already_cancelled():
    events = []
    job = _job({"model": DEMO_LLAMA}, events)
    job.cancelled.set()

    assert asyncio.run(EXECUTOR(job)) == {"cancelled": True}
    assert events == []


# --- the hub is complete enough for model pulls ----------------------------------------------


def test_snapshot_download_resumes_an_interrupted_file_with_a_range_request(hub, tmp_path, monkeypatch):
    # huggingface_hub only counts bytes it has handed over in DOWNLOAD_CHUNK_SIZE (10 MiB) pieces;
    # with small chunks a cut after 4 KiB resumes from 4 KiB instead of starting over.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    hub.interrupt_next_download(DEMO_LLAMA, "model.safetensors", after_bytes=4096)
    requests_before = len(hub.requests)

    snapshot = snapshot_download(DEMO_LLAMA, endpoint=hub.url, cache_dir=tmp_path, token=False)

    sha = hub.head_sha(DEMO_LLAMA)
    assert snapshot == str(tmp_path / "models--berth-demo--tiny-llama" / "snapshots" / sha)
    for path, content in hub.files(DEMO_LLAMA).items():
        assert (Path(snapshot) / path).read_bytes() == content
    weight_gets = [
        (request.range, request.status)
        for request in hub.requests[requests_before:]
        if request.method == "GET" and request.path.endswith("/model.safetensors")
    ]
    assert weight_gets == [(None, 200), ("bytes=4096-", 206)]


def test_resolve_serves_byte_ranges(hub):
    content = hub.files(DEMO_LLAMA)["model.safetensors"]
    size = len(content)
    url = f"{hub.url}/{DEMO_LLAMA}/resolve/main/model.safetensors"

    with httpx.Client() as client:
        head = client.head(url)
        middle = client.get(url, headers={"Range": "bytes=10-19"})
        tail = client.get(url, headers={"Range": "bytes=-5"})
        beyond = client.get(url, headers={"Range": f"bytes={size}-"})

    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(size)
    assert head.headers["Accept-Ranges"] == "bytes"
    assert head.headers["X-Repo-Commit"] == hub.head_sha(DEMO_LLAMA)
    assert head.headers["ETag"] == head.headers["X-Linked-Etag"]  # an LFS file: the etag is its sha256
    assert (middle.status_code, middle.headers["Content-Range"], middle.content) == (
        206,
        f"bytes 10-19/{size}",
        content[10:20],
    )
    assert (tail.status_code, tail.content) == (206, content[-5:])
    assert (beyond.status_code, beyond.headers["Content-Range"]) == (416, f"bytes */{size}")


def test_search_and_tree_listing(hub):
    api = HfApi(endpoint=hub.url, token=False)

    by_id = [model.id for model in api.list_models(search="tiny-llama", sort="id")]
    diffusers = [model.id for model in api.list_models(filter="diffusers")]
    fill_mask = [model.id for model in api.list_models(pipeline_tag="fill-mask", limit=5)]
    top_level = {entry.path: type(entry).__name__ for entry in api.list_repo_tree(DEMO_DIFFUSION)}

    assert by_id == [DEMO_GATED, DEMO_LLAMA]  # sort defaults to descending, as on the hub
    assert diffusers == [DEMO_DIFFUSION]
    assert fill_mask == [DEMO_BERT]
    assert top_level == {"model_index.json": "RepoFile", "unet": "RepoFolder"}
