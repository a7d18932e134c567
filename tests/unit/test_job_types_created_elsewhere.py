"""Job types that have routes of their own (SSH actions, model attachments) are refused by
`POST /v1/jobs` with a clear 422, never a 500."""

import pytest

from tests.conftest import bearer, signup


@pytest.mark.parametrize("job_type", ["ssh.run", "ssh.forward"])
def test_a_type_created_by_its_own_route_is_refused_with_a_clear_message(client, job_type):
    token = signup(client)["token"]
    response = client.post("/v1/jobs", json={"type": job_type, "payload": {}}, headers=bearer(token))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["success"] is False
    assert f"jobs of type {job_type} are not created through /v1/jobs" in body["error"]
