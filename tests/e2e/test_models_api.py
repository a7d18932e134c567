"""Models through the real local stack: search and resolve against the local hub, profiles,
attach → a real worker pulls, verifies and starts the (fake) vLLM → ready, then the official
`openai` client through `<berth>/openai/v1`; delete, duplicate attach, the unhappy paths, and
another workspace's view (404)."""

import signal
import time

import openai
import pytest

from app.local.stack import LocalStack, StackOptions, free_port
from tests.e2e.conftest import FAST_SETTINGS, new_account
from tests.support.hub import DEMO_BERT, DEMO_LLAMA
from tests.support.model_api import attach, create_profile, installation, wait_for_installation
from tests.support.model_jobs import engine_pids, fake_vllm_environment
from tests.support.model_repos import DEMO_OVERSIZED, DEMO_SHARDED

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory, hub):
    """The stack, its API resolving against the local hub (a hub that stops answering is given up on
    after 3 s)."""
    environment = {**FAST_SETTINGS, "BERTH_HF_ENDPOINT": hub.url, "BERTH_HUB_TIMEOUT_SECONDS": "3",
                   "BERTH_OPENAI_REQUEST_TIMEOUT_SECONDS": "30"}
    options = StackOptions(data_dir=tmp_path_factory.mktemp("stack"), port=free_port(), moto_port=free_port(),
                           worker=False, sweep_interval=0.5, snapshot_interval=3600, environment=environment)
    running = LocalStack(options).start()
    yield running
    running.stop()


@pytest.fixture
def vllm(monkeypatch):
    """Workers started after this can start the fake vLLM (with these fault flags)."""
    def use(*flags: str) -> None:
        for name, value in fake_vllm_environment(*flags).items():
            monkeypatch.setenv(name, value)  # the worker process inherits it

    use()
    return use


def openai_client(stack: LocalStack, account) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.api_url}/openai/v1", api_key=account.token, max_retries=0, timeout=60)


def test_attach_pulls_verifies_serves_and_the_openai_client_talks_to_it_through_berth(stack, account, workers, vllm,
                                                                                        hub, tmp_path):
    worker = workers(account.join_token())
    profile = create_profile(account, DEMO_SHARDED)
    assert profile["status"] == "profile_only" and profile["commit"] == hub.head_sha(DEMO_SHARDED)

    attached = attach(account, profile["id"], worker.runtime_id, installMode="pull_from_source", servingEngine="vLLM")

    assert set(attached) >= {"installation_id", "profile_id", "job_id", "events_url"}
    assert attached["events_url"] == f"/v1/jobs/{attached['job_id']}/events"
    ready, seen = wait_for_installation(account, attached["installation_id"], "ready")
    statuses = list(dict.fromkeys(state["status"] for state in seen))
    assert statuses[-1] == "ready" and set(statuses) <= {"queued", "checking", "downloading", "verifying",
                                                         "attached", "ready"}
    progress = [state["progress"] for state in seen]
    assert progress == sorted(progress) and progress[-1] == 100
    assert ready["model_name"] == DEMO_SHARDED and ready["commit"] == hub.head_sha(DEMO_SHARDED)
    assert ready["local_path"].endswith(hub.head_sha(DEMO_SHARDED))
    job = account.job(attached["job_id"])
    assert job["type"] == "model.attach" and job["status"] == "running"
    listed = account.get("/v1/model-profiles").json()["profiles"]
    assert [p["status"] for p in listed if p["id"] == profile["id"]] == ["ready"]

    client = openai_client(stack, account)
    assert [model.id for model in client.models.list()] == [DEMO_SHARDED]
    chat = client.chat.completions.create(model=DEMO_SHARDED, messages=[{"role": "user", "content": "hello there"}])
    assert chat.choices[0].message.content == "echo: hello there"
    streamed = client.chat.completions.create(model=DEMO_SHARDED, stream=True,
                                              messages=[{"role": "user", "content": "one two three"}])
    pieces = [chunk.choices[0].delta.content for chunk in streamed if chunk.choices and chunk.choices[0].delta.content]
    assert "".join(pieces) == "echo: one two three" and len(pieces) == 4
    # Streamed through the worker's /control/stream as the engine writes it: the SSE arrives in pieces.
    with account.client.stream("POST", "/openai/v1/chat/completions", headers=account.headers,
                               json={"model": DEMO_SHARDED, "stream": True,
                                     "messages": [{"role": "user", "content": "a b c d"}]}) as raw:
        assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/event-stream")
        arrivals = [piece for piece in raw.iter_raw() if piece]
    assert len(arrivals) > 1 and b"".join(arrivals).endswith(b"data: [DONE]\n\n")
    completion = client.completions.create(model=DEMO_SHARDED, prompt="say this")
    assert completion.choices[0].text == "echo: say this"
    embedding = client.embeddings.create(model=DEMO_SHARDED, input=["a", "b"])
    assert len(embedding.data) == 2 and len(embedding.data[0].embedding) == 16

    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="no/such-model", messages=[{"role": "user", "content": "x"}])
    assert "not served in this workspace" in unknown.value.message and unknown.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{stack.api_url}/openai/v1", api_key="bak_wrong", max_retries=0).models.list()


def test_search_is_the_hubs_by_downloads_and_the_curated_models_when_the_hub_is_unreachable(api, hub):
    live = api.get("/v1/model-sources/huggingface/search", params={"q": "llama", "limit": 3})
    assert live.status_code == 200 and live.json()["live"] is True
    items = live.json()["items"]
    assert len(items) == 3 and all("llama" in item["id"] and item["source"] == "hub" for item in items)
    assert [item["downloads"] for item in items] == sorted((item["downloads"] for item in items), reverse=True)
    by_task = api.get("/v1/model-sources/huggingface/search", params={"task": "fill-mask"}).json()
    assert [item["id"] for item in by_task["items"]] == [DEMO_BERT]

    hub.unreachable = True
    try:
        offline = api.get("/v1/model-sources/huggingface/search", params={"q": "qwen"})
    finally:
        hub.unreachable = False
    assert offline.status_code == 200 and offline.json()["live"] is False
    assert [item["id"] for item in offline.json()["items"]] == ["Qwen/Qwen2.5-0.5B-Instruct"]
    assert offline.json()["items"][0]["source"] == "curated" and offline.json()["reason"]


def test_the_catalog_lists_curated_servers_and_models(api):
    items = api.get("/v1/catalog").json()["items"]
    kinds = {item["kind"] for item in items}
    assert kinds == {"mcp_server", "model"}
    models = api.get("/v1/catalog", params={"kind": "model"}).json()["items"]
    assert models and all(item["kind"] == "model" and "/" in item["document"]["id"] for item in models)


def test_resolve_previews_a_public_repo_and_says_why_an_engine_cannot_serve_another(account, hub):
    preview = account.post("/v1/model-sources/resolve", json={"sourceType": "huggingface", "externalId": DEMO_LLAMA})
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["display_name"] == "tiny-llama" and body["task"] == "text-generation"
    assert body["library"] == "transformers" and body["license"] == "apache-2.0" and "llama" in body["tags"]
    assert body["architecture"] == "LlamaForCausalLM" and body["parameter_count"] == 2304
    assert body["weight_bytes"] > 0 and body["commit"] == hub.head_sha(DEMO_LLAMA)
    assert (body["gated"], body["private"], body["access"], body["status"]) == (False, False, "open", "profile_only")
    assert body["engines"]["vllm"] == {"servable": True, "reason": "vLLM serves the LlamaForCausalLM architecture"}

    bert = account.post("/v1/model-sources/resolve", json={"model": DEMO_BERT}).json()
    assert bert["status"] == "incompatible" and bert["engines"]["vllm"]["servable"] is False
    assert "BertForMaskedLM" in bert["engines"]["vllm"]["reason"]


def test_resolve_says_what_is_missing_and_502s_when_the_hub_is_down(account, hub):
    missing_revision = account.post("/v1/model-sources/resolve", json={"model": DEMO_LLAMA, "branch": "no-such"})
    assert missing_revision.status_code == 404 and "revision 'no-such' not found" in missing_revision.json()["error"]
    missing_repo = account.post("/v1/model-sources/resolve", json={"model": "berth-demo/nothing-here"})
    assert missing_repo.status_code == 404 and "not found on the hub" in missing_repo.json()["error"]
    hub.unreachable = True
    try:
        down = account.post("/v1/model-sources/resolve", json={"model": DEMO_LLAMA})
    finally:
        hub.unreachable = False
    assert down.status_code == 502 and "model hub" in down.json()["error"]


def test_a_gated_repo_resolves_gated_without_a_credential_denied_with_a_wrong_one_granted_with_the_right_one(
        account):
    from tests.support.hub import DEMO_GATED, GRANTED_TOKEN

    def resolved() -> dict:
        response = account.post("/v1/model-sources/resolve", json={"model": DEMO_GATED})
        assert response.status_code == 200, response.text
        return response.json()

    assert (resolved()["access"], resolved()["status"], resolved()["gated"]) == ("needs_credential", "gated", True)
    stored = account.post("/v1/cloud/providers", json={"provider": "huggingface", "token": "hf_wrongwrongwrong1234"})
    assert stored.status_code == 201 and stored.json()["provider"]["hint"] == "hf_...1234"
    assert (resolved()["access"], resolved()["status"]) == ("denied", "gated")
    account.post("/v1/cloud/providers", json={"provider": "huggingface", "token": GRANTED_TOKEN})
    listed = account.get("/v1/cloud/providers").json()["providers"]
    assert [(p["provider"], p["hint"]) for p in listed] == [("huggingface", f"hf_...{GRANTED_TOKEN[-4:]}")]
    assert GRANTED_TOKEN not in account.get("/v1/cloud/providers").text
    assert (resolved()["access"], resolved()["status"]) == ("granted", "profile_only")
    assert account.delete("/v1/cloud/providers/huggingface").status_code == 200
    assert account.delete("/v1/cloud/providers/huggingface").status_code == 404


def test_a_private_repo_is_not_found_without_its_credential_and_resolves_with_it(account):
    from tests.support.hub import GRANTED_TOKEN
    from tests.support.model_repos import DEMO_PRIVATE

    hidden = account.post("/v1/model-sources/resolve", json={"model": DEMO_PRIVATE})
    assert hidden.status_code == 404 and "store a Hugging Face credential" in hidden.json()["error"]
    account.post("/v1/cloud/providers", json={"provider": "huggingface", "token": "hf_someone_elses_token"})
    wrong = account.post("/v1/model-sources/resolve", json={"model": DEMO_PRIVATE})
    assert wrong.status_code == 404 and "credential cannot see it" in wrong.json()["error"]
    account.post("/v1/cloud/providers", json={"provider": "huggingface", "token": GRANTED_TOKEN})
    seen = account.post("/v1/model-sources/resolve", json={"model": DEMO_PRIVATE})
    assert seen.status_code == 200 and (seen.json()["private"], seen.json()["access"]) == (True, "granted")


def _snapshot(worker, repo: str, commit: str):
    return worker.data_dir / "models" / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / commit


def test_deleting_an_installation_stops_its_engine_and_frees_its_revision_unless_another_uses_it(
        account, workers, vllm, hub, stack):
    worker = workers(account.join_token(), "--max-concurrent-jobs", "4")
    profile = create_profile(account, DEMO_LLAMA)
    first = attach(account, profile["id"], worker.runtime_id)
    ready, _ = wait_for_installation(account, first["installation_id"], "ready")
    assert ready["cached"] is False
    snapshot = _snapshot(worker, DEMO_LLAMA, hub.head_sha(DEMO_LLAMA))
    assert snapshot.is_dir() and engine_pids(snapshot)

    before = len(hub.requests)
    second = attach(account, profile["id"], worker.runtime_id, servedModelName="tiny-llama-2")
    again, _ = wait_for_installation(account, second["installation_id"], "ready")
    assert again["cached"] is True and again["local_path"] == ready["local_path"]
    assert not [r for r in hub.requests[before:] if r.method == "GET" and "/resolve/" in r.path]
    assert len(engine_pids(snapshot)) == 2

    removed = account.delete(f"/v1/model-installations/{first['installation_id']}")
    assert removed.status_code == 200, removed.text
    assert removed.json()["job_status"] == "cancelled" and removed.json()["evicted"] is False
    assert second["installation_id"] in removed.json()["reason"]
    assert account.get(f"/v1/model-installations/{first['installation_id']}").status_code == 404
    assert account.job(first["job_id"])["status"] == "cancelled"
    _until(lambda: len(engine_pids(snapshot)) == 1, "the first engine to stop")
    assert snapshot.is_dir()

    last = account.delete(f"/v1/model-installations/{second['installation_id']}").json()
    assert last["job_status"] == "cancelled" and last["evicted"] is True and last["freed_bytes"] > 0, last
    _until(lambda: not engine_pids(snapshot), "every engine to stop")
    assert not snapshot.exists()
    assert account.get("/v1/model-installations").json()["installations"] == []
    assert list(openai_client(stack, account).models.list()) == []


def _until(condition, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.1)


def test_a_runtime_that_cannot_serve_the_model_is_refused_saying_why(account, workers, monkeypatch):
    monkeypatch.setenv("BERTH_WORKER_VLLM_COMMAND", "/nonexistent/vllm serve")
    worker = workers(account.join_token())
    llama = create_profile(account, DEMO_LLAMA)
    no_vllm = account.post(f"/v1/model-profiles/{llama['id']}/attach", json={"runtimeId": worker.runtime_id})
    assert no_vllm.status_code == 409 and "cannot start vllm" in no_vllm.json()["error"]

    bert = create_profile(account, DEMO_BERT)
    assert bert["status"] == "incompatible"
    refused = account.post(f"/v1/model-profiles/{bert['id']}/attach", json={"runtimeId": worker.runtime_id})
    assert refused.status_code == 409 and "BertForMaskedLM" in refused.json()["error"]
    nowhere = account.post(f"/v1/model-profiles/{llama['id']}/attach", json={"runtimeId": "rt_elsewhere"})
    assert nowhere.status_code == 404
    bad_engine = account.post(f"/v1/model-profiles/{llama['id']}/attach",
                              json={"runtimeId": worker.runtime_id, "servingEngine": "tgi"})
    assert bad_engine.status_code == 422 and "tgi" in bad_engine.json()["error"]


def test_a_model_too_big_for_the_runtimes_disk_is_refused_and_a_pull_of_it_fails_saying_so(account, workers, vllm):
    worker = workers(account.join_token())
    oversized = create_profile(account, DEMO_OVERSIZED)
    refused = account.post(f"/v1/model-profiles/{oversized['id']}/attach", json={"runtimeId": worker.runtime_id})
    assert refused.status_code == 409 and "of disk free" in refused.json()["error"]

    job_id = account.create_job("model.pull", payload={"model": DEMO_OVERSIZED})
    job = account.wait_for_status(job_id, "error")
    assert "not enough disk" in job["error"]
    failed = [e for e in account.events(job_id) if e["step"] == "failed"]
    assert failed and failed[0]["data"]["failure"] == "disk_full"


def test_an_engine_that_never_becomes_healthy_fails_its_installation_with_its_output(account, workers, vllm):
    vllm("--fake-never-healthy")
    worker = workers(account.join_token())
    profile = create_profile(account, DEMO_LLAMA)
    attached = attach(account, profile["id"], worker.runtime_id, startupTimeoutSeconds=3)

    with pytest.raises(AssertionError, match="engine_failed: vllm did not become healthy within 3 s"):
        wait_for_installation(account, attached["installation_id"], "ready", timeout=60)
    failed = installation(account, attached["installation_id"])
    assert failed["status"] == "failed" and "fake_engine" in failed["error"]
    assert account.wait_for_status(attached["job_id"], "error")["error"]
    assert account.get(f"/v1/model-profiles/{profile['id']}").json()["profile"]["status"] == "installed"


def test_an_engine_that_crashes_after_ready_is_restarted_and_served_again(account, workers, vllm, tmp_path, stack):
    vllm("--fake-crash-after-ready", "1", "--fake-crash-once-file", str(tmp_path / "crashed-once"))
    worker = workers(account.join_token())
    profile = create_profile(account, DEMO_LLAMA)
    attached = attach(account, profile["id"], worker.runtime_id)
    wait_for_installation(account, attached["installation_id"], "ready")

    _until(lambda: installation(account, attached["installation_id"])["restarts"] == 1, "the crash", timeout=30)
    ready, _ = wait_for_installation(account, attached["installation_id"], "ready", timeout=60)
    assert ready["restarts"] == 1
    chat = openai_client(stack, account).chat.completions.create(
        model=DEMO_LLAMA, messages=[{"role": "user", "content": "still there"}])
    assert chat.choices[0].message.content == "echo: still there"


def test_another_workspaces_profiles_and_installations_are_not_found(account, api, workers, vllm, stack):
    worker = workers(account.join_token())
    profile = create_profile(account, DEMO_LLAMA)
    attached = attach(account, profile["id"], worker.runtime_id)
    wait_for_installation(account, attached["installation_id"], "ready")

    other = new_account(api)
    assert other.get(f"/v1/model-profiles/{profile['id']}").status_code == 404
    assert other.post(f"/v1/model-profiles/{profile['id']}/attach", json={"runtimeId": worker.runtime_id}
                      ).status_code == 404
    assert other.get(f"/v1/model-installations/{attached['installation_id']}").status_code == 404
    assert other.delete(f"/v1/model-installations/{attached['installation_id']}").status_code == 404
    assert other.get("/v1/model-installations").json()["installations"] == []
    theirs = create_profile(other, DEMO_LLAMA)
    foreign_runtime = other.post(f"/v1/model-profiles/{theirs['id']}/attach", json={"runtimeId": worker.runtime_id})
    assert foreign_runtime.status_code == 404
    assert [m.id for m in openai_client(stack, other).models.list()] == []
    with pytest.raises(openai.NotFoundError):
        openai_client(stack, other).chat.completions.create(model=DEMO_LLAMA,
                                                            messages=[{"role": "user", "content": "x"}])
    assert installation(account, attached["installation_id"])["status"] == "ready"


@pytest.fixture
def own_server(tmp_path):
    """Someone's own OpenAI-compatible server (the fake engine, run by hand) serving `my-model`."""
    import subprocess
    import sys

    import httpx

    from tests.support.hub import demo_llama_files
    from tests.support.model_jobs import FAKE_ENGINE

    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    for name, content in demo_llama_files().items():
        (model_dir / name).write_bytes(content)
    port = free_port()
    process = subprocess.Popen([sys.executable, str(FAKE_ENGINE), str(model_dir), "--host", "127.0.0.1", "--port",
                                str(port), "--served-model-name", "my-model"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    _until(lambda: _answers(httpx, f"{url}/health"), "the server to start")
    yield url
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)


def _answers(httpx, url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_an_external_endpoint_is_served_behind_the_same_endpoint_with_its_key_kept_sealed(account, stack, own_server):
    import httpx

    base = f"{own_server}/v1"
    preview = account.post("/v1/model-sources/resolve", json={"sourceType": "openai_compatible", "sourceUri": base,
                                                              "apiKey": "sk-own-server-key"})
    assert preview.status_code == 200 and preview.json()["external_id"] == "my-model", preview.text
    profile = account.post("/v1/model-profiles", json={"source_type": "openai_compatible", "source_uri": base,
                                                       "external_id": "my-model"}).json()["profile"]
    wrong_runtime = account.post(f"/v1/model-profiles/{profile['id']}/attach", json={"runtimeId": "rt_x"})
    assert wrong_runtime.status_code == 422 and "external" in wrong_runtime.json()["error"]

    attached = attach(account, profile["id"], "external", apiKey="sk-own-server-key")
    assert attached["job_id"] is None and attached["installation"]["status"] == "ready"
    assert attached["installation"]["install_mode"] == "external_endpoint"
    assert "sk-own-server-key" not in account.get("/v1/model-installations").text

    chat = openai_client(stack, account).chat.completions.create(
        model="my-model", messages=[{"role": "user", "content": "from berth"}])
    assert chat.choices[0].message.content == "echo: from berth"
    seen = httpx.get(f"{own_server}/fake/last-request").json()["headers"]
    assert seen["authorization"] == "Bearer sk-own-server-key"  # its own key, never the caller's berth token

    assert account.delete(f"/v1/model-installations/{attached['installation_id']}").json()["job_status"] is None
    gone = account.post("/v1/model-sources/resolve", json={"sourceType": "openai_compatible",
                                                           "sourceUri": "http://127.0.0.1:9/v1"})
    assert gone.status_code == 502 and "could not be reached" in gone.json()["error"]


def test_model_pull_and_preload_through_v1_jobs_take_the_contracts_payloads(account, workers, vllm, hub):
    workers(account.join_token())
    token_given = account.post("/v1/jobs", json={"type": "model.pull", "payload": {"model": DEMO_LLAMA,
                                                                                    "token": "hf_secret_value"}})
    assert token_given.status_code == 422 and "POST /v1/cloud/providers" in token_given.json()["error"]
    assert "hf_secret_value" not in token_given.text
    attach_job = account.post("/v1/jobs", json={"type": "model.attach", "payload": {"model": DEMO_LLAMA}})
    assert attach_job.status_code == 422 and "not created through /v1/jobs" in attach_job.json()["error"]
    no_engine = account.post("/v1/jobs", json={"type": "model.preload", "payload": {"model": DEMO_LLAMA}})
    assert no_engine.status_code == 422 and "engine" in no_engine.json()["error"]

    pulled = account.wait_for_status(account.create_job("model.pull", payload={"model": DEMO_LLAMA}), "complete")
    assert pulled["result"]["commit"] == hub.head_sha(DEMO_LLAMA)
    preload = account.create_job("model.preload", payload={"model": DEMO_LLAMA,
                                                           "engine": {"served_model_name": "warm-llama"}})
    done = account.wait_for_status(preload, "complete")
    assert done["result"]["cached"] is True and done["result"]["state"] == "healthy"


def test_the_cli_searches_resolves_attaches_with_follow_lists_and_deletes(logged_in, account, workers, vllm):
    import json

    worker = workers(account.join_token())
    found = logged_in("models", "search", "llama", "--limit", "2", "--json")
    assert found.returncode == 0 and json.loads(found.stdout)["live"] is True
    resolved = logged_in("models", "resolve", DEMO_LLAMA)
    assert resolved.returncode == 0 and "LlamaForCausalLM" in resolved.stdout and "vllm: yes" in resolved.stdout

    attached = logged_in("models", "attach", DEMO_LLAMA, "--runtime", worker.runtime_id, "--follow")
    assert attached.returncode == 0, attached.stderr
    steps = [line.split()[2] for line in attached.stdout.splitlines() if len(line.split()) > 2]
    assert {"checking", "downloading", "verifying", "attached", "engine", "ready"} <= set(steps)
    assert f"send `model: {DEMO_LLAMA}`" in attached.stderr

    listed = json.loads(logged_in("models", "list", "--json").stdout)["installations"]
    assert [(i["model_name"], i["status"], i["progress"]) for i in listed] == [(DEMO_LLAMA, "ready", 100)]
    deleted = logged_in("models", "delete", listed[0]["id"])
    assert deleted.returncode == 0 and "removed; freed" in deleted.stdout
    again = logged_in("models", "delete", listed[0]["id"])
    assert again.returncode == 1 and "no model installation" in again.stderr


def test_a_gated_model_attaches_with_a_granted_credential_and_fails_gated_with_a_wrong_one(account, workers, vllm,
                                                                                           stack):
    from tests.support.hub import DEMO_GATED, GRANTED_TOKEN

    worker = workers(account.join_token())
    profile = create_profile(account, DEMO_GATED)
    assert profile["status"] == "gated"
    refused = account.post(f"/v1/model-profiles/{profile['id']}/attach", json={"runtimeId": worker.runtime_id})
    assert refused.status_code == 409 and "store a Hugging Face credential" in refused.json()["error"]

    wrong = "hf_wrong_but_well_formed_0001"
    account.post("/v1/cloud/providers", json={"provider": "huggingface", "token": wrong})
    denied = attach(account, profile["id"], worker.runtime_id)
    with pytest.raises(AssertionError, match="gated: .* the token given has no access"):
        wait_for_installation(account, denied["installation_id"], "ready")
    assert account.get(f"/v1/model-profiles/{profile['id']}").json()["profile"]["status"] == "gated"
    assert account.wait_for_status(denied["job_id"], "error")

    account.post("/v1/cloud/providers", json={"provider": "huggingface", "token": GRANTED_TOKEN})
    granted = attach(account, profile["id"], worker.runtime_id)
    wait_for_installation(account, granted["installation_id"], "ready")
    chat = openai_client(stack, account).chat.completions.create(
        model=DEMO_GATED, messages=[{"role": "user", "content": "behind the gate"}])
    assert chat.choices[0].message.content == "echo: behind the gate"

    seen = [account.get(f"/v1/jobs/{granted['job_id']}").text, account.get("/v1/model-installations").text,
            str(account.events(denied["job_id"])), account.get("/v1/cloud/audit").text,
            worker.log_path.read_text()]
    assert not [text for text in seen if GRANTED_TOKEN in text or wrong in text]


def test_a_pull_through_v1_jobs_takes_the_workspaces_credential_only_when_the_repo_needs_it(account, workers, hub):
    from tests.support.hub import DEMO_GATED, GRANTED_TOKEN

    workers(account.join_token())
    account.post("/v1/cloud/providers", json={"provider": "huggingface", "token": GRANTED_TOKEN})
    gated = account.create_job("model.pull", payload={"model": DEMO_GATED})
    public = account.create_job("model.pull", payload={"model": DEMO_LLAMA})
    assert account.wait_for_status(gated, "complete")["result"]["commit"] == hub.head_sha(DEMO_GATED)
    assert account.wait_for_status(public, "complete")["status"] == "complete"
    jobs = {job["job_id"]: job for job in account.get("/v1/jobs").json()["jobs"]}
    assert "hf_token" in jobs[gated]["payload"] and "hf_token" not in jobs[public]["payload"]  # shown by name only
    assert GRANTED_TOKEN not in str(jobs)
