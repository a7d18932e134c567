"""The curated models: a data file (`models.json`) of Hugging Face repos vLLM serves, listed by
`/v1/catalog` (as entries: app.catalog.listing) and offered by model search when the hub cannot
be reached."""

import functools
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CURATED_MODELS_PATH = Path(__file__).parent / "models.json"


class ModelDocument(BaseModel):
    """One curated model: what a person picks it by, before the hub is asked for its facts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[\w.\-]+/[\w.\-]+$", description="the Hugging Face repo id")
    title: str = Field(min_length=1, max_length=100)
    description: str = Field(min_length=1, max_length=300)
    task: Literal["text-generation", "feature-extraction"]
    library: str
    license: str
    parameters: str = Field(pattern=r"^\d+(\.\d+)?[MB]$", description="about how many, e.g. 0.5B")
    gated: bool = False  # needs a Hugging Face credential granted access
    tags: list[str] = Field(default_factory=list)


class CuratedModels(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str
    models: list[ModelDocument] = Field(min_length=1)


@functools.cache
def curated_model_documents() -> tuple[ModelDocument, ...]:
    """The models berth ships (read once per process)."""
    return tuple(CuratedModels.model_validate(json.loads(CURATED_MODELS_PATH.read_text())).models)
