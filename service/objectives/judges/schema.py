"""A small validator for the subset of JSON Schema that judge arguments use.

Judges publish their argument schema as plain JSON Schema dicts (so `/v1/judges` can show them and
clients can validate too), but the service should not depend on ``jsonschema`` for a dozen keywords.
Supported: ``type`` (a name or a list of names), ``properties``, ``required``,
``additionalProperties: false``, ``enum``, ``minimum``, ``maximum``, ``exclusiveMinimum``,
``minLength``, ``maxLength``, ``minItems``, ``maxItems``, ``items``. Any other keyword in a schema is a
programming error and fails loudly in `check_schema_keywords`, so a schema never silently means less
than it says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["SUPPORTED_KEYWORDS", "check_schema_keywords", "validate_args"]

SUPPORTED_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "enum", "minimum", "maximum",
        "exclusiveMinimum", "minLength", "maxLength", "minItems", "maxItems", "items", "description",
        "default",
    }
)  # fmt: skip

_TYPE_CHECKS = {
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, list | tuple),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "null": lambda v: v is None,
}


def check_schema_keywords(schema: Mapping[str, Any], where: str = "schema") -> None:
    """Raise ValueError if ``schema`` uses a keyword this validator does not implement."""
    unknown = sorted(set(schema) - SUPPORTED_KEYWORDS)
    if unknown:
        raise ValueError(
            f"{where} uses unsupported JSON-schema keywords {unknown}; supported: "
            f"{sorted(SUPPORTED_KEYWORDS)}"
        )
    for name, sub in schema.get("properties", {}).items():
        check_schema_keywords(sub, f"{where}.properties.{name}")
    if isinstance(schema.get("items"), Mapping):
        check_schema_keywords(schema["items"], f"{where}.items")


def validate_args(value: Any, schema: Mapping[str, Any], where: str = "args") -> list[str]:
    """Return every violation of ``schema`` by ``value`` as ``"args.keywords[1]: expected string"``."""
    problems: list[str] = []
    _validate(value, schema, where, problems)
    return problems


def _validate(value: Any, schema: Mapping[str, Any], where: str, problems: list[str]) -> None:
    expected = schema.get("type")
    if expected is not None:
        names = [expected] if isinstance(expected, str) else list(expected)
        if not any(_TYPE_CHECKS[name](value) for name in names):
            problems.append(
                f"{where}: expected {' or '.join(names)}, got {_json_type(value)} ({value!r:.40})"
            )
            return
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} is not one of {list(schema['enum'])}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{where}: {value} is less than the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{where}: {value} is greater than the maximum {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            problems.append(f"{where}: {value} must be greater than {schema['exclusiveMinimum']}")
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        problems.append(f"{where}: must have at least {schema['minLength']} character(s)")
    if isinstance(value, str) and "maxLength" in schema and len(value) > schema["maxLength"]:
        problems.append(f"{where}: must have at most {schema['maxLength']} character(s)")
    if isinstance(value, list | tuple):
        _validate_array(value, schema, where, problems)
    if isinstance(value, Mapping):
        _validate_object(value, schema, where, problems)


def _validate_array(
    value: list[Any] | tuple[Any, ...], schema: Mapping[str, Any], where: str, problems: list[str]
) -> None:
    if len(value) < schema.get("minItems", 0):
        problems.append(f"{where}: must have at least {schema['minItems']} item(s), got {len(value)}")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        problems.append(f"{where}: must have at most {schema['maxItems']} item(s), got {len(value)}")
    if isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            _validate(item, schema["items"], f"{where}[{i}]", problems)


def _validate_object(
    value: Mapping[str, Any], schema: Mapping[str, Any], where: str, problems: list[str]
) -> None:
    properties: Mapping[str, Any] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            problems.append(f"{where}: missing required property {name!r}")
    if schema.get("additionalProperties", True) is False:
        extra = sorted(str(k) for k in value if k not in properties)
        if extra:
            problems.append(f"{where}: unknown property {extra}; allowed: {sorted(properties)}")
    for name, sub in properties.items():
        if name in value:
            _validate(value[name], sub, f"{where}.{name}", problems)


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPE_CHECKS[name](value):
            return name
    return type(value).__name__
