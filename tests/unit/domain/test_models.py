"""The rules of models on runtimes: how a worker's progress moves an installation, how a job's end
does, what a profile's status is, and how little a credential's hint shows."""

from app.contract.messages import JobStatus, JobType
from app.contract.models import InstallationStatus, InstallMode
from app.domain.models import (
    EngineVerdict,
    ModelFacts,
    ModelInstallation,
    ModelProfile,
    SourceType,
    ending_of,
    progress_update,
    token_hint,
)


def _progress(status: str, progress: int, **extra) -> dict:
    return {"installation_status": status, "progress": progress, "installation_id": "minst_1", **extra}


def test_the_newest_progress_of_a_batch_is_what_its_installation_takes():
    update = progress_update([(7, "downloading", _progress("downloading", 40, bytes_done=4, bytes_total=10)),
                              (9, "verified", _progress("verifying", 91, commit="a" * 40)),
                              (8, "downloading", _progress("downloading", 89))])
    assert update is not None and update.seq == 9 and update.installation_id == "minst_1"
    changes = update.changes("now")
    assert changes["status"] == "verifying" and changes["progress"] == 91 and changes["progress_seq"] == 9
    assert changes["commit"] == "a" * 40 and "bytes_done" not in changes


def test_events_without_an_installation_or_with_malformed_progress_change_nothing():
    assert progress_update([(3, "x", {"installation_status": "downloading", "progress": 5})]) is None
    assert progress_update([(3, "x", {"note": "no progress here"})]) is None
    assert progress_update([(3, "x", _progress("sideways", 5))]) is None
    assert progress_update([(3, "x", _progress("downloading", 500))]) is None


def test_a_failure_keeps_the_progress_where_it_stopped_and_records_why():
    update = progress_update([(5, "not enough disk: 3 file(s) need 2 PB", _progress("failed", 1, failure="disk_full"))])
    assert update is not None
    changes = update.changes("now")
    assert "progress" not in changes
    assert (changes["status"], changes["failure"], changes["error"]) == ("failed", "disk_full",
                                                                        "not enough disk: 3 file(s) need 2 PB")


def test_ready_records_when():
    update = progress_update([(12, "serving", _progress("ready", 100, endpoint="http://127.0.0.1:1/v1"))])
    assert update is not None and update.changes("2026-01-01T00:00:00Z")["ready_at"] == "2026-01-01T00:00:00Z"


def test_a_job_that_ends_otherwise_than_complete_fails_its_installation_saying_how():
    assert ending_of(JobStatus.complete, None, JobType.model_pull) is None
    assert ending_of(JobStatus.expired, "expired", JobType.model_attach) == (
        "expired", "its job passed its TTL and the engine stopped")
    assert ending_of(JobStatus.cancelled, None, JobType.model_attach)[0] == "cancelled"
    assert ending_of(JobStatus.error, "dead-lettered", JobType.model_attach) == ("job_error", "dead-lettered")


def _facts(**changes) -> ModelFacts:
    base = dict(source_type=SourceType.huggingface, source_uri="hf://a/b", external_id="a/b", display_name="b",
                engines={"vllm": EngineVerdict(servable=True, reason="ok")})
    return ModelFacts(**{**base, **changes})


def _installation(status: InstallationStatus, **changes) -> ModelInstallation:
    base = dict(installation_id=f"minst_{status.value}", workspace_id="ws", profile_id="mprof_1", runtime_id="rt",
                install_mode=InstallMode.pull_from_source, serving_engine="vllm", model_name="a/b", status=status,
                created_at="t")
    return ModelInstallation(**{**base, **changes})


def test_a_profile_is_gated_incompatible_or_only_a_profile_until_an_installation_moves_it():
    assert _facts().own_status == "profile_only"
    assert _facts(access="needs_credential").own_status == "gated"
    assert _facts(access="denied").own_status == "gated"
    assert _facts(engines={"vllm": EngineVerdict(servable=False, reason="no")}).own_status == "incompatible"
    assert _facts(engines={"vllm": EngineVerdict(servable=None, reason="ask")}).own_status == "profile_only"


def test_a_profile_shows_its_furthest_installation():
    profile = ModelProfile(profile_id="mprof_1", workspace_id="ws", facts=_facts(), created_at="t")
    assert profile.status([]) == "profile_only"
    assert profile.status([_installation(InstallationStatus.downloading)]) == "downloading"
    failed_and_ready = [_installation(InstallationStatus.failed), _installation(InstallationStatus.ready)]
    assert profile.status(failed_and_ready) == "ready"
    assert profile.status([_installation(InstallationStatus.failed, failure="gated")]) == "gated"
    served_badly = _installation(InstallationStatus.failed, failure="engine_failed", local_path="/cache/snap")
    assert profile.status([served_badly]) == "installed"
    assert profile.status([_installation(InstallationStatus.ready, profile_id="mprof_other")]) == "profile_only"


def test_a_hint_shows_the_kind_and_four_characters_at_most():
    assert token_hint("hf_abcdefghijklmnopqrstuvwxyz") == "hf_...wxyz"
    assert token_hint("sk-shortish") == "...sh"
    assert token_hint("plainlongtokenwithoutprefix") == "...efix"
