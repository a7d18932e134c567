"""Fixtures that set up real resources: moto in-process for unit tests, the whole local stack
(embedded moto server, uvicorn, workers) for end-to-end tests."""

import os

import pytest

from app import composition

_AWS_TEST_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture
def aws_resources(tmp_path, monkeypatch):
    """DynamoDB table, dead-letter queue and KMS key in an in-process moto, as the app sees them."""
    from moto import mock_aws

    from app.store.schema import ensure_table

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name, value in _AWS_TEST_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BERTH_DATA_DIR", str(tmp_path / "data"))
    for name in [n for n in os.environ if n.startswith("BERTH_") and n != "BERTH_DATA_DIR"]:
        monkeypatch.delenv(name)
    composition.reset()
    with mock_aws():
        services = composition.services()
        settings = services.settings
        ensure_table(services.aws, settings.table_name)
        services.queues.ensure_dead_letter_queue()
        kms = services.aws.client("kms")
        key_id = kms.create_key(Description="berth test")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=settings.kms_key_alias, TargetKeyId=key_id)
        yield settings
    composition.reset()


@pytest.fixture
def store(aws_resources):
    """The store the app under test uses (the same caches)."""
    return composition.services().store


@pytest.fixture
def client(aws_resources):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


def signup(client, email: str = "ada@example.com", name: str = "Ada", password: str = "correct-horse") -> dict:
    response = client.post("/v1/auth/signup", json={"name": name, "email": email, "password": password})
    assert response.status_code == 201, response.text
    return response.json()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}
