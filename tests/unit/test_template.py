"""template.yaml, checked offline: cfn-lint is clean, and the template agrees with the code.

cfn-lint runs the SAM transform itself, so this needs no AWS account and no `sam` CLI.
"""

import ast
import json
from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import decode

from app.settings import Settings
from app.store import keys
from app.store.schema import table_definition
from app.store.table import OPEN_INDEX, TTL_ATTRIBUTE

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
FUNCTIONS = ("ApiFunction", "SweeperFunction", "DeadLetterFunction", "MarketplaceRefreshFunction")
POLICIES = tuple(f"{name}Policy" for name in FUNCTIONS)


@pytest.fixture(scope="module")
def template() -> dict:
    # cfn-lint's decoder understands the short intrinsic tags (!Ref, !Sub, !GetAtt, ...).
    loaded, errors = decode(str(TEMPLATE))
    assert not errors, [str(e) for e in errors]
    return loaded


@pytest.fixture(scope="module")
def resources(template) -> dict:
    return template["Resources"]


def _environment(template: dict) -> dict:
    """Every environment variable a function sees: Globals plus each function's own."""
    variables = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    for name in FUNCTIONS:
        own = template["Resources"][name]["Properties"].get("Environment", {}).get("Variables", {})
        variables.update(own)
    return variables


def _statements(resources: dict, policy: str) -> list[dict]:
    return resources[policy]["Properties"]["PolicyDocument"]["Statement"]


def _actions(statement: dict) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


# --- lint ------------------------------------------------------------------------------------


def test_cfn_lint_reports_nothing():
    """No errors and no warnings (E and W rules), in a few regions."""
    matches = lint_file(TEMPLATE, config=ManualArgs(regions=["us-east-1", "eu-west-1", "ap-southeast-2"]))
    assert matches == [], "\n".join(f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches)


# --- handlers --------------------------------------------------------------------------------


def _defines_handler(source: str) -> bool:
    """True when a module defines or imports a top-level name `handler` (no import needed)."""
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "handler":
            return True
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "handler" for t in node.targets
        ):
            return True
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "handler":
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any(
            (alias.asname or alias.name) == "handler" for alias in node.names
        ):
            return True
    return False


@pytest.mark.parametrize(
    ("function", "module"),
    [
        ("ApiFunction", "functions/api"),
        ("SweeperFunction", "functions/sweeper"),
        ("DeadLetterFunction", "functions/dead_letters"),
        ("MarketplaceRefreshFunction", "functions/marketplace_refresh"),
    ],
)
def test_handlers_exist_on_disk(resources, function, module):
    handler = resources[function]["Properties"]["Handler"]
    assert handler == f"{module}.handler"
    path = ROOT / f"{module}.py"
    assert path.is_file(), f"{function} points at {handler} but {path.relative_to(ROOT)} does not exist"
    assert _defines_handler(path.read_text()), f"{path.relative_to(ROOT)} has no top-level `handler`"


# --- table -----------------------------------------------------------------------------------


def test_table_matches_the_local_definition(resources):
    """The table the local stack creates (app.store.schema) is the one CloudFormation creates."""
    props = resources["Table"]["Properties"]
    local = table_definition("berth")

    assert props["BillingMode"] == local["BillingMode"] == "PAY_PER_REQUEST"
    assert sorted(props["AttributeDefinitions"], key=json.dumps) == sorted(
        local["AttributeDefinitions"], key=json.dumps
    )
    assert props["KeySchema"] == local["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert props["GlobalSecondaryIndexes"] == local["GlobalSecondaryIndexes"]


def test_table_index_ttl_and_protection(resources):
    table = resources["Table"]
    props = table["Properties"]
    assert [i["IndexName"] for i in props["GlobalSecondaryIndexes"]] == [OPEN_INDEX]
    assert props["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"


def test_the_open_index_is_read_only_where_system_work_needs_it(resources):
    """The sweeper scans open work; the API dispatches waiting jobs when a runtime comes online."""
    index_arn = {"Fn::Sub": f"${{Table.Arn}}/index/{OPEN_INDEX}"}
    for policy in ("ApiFunctionPolicy", "SweeperFunctionPolicy", "DeadLetterFunctionPolicy"):
        uses_index = any(s["Resource"] == index_arn for s in _statements(resources, policy))
        assert uses_index == (policy != "DeadLetterFunctionPolicy"), policy


# --- settings --------------------------------------------------------------------------------


def test_every_berth_variable_is_a_setting(template):
    fields = set(Settings.model_fields)
    names = [k for k in _environment(template) if k.startswith("BERTH_")]
    assert names, "no BERTH_ variables found"
    unknown = [k for k in names if k.removeprefix("BERTH_").lower() not in fields]
    assert not unknown, f"not fields of app.settings.Settings: {unknown}"


def test_literal_values_parse_as_settings(template, monkeypatch):
    """The plain values in the template are valid for their settings (e.g. mode=aws, mailer=ses)."""
    for key, value in _environment(template).items():
        if key.startswith("BERTH_") and isinstance(value, str):
            monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.mode == "aws"
    assert settings.mailer == "ses"
    assert str(settings.data_dir) == "/tmp/berth"


@pytest.mark.parametrize(("variable", "condition", "name", "values"), [
    ("BERTH_OPERATOR_EMAILS", "HasOperatorEmails", "Emails", ["a@example.com", "b@example.com"]),
    ("BERTH_MCP_ALLOWED_HOSTS", "HasMcpAllowedHosts", "Hosts", ["api.example.com", "cdn.example.net"]),
    ("BERTH_MCP_ALLOWED_ORIGINS", "HasMcpAllowedOrigins", "Origins", ["https://console.example.com"]),
])
def test_list_parameters_render_as_json_lists(template, monkeypatch, variable, condition, name, values):
    value = _environment(template)[variable]
    used, when_set, otherwise = value["Fn::If"]
    pattern, substitutions = when_set["Fn::Sub"]
    assert used == condition
    separator = substitutions[name]["Fn::Join"][0]
    field = variable.removeprefix("BERTH_").lower()
    monkeypatch.setenv(variable, pattern.replace("${" + name + "}", separator.join(values)))
    assert getattr(Settings(), field) == values
    monkeypatch.setenv(variable, otherwise)
    assert getattr(Settings(), field) == []


# --- queues and IAM --------------------------------------------------------------------------


def _queue_patterns(template) -> tuple[dict, dict]:
    """The ARN patterns of workspace-hosted and of shared runtimes' queues, as the template writes them."""
    prefix = template["Globals"]["Function"]["Environment"]["Variables"]["BERTH_QUEUE_PREFIX"]["Fn::Sub"]
    arn = "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:"
    return {"Fn::Sub": f"{arn}{prefix}-rt-*"}, {"Fn::Sub": f"{arn}{prefix}-shared-rt-*"}


def _resources_of(statement: dict) -> list:
    resource = statement["Resource"]
    return resource if isinstance(resource, list) else [resource]


def test_the_api_and_sweeper_reach_both_kinds_of_runtime_queue(template, resources):
    tenant, shared = _queue_patterns(template)
    api = [s for s in _statements(resources, "ApiFunctionPolicy") if s.get("Sid") == "RuntimeQueues"]
    assert api and _resources_of(api[0]) == [tenant, shared]
    assert _actions(api[0]) == {
        "sqs:CreateQueue",
        "sqs:SendMessage",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueUrl",
        "sqs:GetQueueAttributes",
        "sqs:SetQueueAttributes",
        "sqs:DeleteQueue",
    }
    sweeper = [s for s in _statements(resources, "SweeperFunctionPolicy") if s.get("Sid") == "RuntimeQueues"]
    assert sweeper and _resources_of(sweeper[0]) == [tenant, shared]


def test_the_worker_role_reads_only_the_shared_fleets_queues(template, resources):
    """A compromised fleet worker cannot read the queue of a runtime a workspace hosts: the queue
    names app.queues makes for each kind fall under the template's patterns accordingly."""
    from fnmatch import fnmatchcase

    from app.queues import Queues

    tenant, shared = _queue_patterns(template)
    worker = resources["WorkerTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert [_resources_of(s) for s in worker] == [[shared]]
    assert set().union(*map(_actions, worker)) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueUrl",
    }

    settings = Settings(queue_prefix="berth-prod")
    queues = Queues(clients=None, settings=settings)  # naming needs no AWS client
    as_deployed = {name: pattern["Fn::Sub"].rsplit(":", 1)[1].replace("${Stage}", "prod")
                   for name, pattern in (("tenant", tenant), ("shared", shared))}
    for shared_runtime in (False, True):
        for name in queues.runtime_queue_names("rt_0123456789abcdefghjkmnpqr", shared=shared_runtime):
            assert fnmatchcase(name, as_deployed["shared"]) == shared_runtime, name
            assert fnmatchcase(name, as_deployed["tenant"]) == (not shared_runtime), name


def test_no_wildcard_resources_in_function_policies(resources):
    for policy in POLICIES:
        for statement in _statements(resources, policy):
            assert statement["Resource"] != "*", (policy, statement.get("Sid"))
            assert not any(a.endswith(":*") for a in _actions(statement)), (policy, statement.get("Sid"))


def test_only_the_api_sends_mail_and_uses_the_key(resources):
    for policy in POLICIES:
        actions = set().union(*map(_actions, _statements(resources, policy)))
        is_api = policy == "ApiFunctionPolicy"
        assert ("ses:SendEmail" in actions) == is_api, policy
        assert any(a.startswith("kms:") for a in actions) == is_api, policy


def test_dead_letter_consumer(resources):
    queue = resources["DeadLetterQueue"]["Properties"]
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert queue["SqsManagedSseEnabled"] is True
    event = resources["DeadLetterFunction"]["Properties"]["Events"]["DeadLetters"]
    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert event["Properties"]["BatchSize"] == 10
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_outputs(template):
    assert set(template["Outputs"]) == {
        "ApiUrl",
        "TableName",
        "DeadLetterQueueUrl",
        "KmsKeyArn",
        "WorkerTaskRoleArn",
        "FilesBucketName",
    }


def test_the_worker_task_definition_sets_only_settings_the_worker_reads():
    from workers.config import WorkerConfig

    task = json.loads((ROOT / "infra" / "ecs-worker-task.json").read_text())
    (container,) = task["containerDefinitions"]
    names = {entry["name"] for entry in container["environment"] + container["secrets"]}
    berth_names = {name for name in names if name.startswith("BERTH_")}
    assert berth_names and all(name.startswith("BERTH_WORKER_") for name in berth_names)
    fields = {f"BERTH_WORKER_{field.upper()}" for field in WorkerConfig.model_fields}
    assert berth_names <= fields, berth_names - fields
    assert {"BERTH_WORKER_API_URL", "BERTH_WORKER_JOIN_TOKEN"} <= berth_names


def test_the_api_reads_one_model_source_bucket_and_only_when_one_is_given(resources):
    policy = resources["ModelSourcePolicy"]
    assert policy["Condition"] == "HasModelSourceBucket"
    statements = _statements(resources, "ModelSourcePolicy")
    assert set().union(*map(_actions, statements)) == {"s3:ListBucket", "s3:GetObject"}
    assert all("${ModelSourceBucket}" in str(statement["Resource"]) for statement in statements)


# --- the marketplace and installations' files ---------------------------------------------------


def test_the_marketplace_refreshes_on_a_schedule_touching_only_its_partition(resources):
    function = resources["MarketplaceRefreshFunction"]["Properties"]
    assert function["Events"]["Hourly"] == {"Type": "Schedule", "Properties": {"Schedule": "rate(1 hour)"}}
    assert function["Timeout"] == 300
    statements = _statements(resources, "MarketplaceRefreshFunctionPolicy")
    actions = set().union(*map(_actions, statements))
    assert {a.split(":")[0] for a in actions} == {"logs", "dynamodb"}
    (table,) = [s for s in statements if s["Sid"] == "Marketplace"]
    assert table["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [keys.MARKET]}}
    assert "dynamodb:UpdateItem" not in actions


def test_registry_urls_render_as_a_json_list(template, monkeypatch):
    value = template["Globals"]["Function"]["Environment"]["Variables"]["BERTH_MCP_REGISTRY_URLS"]
    pattern, substitutions = value["Fn::Sub"]
    separator = substitutions["Urls"]["Fn::Join"][0]
    default = template["Parameters"]["McpRegistryUrls"]["Default"]
    monkeypatch.delenv("BERTH_MCP_REGISTRY_URLS", raising=False)
    assert Settings().mcp_registry_urls == [default]  # the template's default is the code's
    monkeypatch.setenv("BERTH_MCP_REGISTRY_URLS", pattern.replace("${Urls}", separator.join([default, "https://b"])))
    assert Settings().mcp_registry_urls == [default, "https://b"]


def test_the_files_bucket_is_private_encrypted_tls_only_and_cleans_up_uploads(resources):
    bucket = resources["FilesBucket"]
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == bucket["UpdateReplacePolicy"] == "Retain"
    (encryption,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms",
                                                           "KMSMasterKeyID": {"Fn::GetAtt": ["KmsKey", "Arn"]}}
    assert all(props["PublicAccessBlockConfiguration"].values()) and len(props["PublicAccessBlockConfiguration"]) == 4
    assert props["LifecycleConfiguration"]["Rules"][0]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    (tls,) = resources["FilesBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert tls["Effect"] == "Deny" and tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_only_the_api_touches_installation_files_and_only_under_their_prefix(resources):
    for policy in POLICIES:
        s3 = [s for s in _statements(resources, policy) if any(a.startswith("s3:") for a in _actions(s))]
        if policy != "ApiFunctionPolicy":
            assert s3 == [], policy
            continue
        (files,) = s3
        assert _actions(files) == {"s3:PutObject", "s3:GetObject", "s3:DeleteObject"}
        assert files["Resource"] == {"Fn::Sub": "${FilesBucket.Arn}/installations/*"}


def test_infra_ssh_reads_its_inventory_and_client_keys_only_where_configured(template, resources):
    """One object or one parameter for the inventory, keys only under a named path or prefix, each
    policy present only when its parameter is set; BERTH_SSH_INVENTORY says which source."""
    expected = {
        "SshInventoryObjectPolicy": ("HasSshInventoryObject", "s3:GetObject", "${SshInventoryObject}"),
        "SshInventoryParameterPolicy": ("HasSshInventoryParameter", "ssm:GetParameter", "${SshInventoryParameter}"),
        "SshClientKeyParametersPolicy": ("HasSshClientKeyParameters", "ssm:GetParameter",
                                         "${SshClientKeyParameterPath}*"),
        "SshClientKeySecretsPolicy": ("HasSshClientKeySecrets", "secretsmanager:GetSecretValue",
                                      "${SshClientKeySecretPrefix}*"),
    }
    for name, (condition, action, resource_end) in expected.items():
        policy = resources[name]
        (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
        assert policy["Condition"] == condition and policy["Properties"]["RoleName"] == {"Ref": "ApiFunctionRole"}
        assert _actions(statement) == {action} and statement["Resource"]["Fn::Sub"].endswith(resource_end), name
    source = _environment(template)["BERTH_SSH_INVENTORY"]["Fn::If"]
    assert source[0] == "HasSshInventoryObject" and source[1] == {"Fn::Sub": "s3://${SshInventoryObject}"}
    assert source[2]["Fn::If"][1] == {"Fn::Sub": "ssm:${SshInventoryParameter}"} and source[2]["Fn::If"][2] == ""
