"""The infra SSH documents: the inventory as YAML with located errors, typed parameters, and the
rendering that keeps every value one inert argument. Pure: nothing here connects."""

import shlex

import asyncssh
import pytest

from app.contract.ssh.actions import REDACTED, ParametersInvalid, SshAction, audit_view, render
from app.contract.ssh.hosts import parse_host_key
from app.contract.ssh.inventory import InventoryInvalid, parse_inventory
from app.contract.ssh.jobs import SshFailure, SshOutcome, SshRunPayload, SshSecrets

HOST_KEY = asyncssh.generate_private_key("ssh-ed25519")
HOST_KEY_LINE = f"gpu-1.internal {HOST_KEY.export_public_key().decode().strip()} root@gpu-1"
CLIENT_KEY = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()

INVENTORY = f"""
hosts:
  - name: gpu-1
    address: 10.0.3.17
    user: berth-ops
    labels: [gpu]
    host_key: "{HOST_KEY_LINE}"
    client_key: "secretsmanager:berth/ssh/gpu-1"
  - name: bastion
    address: bastion.example.com
    port: 2222
    user: ops
    host_key: "{HOST_KEY.get_fingerprint('sha256')}"
    client_key: "kms:AQICAHh2bmV3"
    runtime_labels: {{zone: east}}
actions:
  - name: tail-log
    description: The end of a log file
    command: [tail, -n, "{{lines}}", --, "{{path}}"]
    parameters:
      lines: {{type: integer, minimum: 1, maximum: 5000, default: 200}}
      path: {{type: string, pattern: "/var/log/[a-z0-9._/-]+", max_length: 200}}
    labels: [gpu]
    timeout_seconds: 20
  - name: restart
    command: [sudo, systemctl, restart, "{{unit}}"]
    parameters:
      unit: {{type: enum, values: [vllm, berth-worker]}}
    hosts: [gpu-1, bastion]
forwards:
  - {{name: ray-dashboard, target_port: 8265, hosts: [gpu-1]}}
"""


def action(command: list[str], **parameters: dict) -> SshAction:
    return SshAction.model_validate({"name": "test", "command": command, "parameters": parameters,
                                     "hosts": ["test-host"]})


# --- the inventory --------------------------------------------------------------------------------


def test_an_inventory_parses_from_yaml_and_lists_hosts_without_key_material():
    inventory = parse_inventory(INVENTORY)

    gpu, bastion = inventory.hosts
    assert [h.name for h in inventory.hosts_for(inventory.action("tail-log"))] == ["gpu-1"]
    assert [h.name for h in inventory.hosts_for(inventory.action("restart"))] == ["gpu-1", "bastion"]
    assert inventory.forward("ray-dashboard").target_host == "127.0.0.1"
    assert gpu.host_key == HOST_KEY.export_public_key().decode().split(" ", 2)[0] + " " + HOST_KEY_LINE.split()[2]
    listing = gpu.listing()
    assert listing == {"name": "gpu-1", "address": "10.0.3.17", "port": 22, "user": "berth-ops", "labels": ["gpu"],
                       "host_key_fingerprint": HOST_KEY.get_fingerprint("sha256"),
                       "host_key_algorithm": "ssh-ed25519", "client_key_source": "secretsmanager",
                       "runtime_labels": {}}
    assert bastion.listing()["client_key_source"] == "kms" and "AQICAHh2bmV3" not in str(bastion.listing())
    assert bastion.listing()["host_key_algorithm"] is None


def test_a_pinned_key_has_the_fingerprint_ssh_keygen_and_asyncssh_give_it():
    for key_type in ("ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"):
        key = asyncssh.generate_private_key(key_type)
        pin = parse_host_key(f"[10.0.0.1]:2222 {key.export_public_key().decode().strip()}")
        assert pin.fingerprint == key.get_fingerprint("sha256")
        assert pin.algorithm == key_type


def _replace(old: str, new: str) -> str:
    assert old in INVENTORY
    return INVENTORY.replace(old, new, 1)


@pytest.mark.parametrize(("text", "problem"), [
    (_replace("port: 2222", "port: 70000"), "line 11, column 11: hosts[1].port: Input should be less than or equal"),
    (_replace(HOST_KEY_LINE.split()[2], "AAAAB3NzaC1yc2E"), "line 7, column 15: hosts[0].host_key: the key is not "
                                                            "valid base64"),
    (_replace(HOST_KEY_LINE.split()[2], "AAAAB3NzaC1yc2EAAAADAQABAAABAQ=="), "hosts[0].host_key: the key's data is "
                                                                             "not a ssh-ed25519 key"),
    (_replace("ssh-ed25519", "ssh-dss"), "hosts[0].host_key: expected a known_hosts line"),
    (_replace(HOST_KEY.get_fingerprint("sha256"), "SHA256:abc"), "hosts[1].host_key: a SHA256: fingerprint is 43"),
    (_replace("secretsmanager:berth/ssh/gpu-1", "-----BEGIN OPENSSH PRIVATE KEY-----"),
     "hosts[0].client_key: client_key is a reference to the key"),
    (_replace("secretsmanager:berth/ssh/gpu-1", "vault:x"), "hosts[0].client_key: client_key must be '<source>:"),
    (_replace("address: 10.0.3.17", "address: '10.0.3.17; rm -rf /'"), "hosts[0].address: address must be a host"),
    (_replace("user: ops", "user: '-oProxyCommand=x'"), "line 12, column 11: hosts[1].user: String should match"),
    (_replace("name: bastion", "name: gpu-1"), "line 9, column 11: hosts[1].name: duplicate name 'gpu-1' (first at "
                                               "hosts[0])"),
    (_replace("hosts: [gpu-1, bastion]", "hosts: [gpu-1, gpu-9]"), "actions[1].hosts[1]: no host is named 'gpu-9'"),
    (_replace("labels: [gpu]\n    timeout", "labels: [cpu]\n    timeout"),
     "line 23, column 14: actions[0].labels[0]: no host has the label 'cpu'"),
    (_replace('"{path}"]', '"{paht}"]'), "actions[0]: the command uses undeclared parameters: paht"),
    (_replace(', "{unit}"]', "]"), "actions[1]: parameters declared but not used in the command: unit"),
    (_replace("[sudo, systemctl", '["{unit}", systemctl'), "actions[1]: command[0] is the program"),
    (_replace('"{path}"]', '"{path"]'), "actions[0]: command[4]: unmatched '{' at offset 0"),
    (_replace('pattern: "/var/log/[a-z0-9._/-]+"', 'pattern: "/var/log/[a-z"'),
     "actions[0].parameters.path.pattern: pattern is not a valid regular expression"),
    (_replace("minimum: 1, maximum: 5000", "minimum: 10, maximum: 5"), "actions[0].parameters.lines: minimum must"),
    (_replace("default: 200", "default: 9000"), "actions[0].parameters.lines: default must be between 1 and 5000"),
    (_replace("max_length: 200}", "max_length: 200, secret: true, default: /var/log/x}"),
     "a secret parameter has no default"),
    (_replace("values: [vllm, berth-worker]", "values: [vllm, vllm]"),
     "line 28, column 34: actions[1].parameters.unit.values: values must be distinct"),
    (_replace("type: enum", "type: float"), "actions[1].parameters.unit: Input tag 'float' found"),
    (_replace("hosts: [gpu-1, bastion]", "hosts: []"), "actions[1]: name the hosts or labels it may run on"),
    (_replace("timeout_seconds: 20", "timeout_seconds: 20\n    shell: true"), "actions[0].shell: Extra inputs are not"),
    (_replace("timeout_seconds: 20", "timeout_seconds: 20\n    timeout_seconds: 30"),
     "line 25, column 5: actions[0].timeout_seconds is given twice"),
    (_replace("forwards:", "forwards: ["), "line 31, column 3: expected the node content, but found '-'"),
    ("", "the inventory is empty"),
    ("hosts: 3", "line 1, column 8: hosts: Input should be a valid list"),
])
def test_inventory_problems_are_reported_at_their_line(text, problem):
    with pytest.raises(InventoryInvalid) as refused:
        parse_inventory(text)

    assert any(problem in line for line in refused.value.problems), refused.value.problems


# --- parameters and rendering ---------------------------------------------------------------------

ECHO = action(["printf", "%s|", "{text}", "{choice}", "{number}"],
              text={"type": "string", "pattern": r"[\s\S]*", "max_length": 200, "allow_leading_dash": True},
              choice={"type": "enum", "values": ["a; rm -rf /", "$(id)", "plain"]},
              number={"type": "integer", "minimum": -10, "maximum": 10, "allow_leading_dash": True})

INJECTIONS = ["; rm -rf /", "$(rm -rf /)", "`rm -rf /`", "x\nrm -rf /", "' ; rm -rf / '", '"; rm -rf /"', "*",
              "~", "a=b", "$HOME", "\\", "x && y || z", "|cat /etc/passwd", "> /etc/passwd", "{text}", "%s%n",
              "-rf", "--help", "'", "''", "\t", "é€😀", ""]


@pytest.mark.parametrize("value", INJECTIONS)
def test_every_value_is_exactly_one_word_for_the_remote_shell(value):
    rendered = render(ECHO, {"text": value, "choice": "a; rm -rf /", "number": -3})

    assert rendered.argv == ("printf", "%s|", value, "a; rm -rf /", "-3")
    assert shlex.split(rendered.command) == ["exec", *rendered.argv]  # a POSIX shell reads the same words
    assert rendered.command.startswith("exec 'printf' '%s|' '")


@pytest.mark.parametrize(("parameters", "problem"), [
    ({"text": "x", "choice": "other", "number": 1}, ("choice", "must be one of: a; rm -rf /, $(id), plain")),
    ({"text": "x", "choice": 3, "number": 1}, ("choice", "must be one of")),
    ({"text": "x", "choice": "plain", "number": 11}, ("number", "must be between -10 and 10")),
    ({"text": "x", "choice": "plain", "number": True}, ("number", "must be an integer")),
    ({"text": "x", "choice": "plain", "number": 1.5}, ("number", "must be an integer")),
    ({"text": "x", "choice": "plain", "number": "1; rm -rf /"}, ("number", "must be an integer")),
    ({"text": "x", "choice": "plain", "number": "05"}, ("number", "must be an integer")),
    ({"text": "x", "choice": "plain", "number": " 5"}, ("number", "must be an integer")),
    ({"text": "x", "choice": "plain", "number": "5\n"}, ("number", "must be an integer")),
    ({"text": "x" * 201, "choice": "plain", "number": 1}, ("text", "must be at most 200 characters")),
    ({"text": "a\0b", "choice": "plain", "number": 1}, ("text", "must not contain NUL characters")),
    ({"text": ["x"], "choice": "plain", "number": 1}, ("text", "must be a string")),
    ({"choice": "plain", "number": 1}, ("text", "is required")),
    ({"text": "x", "choice": "plain", "number": 1, "extra": "y"}, ("extra", "not a parameter of this action")),
])
def test_refused_values_say_which_parameter_and_why(parameters, problem):
    with pytest.raises(ParametersInvalid) as refused:
        render(ECHO, parameters)

    assert refused.value.problems[problem[0]].startswith(problem[1])


def test_a_pattern_must_match_the_whole_value():
    path = action(["tail", "--", "{path}"], path={"type": "string", "pattern": "/var/log/[a-z.]+"})

    assert render(path, {"path": "/var/log/syslog"}).argv == ("tail", "--", "/var/log/syslog")
    for value in ("/var/log/syslog; rm -rf /", "/var/log/syslog\n", "x/var/log/syslog", "/var/log/../../etc"):
        with pytest.raises(ParametersInvalid, match=r"path: must match the pattern /var/log/\[a-z.\]\+"):
            render(path, {"path": value})


def test_a_value_the_program_would_read_as_an_option_is_refused_unless_after_a_double_dash():
    bare = action(["tail", "-n", "{lines}", "{path}"], lines={"type": "integer", "minimum": -5, "maximum": 5},
                  path={"type": "string", "pattern": ".*"})
    guarded = action(["tail", "-n", "{lines}", "--", "{path}"], lines={"type": "integer", "minimum": -5, "maximum": 5},
                     path={"type": "string", "pattern": ".*"})
    inside = action(["grep", "--regexp={pattern}"], pattern={"type": "string", "pattern": ".*"})

    with pytest.raises(ParametersInvalid) as refused:
        render(bare, {"lines": -1, "path": "--output=/etc/passwd"})
    assert set(refused.value.problems) == {"lines", "path"}
    assert "would read it as an option" in refused.value.problems["path"]
    assert render(guarded, {"lines": 3, "path": "--output=/etc/passwd"}).argv[-1] == "--output=/etc/passwd"
    assert render(inside, {"pattern": "-v"}).argv == ("grep", "--regexp=-v")  # not at the start of its word


def test_braces_are_literal_when_doubled_and_a_placeholder_may_share_its_word():
    templated = action(["printf", "{{%s}}", "--unit={unit}.service"], unit={"type": "enum", "values": ["vllm"]})

    assert render(templated, {"unit": "vllm"}).argv == ("printf", "{%s}", "--unit=vllm.service")


def test_secret_parameters_stay_out_of_every_audit_view():
    login = action(["mysql", "--user={user}", "--password={password}"],
                   user={"type": "enum", "values": ["ops"]},
                   password={"type": "string", "pattern": "[A-Za-z0-9]+", "secret": True})

    rendered = render(login, {"user": "ops", "password": "hunter2"})

    assert "hunter2" in rendered.command
    assert rendered.audit_command == f"exec 'mysql' '--user=ops' {REDACTED}"
    assert rendered.audit_parameters == {"user": "ops", "password": REDACTED}
    assert "hunter2" not in repr(rendered)
    with pytest.raises(ParametersInvalid) as refused:
        render(login, {"user": "ops", "password": "hunter2; rm"})
    assert "hunter2" not in str(refused.value)
    assert audit_view(login, {"password": "hunter2; rm", "user": "x" * 300}) == {
        "password": REDACTED, "user": "x" * 256 + "…"}
    assert audit_view(None, {"password": "hunter2"}) == {"password": REDACTED}


def test_the_client_key_is_a_secret_of_the_job_never_part_of_its_payload():
    inventory = parse_inventory(INVENTORY)
    payload = SshRunPayload(host=inventory.host("gpu-1"), action=inventory.action("restart"), parameters={"unit": "vllm"})
    with pytest.raises(ValueError, match="client_private_key"):
        SshRunPayload.model_validate({**payload.model_dump(mode="json"), "client_private_key": CLIENT_KEY})

    secrets = SshSecrets.model_validate({"client_private_key": CLIENT_KEY, "secret_parameters": {"token": "t0ps3cret"}})
    assert CLIENT_KEY not in repr(secrets) and CLIENT_KEY not in secrets.model_dump_json()
    assert secrets.client_private_key.get_secret_value() == CLIENT_KEY


def test_each_failure_maps_to_one_audit_outcome():
    assert SshFailure.invalid_request.outcome is SshOutcome.validation_failed
    assert SshFailure.not_allowed.outcome is SshOutcome.denied
    assert {failure.outcome for failure in SshFailure} - {SshOutcome.validation_failed, SshOutcome.denied} == {
        SshOutcome.failed}
