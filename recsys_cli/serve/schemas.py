"""Request bodies of the POST endpoints, strict (unknown keys are a 422), with the examples shown at /docs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RecommendBody(BaseModel):
    """A batch of known (or unknown) users, or one new user's ratings to fold in: exactly one of the two."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"users": [1, 2, 3], "n": 10},
        {"ratings": {"50": 5, "172": 4.5, "181": 5}, "n": 5, "run": "ials-ml-100k-user"},
    ]})

    run: str | None = Field(None, description="Run name; optional when the server has a default run.")
    users: list[int] | None = Field(None, description="Raw user ids (at most --max-batch).")
    ratings: dict[int, float] | None = Field(None, description="A new user's ratings {item_id: rating}.")
    n: int = Field(10, description="Items per user (1 .. catalogue size).")
    exclude_seen: bool = Field(True, description="Leave out items the user rated in training.")


class PredictBody(BaseModel):
    """(user, item) pairs of raw ids."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"pairs": [[1, 50], [1, 172], [99999, 50]]},
    ]})

    run: str | None = Field(None, description="Run name; optional when the server has a default run.")
    pairs: list[tuple[int, int]] = Field(..., description="[[user_id, item_id], ...] (at most --max-batch).")
