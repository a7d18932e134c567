"""Which files of a model repo a serving engine needs, how to check them, and the worker's record
of snapshots verified complete.

An engine loads the top-level weights (safetensors when the repo has them, else PyTorch .bin),
the config and generation config, the tokenizer and, for embedding models, the
sentence-transformers pooling config. Everything else — other weight formats (GGUF, ONNX, Flax,
TF, the `original/` checkpoints), duplicates such as Mistral's `consolidated.safetensors`, cards,
code — stays on the hub: vLLM would not read it and it can double a pull.
"""

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

CONFIG_FILES = frozenset({"config.json", "generation_config.json"})
TOKENIZER_FILES = frozenset({
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "vocab.json", "vocab.txt", "merges.txt",
    "chat_template.json", "chat_template.jinja", "preprocessor_config.json", "processor_config.json",
})
EMBEDDING_FILES = frozenset({"modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"})
_POOLING_CONFIG = re.compile(r"^\d+_Pooling/config\.json$")
# Shards as transformers writes them; a repo may carry other .safetensors (adapters, Mistral's
# consolidated format) that duplicate or do not belong to the model.
_SAFETENSORS_WEIGHTS = re.compile(r"^model(-\d+-of-\d+)?\.safetensors$")
_BIN_WEIGHTS = re.compile(r"^pytorch_model(-\d+-of-\d+)?\.bin$")
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"


@dataclass(frozen=True)
class RepoFile:
    path: str
    size: int
    git_oid: str  # the git blob id; for LFS files, of the pointer
    lfs_sha256: str | None = None

    @property
    def etag(self) -> str:
        """The name of its blob in a Hugging Face cache."""
        return self.lfs_sha256 or self.git_oid


def select_engine_files(files: list[RepoFile]) -> list[RepoFile]:
    """The files an engine needs, in repo order (empty weights means the repo cannot be served)."""
    top_level = [file for file in files if "/" not in file.path]
    weights = [file for file in top_level if _SAFETENSORS_WEIGHTS.match(file.path)]
    index = SAFETENSORS_INDEX
    if not weights:
        weights = [file for file in top_level if file.path.endswith(".safetensors")]
    if not weights:
        weights, index = [file for file in top_level if _BIN_WEIGHTS.match(file.path)], BIN_INDEX
    chosen = {file.path for file in weights}
    for file in files:
        if (file.path in CONFIG_FILES or file.path in TOKENIZER_FILES or file.path in EMBEDDING_FILES
                or file.path == index or (file.path.endswith(".tiktoken") and "/" not in file.path)
                or _POOLING_CONFIG.match(file.path)):
            chosen.add(file.path)
    return [file for file in files if file.path in chosen]


def has_weights(paths: list[str]) -> bool:
    return any(path.endswith((".safetensors", ".bin")) and "/" not in path for path in paths)


# --- verification ----------------------------------------------------------------------------


def expected_digest(file: RepoFile) -> tuple["hashlib._Hash", str, str]:
    """A fresh hash to feed the file's bytes to, the digest it must reach, and what that digest is.

    LFS files are checked against their sha256, the rest against their git blob id: the hub
    publishes both, so every byte of a snapshot is checked, not only the weights.
    """
    if file.lfs_sha256:
        return hashlib.sha256(), file.lfs_sha256, "sha256"
    return hashlib.sha1(b"blob %d\0" % file.size), file.git_oid, "git blob id"


def remove_cached_file(repo_cache: Path, commit: str, file: RepoFile) -> None:
    """Drop a file from a repo's cache (its blob and its snapshot link) so the next pull fetches it.
    The blob goes by its own name: the link may not be made yet when a bad file is found."""
    for victim in (repo_cache / "blobs" / file.etag, repo_cache / "snapshots" / commit / file.path):
        victim.unlink(missing_ok=True)


# --- the record of verified snapshots --------------------------------------------------------


@dataclass(frozen=True)
class VerifiedSnapshot:
    """Written after a snapshot's every file was verified; never before (so a half-written or
    corrupted snapshot is never reused), removed when the snapshot is evicted."""

    model: str
    commit: str
    files: list[dict]  # path, size, etag
    gated: bool
    private: bool

    @classmethod
    def of(cls, model: str, commit: str, files: list[RepoFile], gated: bool, private: bool) -> "VerifiedSnapshot":
        return cls(model, commit, [{"path": f.path, "size": f.size, "etag": f.etag} for f in files], gated, private)

    @staticmethod
    def path(state_dir: Path, model: str, commit: str) -> Path:
        return state_dir / "verified" / f"models--{model.replace('/', '--')}" / f"{commit}.json"

    def save(self, state_dir: Path) -> None:
        target = self.path(state_dir, self.model, self.commit)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        with open(temporary, "w") as handle:
            json.dump(asdict(self), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)

    @classmethod
    def load(cls, state_dir: Path, model: str, commit: str) -> "VerifiedSnapshot | None":
        try:
            return cls(**json.loads(cls.path(state_dir, model, commit).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def intact(self, snapshot: Path) -> bool:
        """Every recorded file still in the snapshot at its size (a cheap check: no hashing)."""
        try:
            return all((snapshot / file["path"]).stat().st_size == file["size"] for file in self.files)
        except OSError:
            return False

    @property
    def total_bytes(self) -> int:
        return sum(file["size"] for file in self.files)


# --- mounted volumes -------------------------------------------------------------------------


class VolumeRefused(Exception):
    pass


def check_volume(local_path: str, roots: tuple[Path, ...]) -> tuple[Path, int, int]:
    """The mounted model directory (symlinks resolved), its number of files and their bytes;
    VolumeRefused with the reason when it is outside the allowed roots, missing, or not a model an
    engine can load."""
    if not roots:
        raise VolumeRefused("this runtime allows no mounted model volumes (BERTH_WORKER_MODEL_VOLUME_ROOTS)")
    directory = Path(os.path.realpath(local_path))
    if not any(directory == root or root in directory.parents for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise VolumeRefused(f"{local_path} is outside this runtime's model volumes ({allowed})")
    if not directory.is_dir():
        raise VolumeRefused(f"{local_path} is not a directory on this runtime")
    files = sorted(path for path in directory.rglob("*") if path.is_file())
    names = [str(path.relative_to(directory)) for path in files]
    if "config.json" not in names:
        raise VolumeRefused(f"{local_path} has no config.json")
    try:
        json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise VolumeRefused(f"{local_path}/config.json is not readable JSON: {error}") from error
    if not has_weights(names):
        raise VolumeRefused(f"{local_path} has no safetensors or .bin weights at its top level")
    return directory, len(files), sum(path.stat().st_size for path in files)
