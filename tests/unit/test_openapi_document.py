"""The OpenAPI document says what each route answers, in berth's error shape, and the API keeps to
it: derived statuses, `Allow` on 405, limits stated from the policy, JSON types kept apart. (The
whole document is checked against the running stack by tests/e2e/test_openapi_conformance.py.)"""

import pytest

from app import composition
from app.main import create_app
from tests.conftest import bearer, signup

ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}
OPENAI_ERROR_BODY = {"$ref": "#/components/schemas/OpenAiErrorBody"}


@pytest.fixture
def document(client):
    return client.get("/openapi.json").json()


def _errors(document, path, method) -> dict:
    responses = document["paths"][path][method]["responses"]
    return {int(code): response for code, response in responses.items() if int(code) >= 400}


def test_every_documented_error_is_berths_shape_and_fastapis_is_gone(document):
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                # Readiness answers with its report; the OAuth callback with a page for a browser.
                if int(code) >= 400 and path not in ("/v1/ready", "/api/auth/callback"):
                    # The OpenAI-compatible endpoint answers in OpenAI's error shape, which its clients read.
                    shape = OPENAI_ERROR_BODY if path.startswith("/openai/v1/") else ERROR_BODY
                    assert response["content"]["application/json"]["schema"] == shape, (method, path, code)


@pytest.mark.parametrize("path, method, statuses", [
    ("/v1/jobs", "post", {400, 401, 403, 404, 409, 413, 422, 429}),  # caller, body, and its own
    ("/v1/jobs/{job_id}", "get", {401, 403, 404, 422}),  # a path parameter names a resource
    ("/api/auth/keys", "get", {400, 401, 403, 422}),  # paging: a cursor it did not hand out
    ("/v1/auth/logout", "post", {400, 401, 422}),  # a session, no tier
    ("/v1/cloud/runtimes/heartbeat", "post", {400, 401, 413, 422}),  # a runtime token
    ("/v1/auth/signup", "post", {400, 409, 413, 422, 429}),  # no credentials; its own 409 and 429
])
def test_statuses_follow_from_the_declaration(document, path, method, statuses):
    assert set(_errors(document, path, method)) == statuses


def test_a_new_route_is_documented_by_default(aws_resources):
    from fastapi import APIRouter

    from app.web.deps import ServicesDep, User
    from app.web.openapi import errors

    app = create_app()
    router = APIRouter()

    @router.put("/v1/widgets/{widget_id}", responses=errors(409))
    def put_widget(principal: User, widget_id: str, body: dict, services: ServicesDep) -> dict:
        return {}

    app.include_router(router)
    documented = _errors(app.openapi(), "/v1/widgets/{widget_id}", "put")
    assert set(documented) == {400, 401, 403, 404, 409, 413, 422}


@pytest.mark.parametrize("method, path, allowed", [
    ("PUT", "/v1/jobs/job_x", "DELETE, GET"),
    ("OPTIONS", "/api/auth/keys/generate", "POST"),  # the literal path, not /api/auth/keys/{key_id}
    ("DELETE", "/v1/jobs", "GET, POST"),
    # The install route, not an entry whose id (which holds a `/`) ends in `/install`.
    ("OPTIONS", "/api/marketplace/tools/io.github.modelcontextprotocol/time/install", "POST"),
])
def test_a_method_not_allowed_names_the_allowed_ones(client, method, path, allowed):
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.json()["success"] is False and allowed in response.json()["error"]


def test_an_invalid_request_is_422_in_berths_shape(client):
    token = signup(client)["token"]
    response = client.post("/v1/jobs", headers=bearer(token), json={"type": "model.inspect", "payload": {}})
    body = response.json()
    assert response.status_code == 422 and body["success"] is False and body["status"] == 422
    assert "payload.model" in body["error"] and body["request_id"]


def test_the_policys_maximum_ttl_is_stated_in_the_document(client, monkeypatch):
    monkeypatch.setenv("BERTH_MAX_TTL_SECONDS", "1234")
    composition.reset()
    document = create_app().openapi()
    schemas = document["components"]["schemas"]
    assert schemas["SandboxPatch"]["properties"]["ttl_seconds"]["maximum"] == 1234
    assert schemas["SandboxRequest"]["properties"]["ttl_seconds"]["maximum"] == 1234
    assert all(variant["properties"]["ttl_seconds"]["maximum"] == 1234
               for variant in schemas["CreateJobRequest"]["oneOf"])
    assert "x-policy-maximum" not in str(document)


def test_each_job_type_states_its_payload(document):
    one_of = document["components"]["schemas"]["CreateJobRequest"]["oneOf"]
    variants = {variant["properties"]["type"]["const"]: variant for variant in one_of}
    assert variants["model.inspect"]["properties"]["payload"]["required"] == ["model"]
    assert "ssh.run" not in variants  # created by its own route
    assert all(v["required"] == ["type", "payload"] and v["additionalProperties"] is False for v in variants.values())


def test_parameters_are_never_documented_as_null(document):
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                assert "null" not in str(parameter["schema"]), parameter


@pytest.mark.parametrize("body, problem", [
    ({"shared": 0}, "shared must be true or false"),
    ({"uses": True}, "uses must be a number"),
    ({"uses": "2"}, "uses must be a number"),
])
def test_json_types_are_not_converted(client, body, problem):
    token = signup(client)["token"]
    response = client.post("/v1/cloud/join-tokens", headers=bearer(token), json=body)
    assert response.status_code == 422 and problem in response.json()["error"]


def test_an_integral_number_is_an_integer_as_json_schema_says(client):
    token = signup(client)["token"]
    response = client.post("/v1/cloud/join-tokens", headers=bearer(token), json={"uses": 2.0})
    assert response.status_code == 201 and response.json()["join_token"]["uses"] == 2


def test_success_bodies_say_so(client):
    signed_up = signup(client)
    assert signed_up["success"] is True
    token = signed_up["token"]
    for path in ("/v1/auth/me", "/v1/policies", "/v1/capabilities", "/v1/cloud/usage", "/v1/jobs", "/v1/health"):
        assert client.get(path, headers=bearer(token)).json()["success"] is True, path
