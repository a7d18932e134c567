"""Bodies of the runtime-management routes (the runtime protocol itself is in app.contract.messages)."""

from pydantic import BaseModel, ConfigDict, Field


class JoinTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="join token", min_length=1, max_length=100)
    uses: int = Field(default=1, ge=1, le=1000, description="How many runtimes may register with it")
    ttl_seconds: int = Field(default=3600, ge=60, le=30 * 24 * 3600)
    shared: bool = Field(default=False, description="Operator only: runtimes that serve every workspace")
    labels: dict[str, str] = Field(default_factory=dict, max_length=50)


class JoinTokenCreated(BaseModel):
    token: str = Field(description="The secret: shown only in this response")
    join_token: dict
