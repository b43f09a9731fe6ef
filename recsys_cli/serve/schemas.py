"""Requests: bodies of the POST endpoints (strict: unknown keys are a 422) with the examples shown at /docs, and
the query parameters of the hot GET endpoints."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi.exceptions import RequestValidationError
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
)
from pydantic_core import PydanticCustomError
from starlette.requests import Request

from recsys_cli.api.inputs import parse_int


def _json_key_id(value: Any) -> Any:
    """An id written as a JSON object's key (`ratings`): ASCII digits with an optional minus, as in a URL."""
    if isinstance(value, str):
        try:
            return url_int(value)
        except ValueError:
            raise PydanticCustomError("int_parsing", "Input should be a valid integer, unable to parse string as an "
                                                     "integer") from None
    return value


JsonKeyId = Annotated[int, BeforeValidator(_json_key_id)]


class RecommendBody(BaseModel):
    """A batch of known (or unknown) users, or one new user's ratings to fold in: exactly one of the two."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"users": [1, 2, 3], "n": 10},
        {"ratings": {"50": 5, "172": 4.5, "181": 5}, "n": 5, "run": "ials-ml-100k-user"},
    ]})

    # strict, as the ids of users and pairs are: lax parsing read "n": true as 1, "exclude_seen": "no" as false, a
    # rating of true as 1.0 and "5" as 5.0, and item keys "+3", " 3" and "1_0" as items 3, 3 and 10
    run: str | None = Field(None, description="Run name; optional when the server has a default run.")
    users: list[StrictInt] | None = Field(None, description="Raw user ids (at most --max-batch).")
    ratings: dict[JsonKeyId, StrictFloat] | None = Field(None, description="A new user's ratings {item_id: rating}.")
    n: StrictInt = Field(10, description="Items per user (1 .. catalogue size).")
    exclude_seen: StrictBool = Field(True, description="Leave out items the user rated in training.")
    explain: StrictBool = Field(False, description="Add `reasons` to each row: the parts of its score.")


class PredictBody(BaseModel):
    """(user, item) pairs of raw ids."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"pairs": [[1, 50], [1, 172], [99999, 50]]},
        {"pairs": [[1, 50], [1, 172]], "timestamps": [881250949, 891717742]},
    ]})

    run: str | None = Field(None, description="Run name; optional when the server has a default run.")
    # strict: true, 1.0 or "1" are not ids (lax parsing read [true, 50] as user 1)
    pairs: list[tuple[StrictInt, StrictInt]] = Field(..., description="[[user_id, item_id], ...] (at most --max-batch).")
    timestamps: list[StrictInt] | None = Field(None, description="When each rating is made (Unix seconds, one per pair), "
                                                           "for a run with a time part (fm's time group).")


class ApiError(Exception):
    """A refusal with its HTTP status and error code (the app turns it into {"error", "code"})."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


_TRUE, _FALSE = {"true", "1", "yes", "on", "t", "y"}, {"false", "0", "no", "off", "f", "n"}
_TYPES = {int: "integer", str: "string", bool: "boolean"}


def url_int(text: str) -> int:
    """An integer in a URL's query or path: ASCII digits with an optional minus, as the CLI and id files read ids
    (int() and pydantic's lax int took '+3' and '1_0'), and no spaces around it either: a query string's '+' is a
    space, so `?user=+3` arrives as ' 3'. ValueError otherwise."""
    if text != text.strip():
        raise ValueError(text)
    return parse_int(text)


class Param:
    """A query parameter of a hot GET endpoint, parsed by hand (cheaper than FastAPI's per-request validation on
    the endpoints that run most), documented in OpenAPI all the same. Same rules and 422 messages as FastAPI's."""

    def __init__(self, name: str, kind: type, default: Any = ..., description: str = "", example: Any = None):
        self.name, self.kind, self.default, self.description, self.example = name, kind, default, description, example

    def openapi(self) -> dict:
        schema: dict[str, Any] = {"type": _TYPES[self.kind]}
        if self.default is not ... and self.default is not None:
            schema["default"] = self.default
        out = {"name": self.name, "in": "query", "required": self.default is ..., "schema": schema,
               "description": self.description}
        if self.example is not None:
            out["example"] = self.example
        return out

    def parse(self, params) -> Any:
        raw = params.get(self.name)
        if raw is not None and len(params.getlist(self.name)) > 1:  # which one was meant? (it used the last)
            raise ApiError(422, f"query.{self.name}: given more than once", "invalid")
        if raw is None:
            if self.default is ...:
                raise ApiError(422, f"query.{self.name}: Field required", "invalid")
            return self.default
        if self.kind is int:
            try:
                return url_int(raw)
            except ValueError:
                raise ApiError(422, f"query.{self.name}: Input should be a valid integer", "invalid") from None
        if self.kind is bool:
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ApiError(422, f"query.{self.name}: Input should be a valid boolean", "invalid")
        return raw


PathId = Annotated[int, BeforeValidator(_json_key_id)]  # a raw id in a path (`/items/{item}`); `integer` in OpenAPI
QueryInt = PathId  # any other integer in a URL (a count, a limit, a seed): read as strictly as an id


def openapi_params(*params: Param) -> dict:
    return {"openapi_extra": {"parameters": [p.openapi() for p in params]}}


RUN_PARAM = Param("run", str, None, "Run name (default: the server's default run).")
RECOMMEND_PARAMS = (Param("user", int, ..., "Raw user id.", 1), Param("n", int, 10, "Items (1 .. catalogue size)."),
                    RUN_PARAM, Param("exclude_seen", bool, True, "Leave out items the user rated."),
                    Param("explain", bool, False, "Add `reasons` to each row: the parts of its score."))
PREDICT_PARAMS = (Param("user", int, ..., "Raw user id.", 1), Param("item", int, ..., "Raw item id.", 50), RUN_PARAM,
                  Param("time", int, None, "When the rating is made (Unix seconds), for a run with a time part (fm's "
                                           "time group); default: the user's latest training period."))
SIMILAR_PARAMS = (Param("item", int, ..., "Raw item id.", 1), Param("n", int, 10, "How many neighbours."), RUN_PARAM)


def parse_query(request: Request, params: tuple[Param, ...]) -> list[Any]:
    query = request.query_params
    return [p.parse(query) for p in params]


def parse_body(model: type[BaseModel], raw: bytes) -> BaseModel:
    """A POST body validated as `model`, with FastAPI's errors (a RequestValidationError: 400 for bad JSON, 422
    otherwise). The JSON is read whatever the content type says (`curl -d` sends form-encoded)."""
    if not raw.strip():
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    try:
        body = model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                      for e in exc.errors(include_url=False, include_context=False)]) from None
    _no_duplicate_keys(raw)  # ~1 ms for a 10,000-user body (one object: the hook runs once)
    return body


def _refuse_duplicates(pairs: list) -> dict:
    seen = set()
    for key, _ in pairs:
        if key in seen:
            if url_int_or_none(key) is not None:  # only `ratings` has ids for keys
                raise ApiError(422, "an item is rated twice in the new user's ratings", "invalid")
            raise ApiError(422, f"body.{key}: given more than once", "invalid")
        seen.add(key)
    return dict(pairs)


def url_int_or_none(text: str) -> int | None:
    try:
        return url_int(text)
    except ValueError:
        return None


def _no_duplicate_keys(raw: bytes) -> None:
    """ApiError 422 for a key given twice in one JSON object (the JSON parser keeps the last one silently, where
    the query string's parameters and the CLI's --ratings refuse a repeat)."""
    import json

    try:
        json.loads(raw, object_pairs_hook=_refuse_duplicates)
    except ValueError:  # not JSON to this parser (already validated by pydantic): nothing to say
        pass


def body_openapi(model: type[BaseModel]) -> dict:
    """The route's OpenAPI request body: `model`'s schema (put in the components by the app's openapi())."""
    return {"openapi_extra": {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}}
