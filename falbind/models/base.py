"""Base classes of every generated model.

Request models (an endpoint's ``<Stem>Input`` and every model reachable from it) forbid unknown
fields: fal ignores parameters it does not know, so a typo would otherwise cost a paid request.
The error names the endpoint, the unknown field and the closest valid names.

Response models (``<Stem>Output`` and what it reaches) keep unknown fields, so a field fal adds
after our last regeneration is still readable through ``model_extra``. They are decoded leniently
(:func:`validate_leniently`): an answer that does not match its model still becomes that model,
with the problems listed on ``schema_mismatch``, because fal's output schemas drift and a paid
result must never be lost to a missing or mistyped field.

Both build their validators on first use (``defer_build``): an app that imports a module but
validates with one model pays for that one, not for every nested class of the module.
"""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Self, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

from .suggest import suggest_names

__all__ = [
    "RequestModel",
    "ResponseModel",
    "explain_validation_error",
    "field_names",
    "field_schemas",
    "omitted",
    "structured_default",
    "suggest_names",
    "to_request_body",
    "validate_leniently",
]

UNKNOWN_PARAMETER = "unknown_parameter"
_MISMATCH = "__falbind_schema_mismatch__"


def _endpoint_of(model: type[BaseModel]) -> str | None:
    module = sys.modules.get(model.__module__)
    endpoint = getattr(module, "ENDPOINT_ID", None)
    return endpoint if isinstance(endpoint, str) else None


def field_names(model: type[BaseModel]) -> list[str]:
    """The names ``model`` takes on the wire (aliases where set), in field order."""
    return [info.alias or name for name, info in model.model_fields.items()]


@functools.lru_cache(maxsize=512)
def field_schemas(model: type[BaseModel]) -> Mapping[str, Any]:
    """The JSON schema of each of ``model``'s fields, by wire name (``properties`` of pydantic's
    ``model_json_schema(by_alias=True)``; nested models stay ``$ref`` entries). Cached, and not to be
    mutated: pydantic builds the schema afresh on every call, several milliseconds for a FLUX
    model, which per-request callers cannot afford."""
    properties: Mapping[str, Any] = model.model_json_schema(by_alias=True).get("properties", {})
    return properties


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class that owns the location ``loc`` (the location of an unknown key)."""
    current: type[BaseModel] = model
    for part in loc[:-1]:
        if not isinstance(part, str):
            continue  # list index: the item's model is the same as the list's
        field = next(
            (f for n, f in current.model_fields.items() if part in (n, f.alias)),
            None,
        )
        if field is None:
            # A union member name (pydantic puts the member class name in the loc).
            continue
        candidate = _first_model(field.annotation)
        if candidate is None:
            return None
        current = candidate
    return current


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _unknown_parameter_error(
    model: type[BaseModel], loc: tuple[int | str, ...], value: Any
) -> InitErrorDetails:
    owner = _model_at(model, loc) or model
    name = str(loc[-1])
    valid = field_names(owner)
    suggestions = suggest_names(name, valid)
    endpoint = _endpoint_of(model) or model.__name__
    detail = f"unknown parameter {name!r} for {endpoint}"
    if suggestions:
        detail += "; did you mean " + " or ".join(repr(s) for s in suggestions) + "?"
    else:
        detail += f"; valid parameters: {', '.join(sorted(valid))}"
    detail += " (pass it through extra_body= if fal accepts it and our bindings lag behind)"
    error = PydanticCustomError(
        UNKNOWN_PARAMETER,
        "{detail}",
        {"detail": detail, "endpoint": endpoint, "suggestions": suggestions},
    )
    return InitErrorDetails(type=error, loc=loc, input=value)


def explain_validation_error(model: type[BaseModel], exc: ValidationError) -> ValidationError:
    """``exc`` with each unknown-field error rewritten to name the endpoint and the closest
    valid names; the title names the endpoint too. Other errors are kept as they are."""
    if not any(error["type"] == "extra_forbidden" for error in exc.errors()):
        return exc  # nothing to explain, or explained already by a nested call
    endpoint = _endpoint_of(model)
    title = f"{model.__name__} ({endpoint})" if endpoint else model.__name__
    details: list[InitErrorDetails] = []
    for error in exc.errors():
        if error["type"] == "extra_forbidden":
            details.append(_unknown_parameter_error(model, error["loc"], error["input"]))
        elif error["type"] == UNKNOWN_PARAMETER:
            ctx = error.get("ctx") or {}
            custom = PydanticCustomError(UNKNOWN_PARAMETER, "{detail}", dict(ctx))
            details.append(InitErrorDetails(type=custom, loc=error["loc"], input=error["input"]))
        else:
            details.append(error)  # type: ignore[arg-type]  # ErrorDetails is a superset
    return ValidationError.from_exception_data(title, details)


class RequestModel(BaseModel):
    """Base of request models: unknown fields are an error with a did-you-mean.

    The explanation is added where validation starts (construction and ``model_validate*``),
    so the error locations stay pydantic's own and nested models need nothing extra.
    """

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, protected_namespaces=(), defer_build=True
    )

    __fal_role__: ClassVar[str] = "request"

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise explain_validation_error(type(self), exc) from None

    # Tell pydantic this __init__ only wraps BaseModel's: otherwise pydantic-core would route every
    # validation of these models, nested ones included, through it (a second validation call).
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, *args: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate(*args, **kwargs)
        except ValidationError as exc:
            raise explain_validation_error(cls, exc) from None

    @classmethod
    def model_validate_json(cls, *args: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate_json(*args, **kwargs)
        except ValidationError as exc:
            raise explain_validation_error(cls, exc) from None

    def to_body(self) -> dict[str, Any]:
        """The JSON body fal receives: only the fields the caller set, so fal's defaults stay fal's."""
        return to_request_body(self)


class ResponseModel(BaseModel):
    """Base of response models: unknown fields are kept (``model_extra``), never an error."""

    model_config = ConfigDict(
        extra="allow", populate_by_name=True, protected_namespaces=(), defer_build=True
    )

    __fal_role__: ClassVar[str] = "response"

    @property
    def schema_mismatch(self) -> list[str] | None:
        """How fal's answer differed from this model (``None`` when it matched): one readable
        problem per item, e.g. ``"images.0.url: Field required"``."""
        problems: list[str] | None = self.__dict__.get(_MISMATCH)
        return problems


def validate_leniently(model: type[BaseModel], data: Any) -> tuple[BaseModel, list[str]]:
    """``data`` as ``model``, and the problems found (empty when it matched).

    When ``data`` (a JSON object) does not match, the model is still built from what arrived:
    every field that validates is kept validated; a field that does not is descended into when
    it holds a model (or a list of models), so nested objects stay typed down to the value at
    fault; that value is kept as it arrived, and a required field that did not arrive is
    ``None``. Validating with the failing fields removed would drop the values fal sent (a paid
    result) and turn a whole nested model into nothing for one bad leaf; ``model_construct``
    over the raw data would leave every nested model a plain dict. The root model's
    ``schema_mismatch`` lists the problems. ``ValidationError`` when ``data`` is not an object.
    """
    try:
        return model.model_validate(data), []
    except ValidationError:
        if not isinstance(data, Mapping):
            raise
    problems: list[str] = []
    built = _construct(model, data, (), problems)
    # Stored beside the fields (dumps and reprs skip it), not as a pydantic private attribute:
    # that would slow every validation of every response model to serve the rare drifted one.
    object.__setattr__(built, _MISMATCH, problems)
    return built, problems


def _construct(
    model: type[BaseModel],
    data: Mapping[str, Any],
    path: tuple[str | int, ...],
    problems: list[str],
) -> BaseModel:
    if not model.__pydantic_complete__:
        model.model_rebuild()  # resolve forward references (models build on first use)
    values: dict[str, Any] = {}
    known: set[str] = set()
    for name, info in model.model_fields.items():
        key = info.alias or name
        known.update((key, name))
        if key in data:
            raw = data[key]
        elif name in data:
            raw = data[name]
        else:
            if info.is_required():
                problems.append(f"{_dotted((*path, key))}: Field required")
                values[name] = None
            continue
        values[name] = _field_value(model, name, info, raw, (*path, key), problems)
    extra = {k: v for k, v in data.items() if k not in known}
    if model.model_config.get("extra") == "allow":
        values.update(extra)
    fields_set = {n for n, i in model.model_fields.items() if (i.alias or n) in data or n in data}
    return model.model_construct(fields_set, **values)


def _field_value(
    model: type[BaseModel],
    name: str,
    info: FieldInfo,
    raw: Any,
    path: tuple[str | int, ...],
    problems: list[str],
) -> Any:
    try:
        return _field_adapter(model, name).validate_python(raw)
    except ValidationError as exc:
        error = exc
    return _salvage(info.annotation, raw, path, problems, error)


def _salvage(
    annotation: Any,
    raw: Any,
    path: tuple[str | int, ...],
    problems: list[str],
    error: ValidationError,
) -> Any:
    """``raw`` typed as far as it matches ``annotation``; the rest kept as it arrived."""
    inner = _strip_optional(annotation)
    submodel = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None
    if submodel is not None and isinstance(raw, Mapping):
        return _construct(submodel, raw, path, problems)
    if get_origin(inner) is list and isinstance(raw, list):
        (item_type,) = get_args(inner) or (Any,)
        adapter = _adapter(item_type)
        items: list[Any] = []
        for index, item in enumerate(raw):
            try:
                items.append(adapter.validate_python(item))
            except ValidationError as item_error:
                items.append(_salvage(item_type, item, (*path, index), problems, item_error))
        return items
    for detail in error.errors(include_url=False):
        where = _dotted((*path, *detail["loc"]))
        problems.append(f"{where}: {detail['msg']} (got {_short(detail['input'])})")
    return raw


def _strip_optional(annotation: Any) -> Any:
    """``X`` for ``X | None`` and ``Annotated[X, ...]``; other annotations unchanged."""
    if get_origin(annotation) is Annotated:
        return _strip_optional(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _strip_optional(members[0])
    return annotation


@functools.cache
def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    info = model.model_fields[name]
    annotation: Any = info.annotation
    if info.metadata:
        annotation = Annotated[annotation, *info.metadata]
    return _adapter(annotation)


@functools.cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in path) or "<root>"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def structured_default(value: object) -> Any:
    """A field default that is JSON (an object, or a list of objects) for a field typed as a model.

    Generated fields using it set ``validate_default=True``, so pydantic turns the JSON into the
    model at runtime; returning ``Any`` lets a type checker accept the JSON form.
    """
    return value


def omitted() -> Any:
    """The default of an optional parameter whose schema does not allow ``null``.

    Generated as ``seed: Annotated[int, Field(...)] = omitted()``: the field may be left out but
    never set to ``None`` (a type error, and a validation error at runtime). Left out, it reads
    as ``None`` and is not sent (:meth:`RequestModel.to_body` sends only the fields the caller
    set). Returning ``Any`` lets a type checker accept the default of a field typed ``int``.
    """
    return None


def to_request_body(model: BaseModel) -> dict[str, Any]:
    """Serialise a request: only explicitly set fields, by alias, JSON-compatible."""
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)
