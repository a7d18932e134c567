"""A sandbox's state as its job and the worker's reports say; usage totals; credential expiry."""

import pytest

from app.contract.messages import EventStatus, JobStatus, JobType
from app.domain.accounts import Credential
from app.domain.activity import UsageCount, usage_report
from app.domain.jobs import Job, JobEvent
from app.domain.sandboxes import sandbox_of, tool_paths, uncovered_paths


def _sandbox_job(status: JobStatus) -> Job:
    return Job(job_id="job_1", workspace_id="ws_a", type=JobType.mcp_test, status=status, ttl_seconds=60,
               created_at="", created_epoch=0.0, deadline=60.0)


def _report(state: str, **data) -> JobEvent:
    return JobEvent(seq=4, step="sandbox", status=EventStatus.running, data={"state": state, **data})


def test_an_ended_job_decides_the_server_state_whatever_the_last_report_said():
    for status in (JobStatus.complete, JobStatus.cancelled, JobStatus.expired):
        assert sandbox_of(_sandbox_job(status), _report("running")).state == "ended"
    assert sandbox_of(_sandbox_job(JobStatus.error), _report("running")).state == "failed"


def test_a_live_job_shows_the_workers_last_report():
    assert sandbox_of(_sandbox_job(JobStatus.queued), None).state == "starting"
    running = sandbox_of(_sandbox_job(JobStatus.running), _report("running", isolation="bwrap"))
    assert (running.state, running.isolation) == ("running", "bwrap")
    assert sandbox_of(_sandbox_job(JobStatus.running), _report("stopped")).state == "stopped"


def test_usage_totals_add_up_by_kind_and_subkind():
    rows = (("2026-01-01", "jobs", "agent.run", 2), ("2026-01-02", "jobs", "agent.run", 3),
            ("2026-01-02", "jobs", "mcp.test", 1), ("2026-01-02", "runtime_seconds", "agent.run", 1.5))
    counts = [UsageCount(workspace_id="ws_a", day=day, kind=kind, subkind=sub, amount=amount)
              for day, kind, sub, amount in rows]
    report = usage_report(counts, since="2026-01-01", days=30)
    assert report.totals == {"jobs": {"agent.run": 5, "mcp.test": 1}, "runtime_seconds": {"agent.run": 1.5}}
    assert report.daily == counts


def test_a_credential_expires_at_its_epoch_and_one_without_expiry_never_does():
    credential = Credential(digest="d", kind="session", workspace_id="ws_a", subject_id="usr_1", expires_epoch=100)
    assert not credential.expired(99.9) and credential.expired(100)
    assert not Credential(digest="d", kind="api_key", workspace_id="ws_a", subject_id="key_1").expired(10**12)


def test_an_ended_sandbox_keeps_the_isolation_and_limits_of_its_last_report():
    failed = sandbox_of(_sandbox_job(JobStatus.error),
                        _report("failed", isolation="bubblewrap", limits={"sandbox_disk_mb": 256}))
    assert (failed.state, failed.isolation, failed.limits) == ("failed", "bubblewrap", {"sandbox_disk_mb": 256})
    assert sandbox_of(_sandbox_job(JobStatus.error), None).isolation is None


@pytest.mark.parametrize("payload, needed", [
    ({"start_command": "npx -y @modelcontextprotocol/server-memory"}, []),
    ({"start_command": "node /opt/mcp/everything/dist/index.js stdio"}, ["/opt/mcp/everything/dist/index.js"]),
    ({"start_command": "python3 /usr/lib/python3/server.py --db=/tmp/x /sandbox/y"}, []),  # every sandbox sees those
    # A sandbox's /tmp starts empty: a script there is the host's (a checkout under /tmp, say).
    ({"start_command": "python3 /tmp/checkout/server.py --db=/tmp/x"}, ["/tmp/checkout/server.py"]),
    ({"start_command": "uv run --directory=/srv/tools/../tools/weather server"}, ["/srv/tools/weather"]),
    ({"start_command": "node index.js", "tool_dirs": ["/opt/mcp/everything"]}, ["/opt/mcp/everything"]),
    ({"start_command": "sh -c 'unterminated"}, []),
])
def test_the_host_paths_a_sandbox_needs_from_a_tool_directory(payload, needed):
    assert tool_paths(payload) == needed


def test_a_tool_directory_covers_what_lies_below_it_and_nothing_beside_it():
    assert uncovered_paths(["/opt/mcp/a/index.js", "/opt/mcpx/b"], ["/opt/mcp"]) == ["/opt/mcpx/b"]
    assert uncovered_paths(["/opt/mcp"], ["/opt/mcp/"]) == []
