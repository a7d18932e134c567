"""Files a sandbox's server reads: what the API puts in a sandbox payload's `files`, and where
the worker puts them.

Each file is fetched by the worker from a presigned URL (it holds no AWS credentials of its own)
before the server starts, checked against its size and SHA-256, and laid read-only in the job's
work directory under `FILES_SUBDIR`, which the sandbox sees as `SANDBOX_FILES_DIR`. Names are
plain file names (no directories, no `..`): checked where the API accepts them and again here,
so no name can place a file anywhere else.
"""

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

FILES_SUBDIR = "files"
SANDBOX_FILES_DIR = f"/sandbox/{FILES_SUBDIR}"  # as the server sees it (bubblewrap: /sandbox is its work directory)
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,127}")
FILE_NAME_RULE = ("a plain file name: letters, digits, '.', '_', '-' and spaces, starting with a letter or digit, "
                  "at most 128 characters")


def file_name_problem(name: str) -> str | None:
    """Why `name` cannot name a sandbox file, or None when it can."""
    if not FILE_NAME.fullmatch(name) or name.endswith((" ", ".")):
        return f"{name!r} is not {FILE_NAME_RULE}"
    return None


class SandboxFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    url: str = Field(min_length=8, max_length=4000, pattern=r"^https?://")
    size_bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[a-f0-9]{64}$")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        problem = file_name_problem(name)
        if problem:
            raise ValueError(problem)
        return name
