"""The families of tools on berth's `/mcp`, one module each, every tool a thin call of the same
service the REST routes call (`app.composition.services()`), answering the same views.

Each module's `tools()` lists its tools with their tiers and hints (app/mcp/tools.py). Tools that
only call a service are plain functions (the SDK runs them in a worker thread); tools that wait
are coroutines that move each blocking service call to a thread themselves.
"""

from typing import Annotated

from pydantic import Field

# A sandbox (a container) is a job: its id is one as berth mints them (app/ids.py).
JOB_ID_PATTERN = r"^job_[0-9a-z]{23}$"
SandboxId = Annotated[str, Field(pattern=JOB_ID_PATTERN, description="a sandbox id (job_...), as create_sandbox "
                                                                      "or list_sandboxes gives it")]
ContainerId = Annotated[str, Field(pattern=JOB_ID_PATTERN, description="a container id (job_...), as "
                                                                        "list_containers gives it")]
# A readiness wait on a tool call must leave room in API Gateway's 29 s for the call itself.
WaitSeconds = Annotated[float, Field(ge=0, le=25, description="wait at most this long (seconds) for a "
                                                              "starting server to come up; 0 answers at once")]
InstallationId = Annotated[str, Field(pattern=r"^ins_[0-9a-z]{23}$", description=(
    "an installation id (ins_...), as install_tool or list_installations gives it"))]
# Entry ids are registry names (`io.github.owner/server`), bounded as the REST routes bound them.
EntryId = Annotated[str, Field(min_length=1, max_length=200, description=(
    "a marketplace entry's id, its registry name (e.g. io.github.owner/server), as search_marketplace gives it"))]
