"""A real, local Hugging Face Hub HTTP server for tests (stdlib only).

It answers the endpoints huggingface_hub 2.x calls when pointed at it through `endpoint=` or
`HF_ENDPOINT` — model search, model info, tree listing and file resolve (HEAD/GET with Range) —
with the shapes and error headers the real hub uses, so the client's own parsing and error
mapping run unmodified:

    with make_demo_hub() as hub:
        HfApi(endpoint=hub.url).model_info(DEMO_LLAMA)
        snapshot_download(DEMO_LLAMA, endpoint=hub.url, cache_dir=tmp_path)

huggingface_hub freezes HF_ENDPOINT and HF_HUB_DISABLE_XET into `huggingface_hub.constants`
when it is first imported, so in-process code should pass `endpoint=hub.url` explicitly;
`hub.environment()` gives the variables for subprocesses (and for code that reads them late).

Like the real hub, metadata of gated repos is public while their files need a granted token
(401 without a token, 403 with one that was not granted, both `X-Error-Code: GatedRepo`);
private and unknown repos are indistinguishable (404, `X-Error-Code: RepoNotFound`).
"""

import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

# Files the hub keeps in LFS: the usual weight formats (per the default .gitattributes) and
# anything too big for plain git. Their ETag is the content sha256, as huggingface_hub expects.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".h5", ".msgpack", ".model")
LFS_MIN_SIZE = 10 * 1024 * 1024

# The subset of config.json the hub exposes as `config` in model info.
EXPOSED_CONFIG_KEYS = ("architectures", "model_type", "quantization_config")



# --- repository content ----------------------------------------------------------------------


def _git_blob_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass(frozen=True)
class _Blob:
    path: str
    content: bytes
    git_oid: str  # of the git blob; for LFS files that blob is the pointer file
    lfs_sha256: str | None = None
    lfs_pointer_size: int | None = None
    declared_size: int | None = None  # what the metadata claims, for a file too big to hold in a test

    @classmethod
    def of(cls, path: str, content: bytes, declared_size: int | None = None) -> "_Blob":
        size = len(content) if declared_size is None else declared_size
        if not path.endswith(LFS_SUFFIXES) and size < LFS_MIN_SIZE:
            return cls(path, content, _git_blob_oid(content))
        sha256 = hashlib.sha256(content).hexdigest()
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
        return cls(path, content, _git_blob_oid(pointer), sha256, len(pointer), declared_size)

    @property
    def size(self) -> int:
        return len(self.content) if self.declared_size is None else self.declared_size

    @property
    def etag(self) -> str:
        return self.lfs_sha256 or self.git_oid

    def tree_entry(self) -> dict:
        entry = {"type": "file", "oid": self.git_oid, "size": self.size, "path": self.path}
        if self.lfs_sha256:
            entry["lfs"] = {"oid": self.lfs_sha256, "size": self.size, "pointerSize": self.lfs_pointer_size}
        return entry

    def sibling(self) -> dict:
        sibling = {"rfilename": self.path, "blobId": self.git_oid, "size": self.size}
        if self.lfs_sha256:
            sibling["lfs"] = {"sha256": self.lfs_sha256, "size": self.size, "pointerSize": self.lfs_pointer_size}
        return sibling


@dataclass(frozen=True)
class _Commit:
    sha: str
    blobs: dict[str, _Blob]
    license: str | None
    pipeline_tag: str | None
    library_name: str | None
    user_tags: tuple[str, ...]
    config: dict | None
    safetensors: dict | None
    date: str

    @property
    def tags(self) -> list[str]:
        """Tags as the hub derives them: library, formats, model type, task, license, then the card's."""
        derived = [
            self.library_name,
            "safetensors" if any(path.endswith(".safetensors") for path in self.blobs) else None,
            (self.config or {}).get("model_type"),
            self.pipeline_tag,
            f"license:{self.license}" if self.license else None,
            *self.user_tags,
        ]
        return list(dict.fromkeys(tag for tag in derived if tag))

    @property
    def card_data(self) -> dict:
        card = {"license": self.license, "library_name": self.library_name, "pipeline_tag": self.pipeline_tag}
        card = {key: value for key, value in card.items() if value}
        if self.user_tags:
            card["tags"] = list(self.user_tags)
        return card


@dataclass
class _Repo:
    repo_id: str
    created_at: str
    object_id: str
    private: bool = False
    gated: str | bool = False
    downloads: int = 0
    likes: int = 0
    commits: dict[str, _Commit] = field(default_factory=dict)
    head: str = ""

    def resolve(self, revision: str) -> _Commit | None:
        return self.commits.get(self.head if revision == "main" else revision)


def _parse_safetensors_parameters(content: bytes) -> dict[str, int] | None:
    """Parameter counts per dtype from a safetensors header, the way the hub computes them."""
    try:
        header_size = int.from_bytes(content[:8], "little")
        header = json.loads(content[8 : 8 + header_size])
        counts: dict[str, int] = {}
        for name, tensor in header.items():
            if name != "__metadata__":
                counts[tensor["dtype"]] = counts.get(tensor["dtype"], 0) + math.prod(tensor["shape"])
        return counts
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _safetensors_summary(blobs: dict[str, _Blob], override_total: int | None) -> dict | None:
    if override_total is not None:
        # Stands in for a checkpoint too big to ship in a test; BF16 is what most modern ones use.
        return {"parameters": {"BF16": override_total}, "total": override_total}
    counts: dict[str, int] = {}
    for blob in blobs.values():
        if blob.path.endswith(".safetensors"):
            for dtype, count in (_parse_safetensors_parameters(blob.content) or {}).items():
                counts[dtype] = counts.get(dtype, 0) + count
    return {"parameters": counts, "total": sum(counts.values())} if counts else None


def _exposed_config(files: dict[str, bytes]) -> dict | None:
    """What the hub shows as `config`: a subset of config.json, or the diffusers pipeline class."""
    try:
        if "config.json" in files:
            config = json.loads(files["config.json"])
            return {key: config[key] for key in EXPOSED_CONFIG_KEYS if key in config}
        if "model_index.json" in files:
            return {"diffusers": {"_class_name": json.loads(files["model_index.json"])["_class_name"]}}
    except (ValueError, KeyError, TypeError):
        pass  # the real hub shows no config for unparsable files either
    return None


# Nothing trends on a test hub: likes stand in for the trending score.
_MODEL_SORT_KEYS = {
    "downloads": lambda repo: repo.downloads,
    "likes": lambda repo: repo.likes,
    "trendingScore": lambda repo: repo.likes,
    "lastModified": lambda repo: repo.commits[repo.head].date,
    "createdAt": lambda repo: repo.created_at,
    "id": lambda repo: repo.repo_id,
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --- HTTP plumbing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    range: str | None
    status: int
    bytes_sent: int = 0  # of the body, as written before the connection ended


@dataclass
class _Request:
    method: str
    segments: list[str]  # still percent-encoded: a revision or folder may contain an encoded "/"
    query: dict[str, list[str]]
    token: str | None
    range: str | None

    def flag(self, name: str) -> bool:
        return self.param(name, "").lower() in ("1", "true")

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class _Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    drop_after: int | None = None  # send only this many body bytes, then close the connection
    unreachable_after: bool = False  # and then hang up on every request until `hub.unreachable` is cleared

    @classmethod
    def json(cls, payload, status: int = 200, headers: dict[str, str] | None = None) -> "_Response":
        body = json.dumps(payload).encode()
        return cls(status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, body)

    @classmethod
    def error(cls, status: int, code: str | None, message: str, headers: dict[str, str] | None = None) -> "_Response":
        error_headers = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {}), **(headers or {})}
        return cls.json({"error": message}, status, error_headers)


class _Unsatisfiable(Exception):
    pass


_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single-range request, None to serve the whole file."""
    match = _RANGE.match((header or "").strip())
    if not match or match.groups() == ("", ""):
        return None  # absent, malformed or multi-range: ignoring the header is allowed
    first, last = match.groups()
    if first == "":
        if int(last) == 0 or size == 0:
            raise _Unsatisfiable
        return max(size - int(last), 0), size - 1
    if int(first) >= size:
        raise _Unsatisfiable
    if last and int(last) < int(first):
        return None
    return int(first), min(int(last), size - 1) if last else size - 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real hub; huggingface_hub pools connections
    server: "_Server"

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        authorization = self.headers.get("Authorization", "")
        request = _Request(
            method=self.command,
            segments=[segment for segment in url.path.split("/") if segment],
            query=parse_qs(url.query),
            token=authorization.removeprefix("Bearer ").strip() or None,
            range=self.headers.get("Range"),
        )
        hub = self.server.hub
        if hub.unreachable:
            self.close_connection = True  # hang up without an answer, like a host that went away
            return
        hub._wait_latency(unquote(url.path))
        response = hub._handle(request)
        self.send_response(response.status)
        for name, value in {**response.headers, "Content-Length": str(len(response.body))}.items():
            self.send_header(name, value)
        self.end_headers()
        sent = 0
        try:
            if self.command != "HEAD":
                sent = self._write_body(response, hub._bandwidth_for(unquote(url.path)))
        finally:
            hub._record(RecordedRequest(self.command, unquote(url.path), request.range, response.status, sent))
        if response.drop_after is not None:
            self.close_connection = True
            if response.unreachable_after:
                hub.unreachable = True

    def _write_body(self, response: "_Response", bytes_per_second: float | None) -> int:
        body = response.body if response.drop_after is None else response.body[: response.drop_after]
        if bytes_per_second is None:
            self.wfile.write(body)
            self.wfile.flush()
            return len(body)
        piece = max(1, int(bytes_per_second / 20))  # twenty writes a second
        sent = 0
        for start in range(0, len(body), piece):
            chunk = body[start : start + piece]
            time.sleep(len(chunk) / bytes_per_second)  # paced before it is sent: the last byte ends the request
            try:
                self.wfile.write(chunk)
                self.wfile.flush()
            except OSError:  # the client went away (a cancelled pull)
                self.close_connection = True
                break
            sent += len(chunk)
        return sent

    def log_message(self, format: str, *args) -> None:
        pass  # tests read `hub.requests` instead of stderr noise


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hub: "LocalHub"):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hub = hub


# --- the hub ---------------------------------------------------------------------------------


class LocalHub:
    """An in-memory model hub served over HTTP on 127.0.0.1 (a free port, chosen on `start`)."""

    def __init__(self, *, granted_tokens: Iterable[str] = ()):
        # Tokens with access to every gated and private repo; any other token is a user without access.
        self.granted_tokens = frozenset(granted_tokens)
        self._repos: dict[str, _Repo] = {}
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._interruptions: dict[tuple[str, str], tuple[int, bool]] = {}
        self._latency: dict[str, float] = {}
        self._bandwidth: dict[str, float] = {}
        self._corrupted: set[tuple[str, str]] = set()
        # While True, every connection is closed without an answer (a hub that went away).
        self.unreachable = False
        # While False, Range headers are ignored and whole files served (as some CDNs do).
        self.honour_ranges = True
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> "LocalHub":
        if self._server is None:
            self._server = _Server(self)
            self._thread = threading.Thread(target=self._server.serve_forever, name="local-hub", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = self._thread = None

    def __enter__(self) -> "LocalHub":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("LocalHub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def environment(self) -> dict[str, str]:
        """Variables that point huggingface_hub at this hub (Xet would bypass the resolve endpoint)."""
        return {"HF_ENDPOINT": self.url, "HF_HUB_DISABLE_XET": "1"}

    # content

    def add_model(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        license: str | None = None,
        gated: bool | str = False,
        pipeline_tag: str | None = None,
        library_name: str | None = None,
        tags: Iterable[str] = (),
        config: dict | None = None,
        safetensors_params: int | None = None,
        private: bool = False,
        downloads: int = 0,
        likes: int = 0,
        declared_sizes: dict[str, int] | None = None,
    ) -> str:
        """Commit `files` as the new head of `repo_id` (creating it) and return the commit sha.

        Earlier commits stay reachable by sha. `gated` is False, True (= "auto") or "auto"/"manual";
        `config` defaults to what the hub derives from config.json / model_index.json, and the
        safetensors parameter count to the sum over the safetensors headers unless
        `safetensors_params` is given. Repo-level settings (gated, private, counters) follow the
        latest call. `declared_sizes` makes the metadata claim other sizes for some files (a model
        too big for any disk, without holding it in memory); their downloads are not meant to work.
        """
        declared = declared_sizes or {}
        blobs = {path: _Blob.of(path, content, declared.get(path)) for path, content in sorted(files.items())}
        with self._lock:
            repo = self._repos.get(repo_id) or _Repo(
                repo_id, _now(), hashlib.sha1(repo_id.encode()).hexdigest()[:24]
            )
            fingerprint = "\n".join([repo_id, repo.head, *(f"{b.path} {b.git_oid}" for b in blobs.values())])
            sha = hashlib.sha1(fingerprint.encode()).hexdigest()
            repo.commits[sha] = _Commit(
                sha=sha,
                blobs=blobs,
                license=license,
                pipeline_tag=pipeline_tag,
                library_name=library_name,
                user_tags=tuple(tags),
                config=config if config is not None else _exposed_config(files),
                safetensors=_safetensors_summary(blobs, safetensors_params),
                date=_now(),
            )
            repo.head = sha
            repo.gated = "auto" if gated is True else gated
            repo.private, repo.downloads, repo.likes = private, downloads, likes
            self._repos[repo_id] = repo
        return sha

    def head_sha(self, repo_id: str) -> str:
        with self._lock:
            return self._repos[repo_id].head

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        with self._lock:
            commit = self._repos[repo_id].resolve(revision)
        if commit is None:
            raise KeyError(f"{repo_id} has no revision {revision}")
        return {path: blob.content for path, blob in commit.blobs.items()}

    # observation and fault injection

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def interrupt_next_download(self, repo_id: str, path: str, *, after_bytes: int,
                                then_unreachable: bool = False) -> None:
        """Make the next GET of this file drop the connection after `after_bytes` body bytes; with
        `then_unreachable`, the hub then hangs up on everything until `unreachable` is set False."""
        with self._lock:
            self._interruptions[(repo_id, path)] = (after_bytes, then_unreachable)

    def set_bandwidth(self, repo_id: str, bytes_per_second: float | None) -> None:
        """Serve the files of `repo_id` at about this rate (None restores full speed): a download
        that takes a while, so tests can act in the middle of it."""
        with self._lock:
            if bytes_per_second is None:
                self._bandwidth.pop(repo_id, None)
            else:
                self._bandwidth[repo_id] = bytes_per_second

    def corrupt(self, repo_id: str, path: str, corrupted: bool = True) -> None:
        """Serve this file with some bytes changed (same size, same ETag and hashes advertised): what
        a faulty mirror or disk would do. Only a client that checks hashes notices."""
        with self._lock:
            (self._corrupted.add if corrupted else self._corrupted.discard)((repo_id, path))

    def _bandwidth_for(self, path: str) -> float | None:
        with self._lock:
            rates = [rate for repo_id, rate in self._bandwidth.items() if f"/{repo_id}/" in f"{path}/"]
        return min(rates) if rates else None

    def set_latency(self, repo_id: str, seconds: float) -> None:
        """Answer every request about `repo_id` only after `seconds` (0 restores): a slow hub, so
        tests can act while a job is mid-flight."""
        with self._lock:
            self._latency[repo_id] = seconds

    def _wait_latency(self, path: str) -> None:
        with self._lock:
            delays = [seconds for repo_id, seconds in self._latency.items() if f"/{repo_id}/" in f"{path}/"]
        if delays:
            time.sleep(max(delays))

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    # routing

    def _handle(self, request: _Request) -> _Response:
        segments = request.segments
        with self._lock:
            if segments[:2] == ["api", "models"]:
                if len(segments) == 2:
                    return self._list_models(request)
                repo, rest = self._locate_repo(segments[2:])
                if repo is None or not self._can_see(repo, request.token):
                    return self._repo_not_found()
                if not rest:
                    return self._model_info(request, repo, "main")
                if rest[0] == "revision" and len(rest) == 2:
                    return self._model_info(request, repo, unquote(rest[1]))
                if rest[0] == "tree" and len(rest) >= 2:
                    return self._tree(request, repo, unquote(rest[1]), "/".join(unquote(s) for s in rest[2:]))
                return _Response.error(404, None, "Not Found")
            repo, rest = self._locate_repo(segments)
            if repo is None:
                is_resolve = "resolve" in segments[1:3]
                return self._repo_not_found() if is_resolve else _Response.error(404, None, "Not Found")
            if len(rest) >= 3 and rest[0] == "resolve":
                if not self._can_see(repo, request.token):
                    return self._repo_not_found()
                return self._resolve(request, repo, unquote(rest[1]), unquote("/".join(rest[2:])))
            return _Response.error(404, None, "Not Found")

    def _locate_repo(self, segments: list[str]) -> tuple[_Repo | None, list[str]]:
        """Split `namespace/name/...` or legacy `name/...` into the repo and the rest of the path."""
        for length in (2, 1):
            repo = self._repos.get(unquote("/".join(segments[:length])))
            if repo is not None:
                return repo, segments[length:]
        return None, []

    def _can_see(self, repo: _Repo, token: str | None) -> bool:
        return not repo.private or token in self.granted_tokens

    @staticmethod
    def _repo_not_found() -> _Response:
        return _Response.error(404, "RepoNotFound", "Repository not found")

    @staticmethod
    def _revision_not_found(revision: str) -> _Response:
        return _Response.error(404, "RevisionNotFound", f"Invalid rev id: {revision}")

    # endpoints

    def _list_models(self, request: _Request) -> _Response:
        repos = [repo for repo in self._repos.values() if self._can_see(repo, request.token)]
        if search := request.param("search"):
            repos = [repo for repo in repos if search.lower() in repo.repo_id.lower()]
        if author := request.param("author"):
            repos = [repo for repo in repos if repo.repo_id.partition("/")[0] == author and "/" in repo.repo_id]
        wanted_tags = [tag for value in request.query.get("filter", []) for tag in value.split(",") if tag]
        repos = [repo for repo in repos if set(wanted_tags) <= set(repo.commits[repo.head].tags)]
        if pipeline_tag := request.param("pipeline_tag"):
            repos = [repo for repo in repos if repo.commits[repo.head].pipeline_tag == pipeline_tag]
        if request.param("gated") is not None:
            repos = [repo for repo in repos if bool(repo.gated) == request.flag("gated")]
        if sort := request.param("sort"):
            if sort not in _MODEL_SORT_KEYS:
                return _Response.error(400, None, f'Invalid sort parameter "{sort}"')
            descending = request.param("direction", "-1") != "1"
            repos.sort(key=_MODEL_SORT_KEYS[sort], reverse=descending)
        if limit := request.param("limit"):
            repos = repos[: int(limit)]
        return _Response.json([self._list_entry(repo, request) for repo in repos])

    def _list_entry(self, repo: _Repo, request: _Request) -> dict:
        head = repo.commits[repo.head]
        entry = {
            "_id": repo.object_id,
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "likes": repo.likes,
            "trendingScore": repo.likes,
            "downloads": repo.downloads,
            "private": repo.private,
            "tags": head.tags,
            "pipeline_tag": head.pipeline_tag,
            "library_name": head.library_name,
            "createdAt": repo.created_at,
        }
        if request.flag("full"):
            entry.update(
                author=repo.repo_id.partition("/")[0] if "/" in repo.repo_id else None,
                sha=head.sha,
                lastModified=head.date,
                gated=repo.gated,
                disabled=False,
                siblings=[{"rfilename": path} for path in head.blobs],
            )
        if request.flag("config"):
            entry["config"] = head.config
        if request.flag("cardData"):
            entry["cardData"] = head.card_data
        return entry

    def _model_info(self, request: _Request, repo: _Repo, revision: str) -> _Response:
        commit = repo.resolve(revision)
        if commit is None:
            return self._revision_not_found(revision)
        with_sizes = request.flag("blobs")
        info = {
            **self._list_entry(repo, request),
            "author": repo.repo_id.partition("/")[0] if "/" in repo.repo_id else None,
            "sha": commit.sha,
            "lastModified": commit.date,
            "gated": repo.gated,
            "disabled": False,
            "tags": commit.tags,
            "pipeline_tag": commit.pipeline_tag,
            "library_name": commit.library_name,
            "config": commit.config,
            "cardData": commit.card_data,
            "siblings": [blob.sibling() if with_sizes else {"rfilename": blob.path} for blob in commit.blobs.values()],
            "spaces": [],
            "usedStorage": sum(blob.size for blob in commit.blobs.values()),
        }
        if commit.safetensors:
            info["safetensors"] = commit.safetensors
        return _Response.json({key: value for key, value in info.items() if value is not None})

    def _tree(self, request: _Request, repo: _Repo, revision: str, folder: str) -> _Response:
        commit = repo.resolve(revision)
        if commit is None:
            return self._revision_not_found(revision)
        prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
        below = [blob for path, blob in commit.blobs.items() if path.startswith(prefix)]
        if prefix and not below:
            return _Response.error(404, "EntryNotFound", f"{folder} does not exist on {revision}")
        recursive = request.flag("recursive")
        entries: dict[str, dict] = {}
        for blob in below:
            parts = blob.path[len(prefix) :].split("/")
            # Every folder between the listed one and the file is an entry (only the first when not recursive).
            for depth in range(1, len(parts) if recursive else min(len(parts), 2)):
                folder_path = prefix + "/".join(parts[:depth])
                entries.setdefault(folder_path, self._folder_entry(commit, folder_path))
            if recursive or len(parts) == 1:
                entries[blob.path] = blob.tree_entry()
        return _Response.json([entries[path] for path in sorted(entries)])

    @staticmethod
    def _folder_entry(commit: _Commit, path: str) -> dict:
        oid = hashlib.sha1(f"{commit.sha} {path}".encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": path}

    def _resolve(self, request: _Request, repo: _Repo, revision: str, path: str) -> _Response:
        if repo.gated and request.token not in self.granted_tokens:
            if request.token is None:
                message = (
                    f"Access to model {repo.repo_id} is restricted. You must have access to it"
                    " and be authenticated to access it. Please log in."
                )
                return _Response.error(401, "GatedRepo", message)
            message = (
                f"Access to model {repo.repo_id} is restricted and you are not in the authorized list."
                f" Visit {self.url}/{repo.repo_id} to ask for access."
            )
            return _Response.error(403, "GatedRepo", message)
        commit = repo.resolve(revision)
        if commit is None:
            return self._revision_not_found(revision)
        blob = commit.blobs.get(path)
        # The commit header lets huggingface_hub cache the file's absence for this revision.
        commit_header = {"X-Repo-Commit": commit.sha}
        if blob is None:
            return _Response.error(404, "EntryNotFound", "Entry not found", commit_header)
        headers = {
            **commit_header,
            "ETag": f'"{blob.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if blob.lfs_sha256:
            headers.update({"X-Linked-Etag": f'"{blob.lfs_sha256}"', "X-Linked-Size": str(blob.size)})
        try:
            byte_range = _byte_range(request.range if self.honour_ranges else None, blob.size)
        except _Unsatisfiable:
            return _Response.error(416, None, "Range Not Satisfiable", {"Content-Range": f"bytes */{blob.size}"})
        status, body = 200, blob.content
        if (repo.repo_id, path) in self._corrupted:
            body = bytes(byte ^ 0xFF for byte in body[:64]) + body[64:]
        if byte_range is not None:
            first, last = byte_range
            status, body = 206, body[first : last + 1]
            headers["Content-Range"] = f"bytes {first}-{last}/{blob.size}"
        drop_after, unreachable_after = None, False
        if request.method == "GET" and (repo.repo_id, path) in self._interruptions:
            drop_after, unreachable_after = self._interruptions.pop((repo.repo_id, path))
        return _Response(status, headers, body, drop_after, unreachable_after)


# --- demo content ----------------------------------------------------------------------------

DEMO_LLAMA = "berth-demo/tiny-llama"
DEMO_GATED = "berth-demo/tiny-llama-gated"
DEMO_BERT = "berth-demo/tiny-bert-mlm"
DEMO_DIFFUSION = "berth-demo/tiny-diffusion"
GRANTED_TOKEN = "hf_localhub_granted"

# Two 64x16 matrices and one 16x16: 2,304 F32 parameters, about 9 KB.
LLAMA_TENSORS = {
    "model.embed_tokens.weight": [64, 16],
    "model.layers.0.self_attn.q_proj.weight": [16, 16],
    "lm_head.weight": [64, 16],
}


def make_safetensors(tensors: dict[str, list[int]]) -> bytes:
    """A valid F32 safetensors file; the data bytes vary so byte ranges are distinguishable."""
    header, offset = {}, 0
    for name, shape in tensors.items():
        size = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    header_bytes = json.dumps(header).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)  # the format pads the header to 8 bytes
    data = bytes((index * 31 + 7) % 251 for index in range(offset))
    return len(header_bytes).to_bytes(8, "little") + header_bytes + data


def _json_file(payload: dict) -> bytes:
    return json.dumps(payload, indent=2).encode()


def _model_card(license: str, pipeline_tag: str, library_name: str) -> bytes:
    front_matter = f"license: {license}\npipeline_tag: {pipeline_tag}\nlibrary_name: {library_name}\n"
    return f"---\n{front_matter}---\n# Demo\n".encode()


def demo_llama_files() -> dict[str, bytes]:
    return {
        ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
        "README.md": _model_card("apache-2.0", "text-generation", "transformers"),
        "config.json": _json_file(
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16, "vocab_size": 64}
        ),
        "generation_config.json": _json_file({"bos_token_id": 1, "eos_token_id": 2}),
        "model.safetensors": make_safetensors(LLAMA_TENSORS),
        "tokenizer.json": _json_file({"version": "1.0", "model": {"type": "BPE", "vocab": {"<s>": 1, "</s>": 2}}}),
        "tokenizer_config.json": _json_file({"bos_token": "<s>", "eos_token": "</s>", "model_max_length": 128}),
    }


def make_demo_hub() -> LocalHub:
    """An unstarted hub holding the demo repos (use it as a context manager).

    - DEMO_LLAMA: a servable tiny Llama (config, safetensors weights, tokenizer), apache-2.0.
    - DEMO_GATED: the same files, gated "manual"; GRANTED_TOKEN has been granted access.
    - DEMO_BERT: a BertForMaskedLM fill-mask model with pytorch_model.bin weights.
    - DEMO_DIFFUSION: a diffusers pipeline (model_index.json + unet/ folder), no config.json.
    - and the repos of `tests.support.model_repos`: a sharded Llama with everything a real repo
      carries, a private one, and one too big for any disk.
    """
    hub = LocalHub(granted_tokens=[GRANTED_TOKEN])
    llama = dict(pipeline_tag="text-generation", library_name="transformers", tags=("conversational",))
    hub.add_model(DEMO_LLAMA, demo_llama_files(), license="apache-2.0", **llama)
    hub.add_model(DEMO_GATED, demo_llama_files(), license="llama3.1", gated="manual", **llama)
    hub.add_model(
        DEMO_BERT,
        {
            "config.json": _json_file({"architectures": ["BertForMaskedLM"], "model_type": "bert"}),
            "pytorch_model.bin": bytes(range(256)) * 8,
            "vocab.txt": b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n",
        },
        license="mit",
        pipeline_tag="fill-mask",
        library_name="transformers",
    )
    hub.add_model(
        DEMO_DIFFUSION,
        {
            "model_index.json": _json_file(
                {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}
            ),
            "unet/config.json": _json_file({"_class_name": "UNet2DConditionModel", "sample_size": 8}),
            "unet/diffusion_pytorch_model.safetensors": make_safetensors({"conv_in.weight": [8, 4, 3, 3]}),
        },
        license="openrail",
        pipeline_tag="text-to-image",
        library_name="diffusers",
    )
    from tests.support.model_repos import add_model_repos  # it builds on this module

    add_model_repos(hub)
    return hub
