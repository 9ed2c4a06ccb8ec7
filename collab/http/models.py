"""Request bodies as declared models (pydantic), and the one parser of JSON bodies.

``parse(Model, body)`` validates JSON against a model (400, ``BadRequest``, with a message
that names the field); the OpenAPI document (``openapi.py``) is built from the same models.
An empty body is ``{}``. Fields the models do not declare are ignored, as they always were.

pydantic costs about 14 MB and 0.2 s to import, and most nodes never receive a request
body (editors speak WebSocket). So nothing imports this module at start: a handler that
takes a body imports it when it runs (``collab.http.body`` reads the bytes), and the route
tables name their models as strings, resolved by ``model()``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import models_json_schema
from pydantic_core import ErrorDetails

from collab.errors import BadRequest
from collab.history.edit import MAX_OPERATIONS, Delete, Insert, Operation

__all__ = [
    "Body",
    "CreateDocument",
    "NameVersion",
    "PatchContent",
    "ReplaceContent",
    "ResetDocument",
    "RestoreVersion",
    "RevokeToken",
    "json_schemas",
    "model",
    "parse",
]

_Model = TypeVar("_Model", bound="Body")


def _claimed(value: object) -> str | None:
    # Any JSON value was always accepted as a claimed author; only a string names one.
    return value if isinstance(value, str) else None


def _version(value: object) -> object:
    # A version is named by a seq or a time, as a string or a number (never a boolean).
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


User = Annotated[
    str | None,
    BeforeValidator(_claimed),
    Field(description="the author, on a server without auth (else the token's)"),
]
Version = Annotated[str | None, BeforeValidator(_version)]


class Body(BaseModel):
    """A JSON object body. ``hint`` answers a body that is not one; ``problems`` maps an
    error's place (``field``, ``ops.*.insert.text``; ``place:error-type`` first) to its
    message, its ``{k}`` replaced by the error's list index."""

    model_config = ConfigDict(strict=True, frozen=True)
    hint: ClassVar[str] = "the body must be a JSON object"
    problems: ClassVar[dict[str, str]] = {}

    @classmethod
    def openapi_schema(cls, ref: dict[str, str], schemas: dict[str, Any]) -> dict[str, Any]:
        """The request body's schema in the OpenAPI document (``ref`` points at the
        model's own, in ``schemas``)."""
        return ref


class CreateDocument(Body):
    """``POST /api/docs``."""

    hint = 'give {"name": "...", "content": "..."}'
    problems = {"name": 'give "name" as a string', "content": 'give "content" as a string'}
    name: str = Field(description="the document (room) name")
    content: str | None = Field(None, description="initial text of the content root")
    user: User = None


class ReplaceContent(Body):
    """``PUT /api/docs/{room}/content`` as JSON (a text/plain body is the text itself);
    a rich-text root takes a ProseMirror document instead (``ReplaceRichContent``)."""

    hint = 'give {"text": "..."}, a ProseMirror {"type": "doc", ...}, or a text/plain body'
    problems = {"text": 'give "text" as a string'}
    text: str = Field(description="the new text of a text root")
    user: User = None

    @classmethod
    def openapi_schema(cls, ref: dict[str, str], schemas: dict[str, Any]) -> dict[str, Any]:
        """This object, or a ProseMirror document (``ReplaceRichContent``)."""
        template = ref["$ref"].replace(cls.__name__, "{model}")
        schemas.update(json_schemas(["ReplaceRichContent"], template))
        return {"oneOf": [ref, {"$ref": template.format(model="ReplaceRichContent")}]}


class ReplaceRichContent(Body):
    """``PUT /api/docs/{room}/content`` with a ProseMirror document, bare
    (``{"type": "doc", ...}``) or as ``{"doc": {...}, "user": ...}``."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")
    hint = 'give a ProseMirror document {"type": "doc", "content": [...]}'
    problems = {
        "doc": 'give "doc" as a ProseMirror document object',
        "text": 'give "text" or "doc", not both',
    }
    doc: dict[str, Any] = Field(description='a ProseMirror document: {"type": "doc", ...}')
    user: User = None

    @model_validator(mode="before")
    @classmethod
    def _bare_document(cls, data: Any) -> Any:
        return {"doc": data} if isinstance(data, dict) and "type" in data else data

    @staticmethod
    def wanted(data: Any) -> bool:
        """Whether a parsed JSON body is meant as a ProseMirror document."""
        return isinstance(data, dict) and ("type" in data or "doc" in data)


class InsertOperation(Body):
    """Insert ``text`` before code point ``index``."""

    op: Literal["insert"]
    index: int = Field(ge=0)
    text: str


class DeleteOperation(Body):
    """Delete ``length`` code points from ``index``."""

    op: Literal["delete"]
    index: int = Field(ge=0)
    length: int = Field(ge=0)


class PatchContent(Body):
    """``PATCH /api/docs/{room}/content``: a list of operations, or ``{"ops": [...]}``."""

    hint = (
        'give a list of operations: [{"op": "insert", "index": 0, "text": "..."}, '
        '{"op": "delete", "index": 0, "length": 1}]'
    )
    problems = {
        "ops:too_long": f"too many operations: at most {MAX_OPERATIONS}",
        "ops": hint,
        "ops.*.insert.index": "operation {k}: index must be a whole number >= 0",
        "ops.*.delete.index": "operation {k}: index must be a whole number >= 0",
        "ops.*.insert.text": "operation {k}: insert needs a text string",
        "ops.*.delete.length": "operation {k}: delete needs a length >= 0",
        "ops.*:model_attributes_type": "operation {k}: expected an object",
        "ops.*:model_type": "operation {k}: expected an object",
        "ops.*": "operation {k}: op must be insert or delete",
    }
    ops: list[Annotated[InsertOperation | DeleteOperation, Field(discriminator="op")]] = Field(
        min_length=1, max_length=MAX_OPERATIONS
    )
    user: User = None

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, data: Any) -> Any:
        return {"ops": data} if isinstance(data, list) else data

    @classmethod
    def openapi_schema(cls, ref: dict[str, str], schemas: dict[str, Any]) -> dict[str, Any]:
        """The bare list, or the object."""
        ops = schemas[cls.__name__]["properties"]["ops"]
        return {"oneOf": [ops, ref]}

    def operations(self) -> list[Operation]:
        """The operations as ``collab.history.edit`` applies them."""
        return [
            Insert(op.index, op.text)
            if isinstance(op, InsertOperation)
            else Delete(op.index, op.length)
            for op in self.ops
        ]


class RestoreVersion(Body):
    """``POST /api/docs/{room}/restore``: the version to restore, by seq or by time."""

    problems = {
        "seq": "bad seq: expected a string or number",
        "at": "bad at: expected a string or number",
        "lineage": 'give "lineage" as a string',
    }
    seq: Version = Field(None, description="the version's seq")
    at: Version = Field(None, description="... or a time (ISO-8601 or epoch milliseconds)")
    lineage: str | None = Field(
        None, description="a retired lineage the version is of (a reset kept its history)"
    )
    user: User = None


class ResetDocument(Body):
    """``POST /api/docs/{room}/reset``: start the document over, empty or with text."""

    hint = 'give {} or {"content": "..."}'
    problems = {"content": 'give "content" as a string'}
    content: str | None = Field(None, description="the text the new history starts with")
    user: User = None


class NameVersion(Body):
    """``POST /api/docs/{room}/named-versions``: name a version (default the newest)."""

    problems = {
        "name": 'give the version a name: {"name": "...", "seq": N}',
        "seq": "bad seq: expected a string or number",
        "at": "bad at: expected a string or number",
    }
    name: str = Field(description="1 to 255 characters")
    seq: Version = Field(None, description="the version's seq (default the newest)")
    at: Version = Field(None, description="... or a time")
    user: User = None


class RevokeToken(Body):
    """``POST /api/tokens/revoke``: the token's id, or the token itself (exactly one)."""

    problems = {"jti": 'give "jti" as a string', "token": 'give "token" as a string'}
    jti: str | None = Field(None, description="the token's jti claim")
    token: str | None = Field(None, description="the token itself")


def parse(model: type[_Model], body: bytes) -> _Model:
    """``body`` (JSON; empty means ``{}``) validated as ``model``.

    Raises:
        BadRequest: not JSON, or not what ``model`` declares (400, naming the field).
    """
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise BadRequest(_message(model, exc.errors(include_url=False)[0])) from None


def _message(model: type[Body], error: ErrorDetails) -> str:
    if error["type"] == "json_invalid":
        return "the body is not JSON"
    loc = error["loc"]
    if not loc:
        return model.hint
    place = ".".join("*" if isinstance(part, int) else str(part) for part in loc)
    index = next((str(part) for part in loc if isinstance(part, int)), "")
    for key in (f"{place}:{error['type']}", place):
        if key in model.problems:
            return model.problems[key].replace("{k}", index)
    return f"bad {place}: {error['msg'].lower()}"


def model(name: str) -> type[Body]:
    """The body model called ``name`` (a route table's ``body``)."""
    found = globals().get(name)
    if not (isinstance(found, type) and issubclass(found, Body)):
        raise KeyError(f"no body model {name!r}")
    return found


def json_schemas(names: Iterable[str], ref_template: str) -> dict[str, Any]:
    """The JSON schemas of the body models ``names``, by model name (``$ref`` targets)."""
    _, definitions = models_json_schema(
        [(model(name), "validation") for name in names], ref_template=ref_template
    )
    schemas: dict[str, Any] = definitions.get("$defs", {})
    return schemas
