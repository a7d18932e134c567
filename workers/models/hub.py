"""The Hugging Face hub as model pulls see it: a revision pinned to a commit with its files, an
access check for gated repos, and every hub failure turned into a `PullFailed` a user can act on.

Tokens: a pull uses the token its job carries, or none. The host's own credentials (HF_TOKEN, a
stored login) are never used: on a shared runtime they would open one workspace's gated or private
repos to every other. A token never appears in a message: hub errors are scrubbed of it.

Xet: HF_HUB_DISABLE_XET defaults to 1 here, so every byte comes through the resolve endpoint, where
progress, resume and the disk check on the cache hold (Xet keeps a chunk cache of its own outside
it). huggingface_hub reads the variable once at import, so the setting is mirrored into its
constants when another module imported it first.
"""

import os
from dataclasses import dataclass

from app.contract.models import FailureCode

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")

from huggingface_hub import HfApi, constants, get_hf_file_metadata, hf_hub_url  # noqa: E402
from huggingface_hub.errors import (  # noqa: E402
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from workers.models.files import RepoFile  # noqa: E402

try:  # huggingface_hub 2.x speaks HTTP through httpx2; 1.x used httpx
    import httpx2 as hub_http
except ImportError:
    import httpx as hub_http  # type: ignore[no-redef]

constants.HF_HUB_DISABLE_XET = os.environ["HF_HUB_DISABLE_XET"].upper() in constants.ENV_VARS_TRUE_VALUES
HUB_TIMEOUT_SECONDS = 30.0


class PullFailed(Exception):
    def __init__(self, code: FailureCode, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Revision:
    model: str
    commit: str
    files: list[RepoFile]
    gated: bool
    private: bool


def endpoint() -> str | None:
    """HF_ENDPOINT as set now (huggingface_hub froze it at import)."""
    return os.environ.get("HF_ENDPOINT") or None


def resolve(model: str, revision: str, token: str | None) -> Revision:
    """`revision` of `model` pinned to its commit, with every file's size and hashes."""
    api = HfApi(endpoint=endpoint(), token=token or False)
    try:
        info = api.model_info(model, revision=revision, files_metadata=True, timeout=HUB_TIMEOUT_SECONDS)
    except Exception as error:
        raise describe(error, model, revision, token) from error
    files = [
        RepoFile(sibling.rfilename, sibling.size or 0, sibling.blob_id or "",
                 sibling.lfs.sha256 if sibling.lfs else None)
        for sibling in info.siblings or []
    ]
    if info.sha is None or any(not file.git_oid for file in files):
        raise PullFailed(FailureCode.hub_unreachable, f"the hub answered without file hashes for {model}")
    return Revision(info.id, info.sha, files, gated=bool(info.gated), private=bool(info.private))


def check_access(revision: Revision, path: str, token: str | None) -> None:
    """A gated repo shows its metadata to anyone; only a file request tells whether the token may
    download. One HEAD, before any disk is spent."""
    url = hf_hub_url(revision.model, path, revision=revision.commit, endpoint=endpoint())
    try:
        get_hf_file_metadata(url, token=token or False, timeout=HUB_TIMEOUT_SECONDS, endpoint=endpoint())
    except Exception as error:
        raise describe(error, revision.model, revision.commit, token) from error


def describe(error: BaseException, model: str, revision: str, token: str | None) -> PullFailed:
    """A hub or transfer failure as a PullFailed, its message scrubbed of the token."""
    failure = _classify(error, model, revision, token is not None)
    if token:
        return PullFailed(failure.code, str(failure).replace(token, "[token]"))
    return failure


def _classify(error: BaseException, model: str, revision: str, has_token: bool) -> PullFailed:
    if isinstance(error, PullFailed):
        return error
    if isinstance(error, GatedRepoError):  # before RepositoryNotFoundError: it is a subclass
        if has_token:
            return PullFailed(FailureCode.gated, f"{model} is gated and the token given has no access to it;"
                              " request access on the hub with the token's account, or use another credential")
        return PullFailed(FailureCode.gated, f"{model} is gated: add a Hugging Face credential from an account"
                          " that was granted access")
    if isinstance(error, RevisionNotFoundError):
        return PullFailed(FailureCode.revision_not_found, f"revision {revision!r} not found in {model}")
    if isinstance(error, RepositoryNotFoundError):
        hint = "or the token given cannot see it" if has_token else "or it is private and needs a credential"
        return PullFailed(FailureCode.not_found, f"model {model} not found on the hub ({hint})")
    if isinstance(error, HFValidationError):
        return PullFailed(FailureCode.invalid, f"{model!r} at {revision!r} is not a valid repo id and revision")
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        status = error.response.status_code
        if status == 401:
            return PullFailed(FailureCode.unauthorized, "the hub refused the credential (401): it is invalid"
                              " or expired")
        return PullFailed(FailureCode.hub_unreachable, f"the hub answered {status} for {model}")
    if isinstance(error, (hub_http.TransportError, LocalEntryNotFoundError, ConnectionError, TimeoutError)):
        return PullFailed(FailureCode.hub_unreachable, f"the model hub ({endpoint() or 'huggingface.co'}) could"
                          f" not be reached: {type(error).__name__}; files already downloaded are kept")
    if isinstance(error, OSError) and "Consistency check failed" in str(error):
        return PullFailed(FailureCode.hub_unreachable, "a download ended short (the connection broke);"
                          " files already downloaded are kept")
    raise error
