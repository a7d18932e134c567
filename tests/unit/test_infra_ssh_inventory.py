"""The infra SSH inventory as the API loads it (a file, an S3 object, an SSM parameter, through
moto), the client key references it holds (kms:, ssm:, secretsmanager:, file:), and what a bad
inventory does: the SSH routes answer 503 with the located problems, /status says so, and the rest
of berth keeps working."""

import base64

import asyncssh
import pytest

from app import composition
from app.services.ssh_keys import KMS_CONTEXT, ClientKeyUnavailable
from tests.conftest import bearer, signup

HOST_KEY = asyncssh.generate_private_key("ssh-ed25519")
CLIENT_KEY = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()


def inventory_text(client_key: str = "ssm:/berth/ssh/gpu-1") -> str:
    public = HOST_KEY.export_public_key().decode().strip()
    return f"""
hosts:
  - name: gpu-1
    address: 10.0.3.17
    user: berth-ops
    labels: [gpu]
    host_key: "{public}"
    client_key: "{client_key}"
    runtime_labels: {{zone: a}}
actions:
  - name: tail-log
    command: [tail, -n, "{{lines}}", --, "{{path}}"]
    parameters:
      lines: {{type: integer, minimum: 1, maximum: 5000, default: 200}}
      path: {{type: string, pattern: "/var/log/[a-z0-9._/-]+", max_length: 200}}
    labels: [gpu]
forwards:
  - {{name: ray-dashboard, target_port: 8265, hosts: [gpu-1]}}
"""


BROKEN = """
hosts:
  - name: gpu-1
    address: not an address!
    user: ops
    host_key: SHA256:short
    client_key: "-----BEGIN OPENSSH PRIVATE KEY-----"
actions:
  - {name: a, command: [ls], hosts: [gpu-9]}
"""


def use_inventory(monkeypatch, location: str) -> None:
    monkeypatch.setenv("BERTH_SSH_INVENTORY", location)
    composition.reset()


def admin_key(client, token: str) -> str:
    response = client.post("/api/auth/keys/generate", headers=bearer(token), json={"name": "ops", "tier": "admin"})
    assert response.status_code == 201, response.text
    return response.json()["key"]


def test_a_yaml_file_is_the_inventory_and_listings_show_no_secret(client, aws_resources, tmp_path, monkeypatch):
    path = tmp_path / "inventory.yaml"
    path.write_text(inventory_text())
    use_inventory(monkeypatch, str(path))
    session = signup(client)["token"]

    hosts = client.get("/api/infra/ssh/hosts", headers=bearer(session))
    actions = client.get("/api/infra/ssh/actions", headers=bearer(session))

    assert hosts.status_code == 200, hosts.text
    [host] = hosts.json()["hosts"]
    assert host == {"name": "gpu-1", "address": "10.0.3.17", "port": 22, "user": "berth-ops", "labels": ["gpu"],
                    "host_key_fingerprint": HOST_KEY.get_fingerprint("sha256"), "host_key_algorithm": "ssh-ed25519",
                    "client_key_source": "ssm", "runtime_labels": {"zone": "a"}, "actions": ["tail-log"],
                    "forwards": ["ray-dashboard"]}
    assert "berth/ssh/gpu-1" not in hosts.text
    [action] = actions.json()["actions"]
    assert action["name"] == "tail-log" and action["parameters"]["lines"]["maximum"] == 5000
    described = client.get("/api/infra/ssh/actions/tail-log", headers=bearer(session)).json()
    assert described["command"] == ["tail", "-n", "{lines}", "--", "{path}"]


def test_an_edited_file_is_read_again(client, aws_resources, tmp_path, monkeypatch):
    path = tmp_path / "inventory.yaml"
    path.write_text(inventory_text())
    use_inventory(monkeypatch, str(path))
    session = signup(client)["token"]
    assert client.get("/api/infra/ssh/hosts", headers=bearer(session)).status_code == 200

    path.write_text(inventory_text().replace("name: gpu-1", "name: gpu-2").replace("hosts: [gpu-1]", "hosts: [gpu-2]"))

    assert [h["name"] for h in client.get("/api/infra/ssh/hosts", headers=bearer(session)).json()["hosts"]] == [
        "gpu-2"]


def test_an_s3_object_and_an_ssm_parameter_are_inventories_too(client, aws_resources, monkeypatch):
    aws = composition.services().aws
    aws.client("s3").create_bucket(Bucket="berth-config")
    aws.client("s3").put_object(Bucket="berth-config", Key="ssh/inventory.yaml", Body=inventory_text().encode())
    aws.client("ssm").put_parameter(Name="/berth/ssh/inventory", Value=inventory_text(), Type="SecureString")
    session = signup(client)["token"]

    for location in ("s3://berth-config/ssh/inventory.yaml", "ssm:/berth/ssh/inventory"):
        use_inventory(monkeypatch, location)
        listed = client.get("/api/infra/ssh/hosts", headers=bearer(session))
        assert listed.status_code == 200, listed.text
        assert listed.json()["hosts"][0]["name"] == "gpu-1"


def test_a_bad_inventory_answers_503_with_located_problems_and_berth_keeps_working(client, aws_resources, tmp_path,
                                                                                   monkeypatch):
    path = tmp_path / "inventory.yaml"
    path.write_text(BROKEN)
    use_inventory(monkeypatch, str(path))
    session = signup(client)["token"]

    listed = client.get("/api/infra/ssh/hosts", headers=bearer(session))
    status = client.get("/status").json()

    assert listed.status_code == 503
    problems = listed.json()["error"]
    assert "line 4, column 14: hosts[0].address: address must be a host name or an IP address" in problems
    assert "hosts[0].host_key: a SHA256: fingerprint is 43 base64 characters" in problems
    assert "hosts[0].client_key: client_key is a reference to the key" in problems
    assert "-----BEGIN" not in problems
    assert status["infra_ssh"]["ok"] is False and len(status["infra_ssh"]["problems"]) >= 3
    assert any("infra SSH inventory cannot be used" in warning for warning in status["warnings"])
    assert client.get("/v1/auth/me", headers=bearer(session)).status_code == 200  # the rest of berth is fine


def test_a_missing_source_or_none_at_all_is_503_saying_which(client, aws_resources, monkeypatch):
    session = signup(client)["token"]
    unset = client.get("/api/infra/ssh/actions", headers=bearer(session))
    assert unset.status_code == 503 and "set BERTH_SSH_INVENTORY" in unset.json()["error"]

    use_inventory(monkeypatch, "s3://no-such-bucket/inventory.yaml")
    missing = client.get("/api/infra/ssh/actions", headers=bearer(session))
    assert missing.status_code == 503 and "cannot read s3://no-such-bucket/inventory.yaml: NoSuchBucket" in \
        missing.json()["error"]
    assert client.get("/status").json()["infra_ssh"]["ok"] is False


def test_only_an_admin_sees_the_inventory(client, aws_resources, tmp_path, monkeypatch):
    path = tmp_path / "inventory.yaml"
    path.write_text(inventory_text())
    use_inventory(monkeypatch, str(path))
    session = signup(client)["token"]
    read = client.post("/api/auth/keys/generate", headers=bearer(session), json={"name": "r", "tier": "read"})

    refused = client.get("/api/infra/ssh/hosts", headers={"X-API-Key": read.json()["key"]})

    assert refused.status_code == 403
    assert refused.json()["kind"] == "denied" and "admin-tier" in refused.json()["error"]
    assert client.get("/api/infra/ssh/hosts", headers={"X-API-Key": admin_key(client, session)}).status_code == 200


# --- client key references ------------------------------------------------------------------------


def test_client_keys_resolve_from_kms_ssm_secrets_manager_and_a_local_file(aws_resources, tmp_path):
    services = composition.services()
    aws = services.aws
    ciphertext = aws.client("kms").encrypt(KeyId=aws_resources.kms_key_alias, Plaintext=CLIENT_KEY.encode(),
                                           EncryptionContext=KMS_CONTEXT)["CiphertextBlob"]
    aws.client("ssm").put_parameter(Name="/berth/ssh/gpu-1", Value=CLIENT_KEY, Type="SecureString")
    aws.client("secretsmanager").create_secret(Name="berth/ssh/gpu-1", SecretString=CLIENT_KEY)
    key_file = tmp_path / "id_ed25519"
    key_file.write_text(CLIENT_KEY)

    for reference in (f"kms:{base64.b64encode(ciphertext).decode()}", "ssm:/berth/ssh/gpu-1",
                      "secretsmanager:berth/ssh/gpu-1", f"file:{key_file}"):
        assert services.ssh_keys.resolve(reference) == CLIENT_KEY


def test_a_kms_ciphertext_made_for_anything_else_is_not_a_client_key(aws_resources):
    services = composition.services()
    other = services.aws.client("kms").encrypt(KeyId=aws_resources.kms_key_alias, Plaintext=b"a data key",
                                               EncryptionContext={"kind": "job-secrets", "workspace": "ws_1"})
    with pytest.raises(ClientKeyUnavailable, match="kms: client key cannot be read: InvalidCiphertextException"):
        services.ssh_keys.resolve("kms:" + base64.b64encode(other["CiphertextBlob"]).decode())


def test_a_file_client_key_is_refused_outside_the_local_stack(aws_resources, tmp_path, monkeypatch):
    key_file = tmp_path / "id_ed25519"
    key_file.write_text(CLIENT_KEY)
    monkeypatch.setenv("BERTH_MODE", "aws")
    composition.reset()

    with pytest.raises(ClientKeyUnavailable, match="file: client keys are for the local stack"):
        composition.services().ssh_keys.resolve(f"file:{key_file}")


def test_a_missing_secret_says_which_kind_of_reference_failed_and_never_a_key(aws_resources):
    with pytest.raises(ClientKeyUnavailable) as missing:
        composition.services().ssh_keys.resolve("secretsmanager:berth/ssh/nothing")
    assert "secretsmanager: client key cannot be read: ResourceNotFoundException" in str(missing.value)
