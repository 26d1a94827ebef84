"""Structural schemas of CustomResourceDefinitions: pruning, defaulting, validation and CEL.

The emulator serves custom resources with the CRD's openAPIV3Schema, converted for jsonschema,
so a manifest the generated CRD rejects is rejected here with the same 422 and field path, and
fields the schema does not know are dropped as a cluster drops them.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import jsonschema

from .apiserver_types import Cause, Obj, clone

_ROOT_KEPT = ("apiVersion", "kind", "metadata")
_PASSTHROUGH = (
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "required",
    "multipleOf",
)


def to_jsonschema(schema: Obj) -> Obj:
    """OpenAPI v3 structural schema -> JSON Schema (nullable, int-or-string, exclusive bounds)."""
    out: Obj = {}
    nullable = bool(schema.get("nullable"))
    if schema.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}] + (
            [{"type": "null"}] if nullable else []
        )
    elif "type" in schema:
        out["type"] = [schema["type"], "null"] if nullable else schema["type"]
    for key in _PASSTHROUGH:
        if key in schema:
            out[key] = schema[key]
    if "enum" in schema:
        out["enum"] = list(schema["enum"]) + ([None] if nullable else [])
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if schema.get(exclusive) is True and bound in schema:
            out.pop(bound, None)
            out[exclusive] = schema[bound]
    if schema.get("format") in ("date-time", "int32", "int64"):
        out["format"] = schema["format"]
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {k: to_jsonschema(v) for k, v in schema["properties"].items()}
    if isinstance(schema.get("items"), dict):
        out["items"] = to_jsonschema(schema["items"])
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        out["additionalProperties"] = to_jsonschema(additional)
    for key in ("allOf", "anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and not schema.get("x-kubernetes-int-or-string"):
            out[key] = [to_jsonschema(s) for s in schema[key]]
    if isinstance(schema.get("not"), dict):
        out["not"] = to_jsonschema(schema["not"])
    return out


def _field(path: list[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (("." if text else "") + str(part))
    return text


def _type_name(value: Any) -> str:
    """The JSON type of a value, as the real server names a wrong one."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


_BLOCKING = (
    "FieldValueNotSupported",
    "FieldValueRequired",
    "FieldValueTooLong",
    "FieldValueTooMany",
    "FieldValueTypeInvalid",
)
_NOT_CHECKED = Cause(
    "<nil>",
    "FieldValueInvalid",
    "Invalid value: null: some validation rules were not checked because the object was "
    "invalid; correct the existing errors to complete validation",
)


class RuleError(ValueError):
    """A CEL rule that does not compile, with its path in the schema."""

    def __init__(self, path: str, rule: Obj, detail: str) -> None:
        super().__init__(f"compilation failed: {detail}")
        self.path, self.rule = path, rule

    def cause(self, prefix: str) -> Cause:
        shown = {
            "Rule": self.rule.get("rule", ""),
            "Message": self.rule.get("message", ""),
            "MessageExpression": self.rule.get("messageExpression", ""),
            "Reason": self.rule.get("reason"),
            "FieldPath": self.rule.get("fieldPath", ""),
            "OptionalOldSelf": self.rule.get("optionalOldSelf"),
        }
        value = json.dumps(shown, separators=(",", ":"))
        return Cause(prefix + self.path, "FieldValueInvalid", f"Invalid value: {value}: {self}")


def _shown(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return '"object"' if isinstance(value, dict) else '"array"'
    return json.dumps(value)


class CrdSchema:
    """One served version's schema, ready to prune, default and validate objects."""

    def __init__(self, openapi: Obj | None) -> None:
        self.openapi = openapi or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        self.validator = jsonschema.Draft7Validator(to_jsonschema(self.openapi))
        self._status_validator: jsonschema.Draft7Validator | None = None
        self.rules = self._compile_rules(self.openapi)

    # -- pruning and defaulting --------------------------------------------------------------

    def prune(self, obj: Obj) -> list[str]:
        """Drop fields the schema does not declare; return their paths (for the warnings)."""
        dropped: list[str] = []
        self._prune(obj, self.openapi, [], dropped, root=True)
        return dropped

    def _prune(
        self, value: Any, schema: Obj, path: list[Any], dropped: list[str], root: bool = False
    ) -> None:
        if isinstance(value, dict):
            props = schema.get("properties")
            additional = schema.get("additionalProperties")
            preserve = schema.get("x-kubernetes-preserve-unknown-fields")
            embedded = root or schema.get("x-kubernetes-embedded-resource")
            for key in list(value):
                if embedded and key in _ROOT_KEPT:
                    continue
                if isinstance(props, dict) and key in props:
                    self._prune(value[key], props[key], [*path, key], dropped)
                elif isinstance(additional, dict):
                    self._prune(value[key], additional, [*path, key], dropped)
                elif not (preserve or additional is True):
                    dropped.append(_field([*path, key]))
                    del value[key]
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                self._prune(item, schema["items"], [*path, i], dropped)

    def apply_defaults(self, obj: Obj) -> None:
        """Fill `default`s (and drop nulls of non-nullable fields) as the server does on write."""
        self._default(obj, self.openapi)

    def _default(self, value: Any, schema: Obj) -> None:
        if isinstance(value, dict):
            props = schema.get("properties") or {}
            for key, sub in props.items():
                if key in value and value[key] is None and not sub.get("nullable"):
                    if "default" in sub:
                        value[key] = clone(sub["default"])
                    else:
                        del value[key]
                elif key not in value and "default" in sub:
                    value[key] = clone(sub["default"])
                if key in value:
                    self._default(value[key], sub)
            additional = schema.get("additionalProperties")
            if isinstance(additional, dict):
                for key in value:
                    if key not in props:
                        self._default(value[key], additional)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for item in value:
                self._default(item, schema["items"])

    # -- validation --------------------------------------------------------------------------

    def validate(self, obj: Obj, old: Obj | None = None, *, status: bool = False) -> list[Cause]:
        """Field errors of `obj`: schema first, then CEL unless a schema error blocks it.

        A write to the status subresource validates the status only, against the status
        schema, and its messages name fields relative to it (`observedGeneration in body`).
        """
        if status:
            schema = (self.openapi.get("properties") or {}).get("status") or {}
            body = obj.get("status")
            if self._status_validator is None:
                self._status_validator = jsonschema.Draft7Validator(to_jsonschema(schema))
            errors = self._status_validator.iter_errors(body) if body is not None else ()
            causes = [self._cause(e, "status") for e in errors]
            causes += _list_causes(body, schema, ["status"])
        else:
            body = {k: v for k, v in obj.items() if k != "metadata"}
            causes = [self._cause(e) for e in self.validator.iter_errors(body)]
            causes += _list_causes(body, self.openapi, [])
        if not self.rules:
            return causes
        if any(c.reason in _BLOCKING for c in causes):
            return [_NOT_CHECKED, *causes]
        return causes + self._cel(obj, old)

    def _cause(self, error: jsonschema.ValidationError, root: str = "") -> Cause:
        """One schema error; under `root` the field is prefixed but the message is not."""
        cause = self._relative_cause(error)
        if root:
            cause.field = f"{root}.{cause.field}" if cause.field else root
        return cause

    def _relative_cause(self, error: jsonschema.ValidationError) -> Cause:
        path = list(error.absolute_path)
        name, value, kind = _field(path), error.instance, error.validator
        if kind == "required":
            m = re.match(r"'(.+)' is a required property", error.message)
            missing = m.group(1) if m else ""
            return Cause(_field([*path, missing]), "FieldValueRequired", "Required value")
        if kind == "type":
            expected = error.validator_value
            expected = expected[0] if isinstance(expected, list) else expected
            got = json.dumps(_type_name(value))
            return Cause(
                name,
                "FieldValueTypeInvalid",
                f"Invalid value: {got}: {name} in body must be of type {expected}: {got}",
            )
        if kind == "enum":
            allowed = ", ".join(json.dumps(v) for v in error.validator_value if v is not None)
            return Cause(
                name,
                "FieldValueNotSupported",
                f"Unsupported value: {_shown(value)}: supported values: {allowed}",
            )
        if kind == "maxLength":
            limit = error.validator_value
            return Cause(name, "FieldValueTooLong", f"Too long: may not be more than {limit} bytes")
        if kind == "maxItems":
            return Cause(
                name,
                "FieldValueTooMany",
                f"Too many: {len(value)}: must have at most {error.validator_value} items",
            )
        wording = {
            "minimum": "should be greater than or equal to",
            "maximum": "should be less than or equal to",
            "exclusiveMinimum": "should be greater than",
            "exclusiveMaximum": "should be less than",
            "minLength": "should be at least",
            "minItems": "should have at least",
            "pattern": "should match",
        }.get(str(kind))
        if wording:
            bound = error.validator_value
            shown_bound = f"'{bound}'" if kind == "pattern" else str(bound)
            suffix = (
                " chars long" if kind == "minLength" else (" items" if kind == "minItems" else "")
            )
            detail = f"{name} in body {wording} {shown_bound}{suffix}"
        else:
            detail = error.message
        return Cause(name, "FieldValueInvalid", f"Invalid value: {_shown(value)}: {detail}")

    # -- CEL (x-kubernetes-validations) ------------------------------------------------------

    def _compile_rules(self, schema: Obj) -> list[tuple[list[Any], Obj, Any]]:
        """(path pattern, rule, program) for every rule; '*' in a path means every item/value."""
        found: list[tuple[list[Any], Obj, Any]] = []

        def walk(node: Obj, path: list[Any], where: str) -> None:
            for i, rule in enumerate(node.get("x-kubernetes-validations") or []):
                try:
                    program = _cel_program(str(rule["rule"]))
                except Exception as exc:
                    at = f"{where}.x-kubernetes-validations[{i}].rule"
                    raise RuleError(at, rule, f"{rule.get('rule')}: {exc}") from exc
                found.append((path, rule, program))
            for key, sub in (node.get("properties") or {}).items():
                walk(sub, [*path, key], f"{where}.properties[{key}]")
            if isinstance(node.get("items"), dict):
                walk(node["items"], [*path, "*"], f"{where}.items")
            if isinstance(node.get("additionalProperties"), dict):
                walk(node["additionalProperties"], [*path, "**"], f"{where}.additionalProperties")

        walk(schema, [], "")
        return found

    def _cel(self, obj: Obj, old: Obj | None) -> list[Cause]:
        if not self.rules:
            return []
        import celpy

        causes: list[Cause] = []
        for pattern, rule, program in self.rules:
            for path, value, old_value in _resolve(obj, old, pattern, []):
                uses_old = "oldSelf" in rule["rule"]
                if uses_old and old_value is _MISSING:
                    continue  # transition rules only run on updates
                activation = {"self": celpy.json_to_cel(value)}
                if uses_old:
                    activation["oldSelf"] = celpy.json_to_cel(old_value)
                try:
                    result = program.evaluate(activation)
                except Exception:
                    continue  # a function this CEL library lacks: the rule is not enforced here
                if isinstance(result, Exception) or bool(result):
                    continue  # passed, or failed to evaluate (treated as not enforced)
                field = _field(path) + rule.get("fieldPath", "")
                message = rule.get("message") or f"failed rule: {rule['rule']}"
                reason = rule.get("reason", "FieldValueInvalid")
                causes.append(Cause(field, reason, f"{_RULE_WORDING.get(reason, '')}{message}"))
        return causes


_MISSING = object()
# How a failed rule's message is introduced, by its `reason` (the value is never shown).
_RULE_WORDING = {
    "FieldValueInvalid": "Invalid value: ",
    "FieldValueForbidden": "Forbidden: ",
    "FieldValueRequired": "Required value: ",
    "FieldValueDuplicate": "Duplicate value: ",
}


def _list_causes(value: Any, schema: Obj, path: list[Any]) -> list[Cause]:
    """Duplicates in `x-kubernetes-list-type: set` lists and in `map` lists' keys."""
    causes: list[Cause] = []
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, sub in value.items():
            child = (
                props.get(key)
                if key in props
                else additional
                if isinstance(additional, dict)
                else None
            )
            if isinstance(child, dict):
                causes += _list_causes(sub, child, [*path, key])
    elif isinstance(value, list):
        kind, keys = (
            schema.get("x-kubernetes-list-type"),
            schema.get("x-kubernetes-list-map-keys") or [],
        )
        seen: list[Any] = []
        for i, item in enumerate(value):
            ident = (
                [item.get(k) for k in keys] if kind == "map" and isinstance(item, dict) else item
            )
            if kind in ("set", "map") and ident in seen:
                shown = json.dumps({k: item.get(k) for k in keys} if kind == "map" else item)
                causes.append(
                    Cause(_field([*path, i]), "FieldValueDuplicate", f"Duplicate value: {shown}")
                )
            seen.append(ident)
            if isinstance(schema.get("items"), dict):
                causes += _list_causes(item, schema["items"], [*path, i])
    return causes


@functools.lru_cache(maxsize=512)
def _cel_program(rule: str) -> Any:
    """A compiled CEL program (compiling, and building the parser, is the slow part)."""

    env = _cel_environment()
    return env.program(env.compile(rule))


@functools.lru_cache(maxsize=1)
def _cel_environment() -> Any:
    import celpy

    return celpy.Environment()


def _resolve(
    value: Any, old: Any, pattern: list[Any], path: list[Any]
) -> list[tuple[list[Any], Any, Any]]:
    """Concrete (path, value, old value) triples for a rule's path pattern."""
    if not pattern:
        return [(path, value, old if old is not None else _MISSING)]
    head, rest = pattern[0], pattern[1:]
    out: list[tuple[list[Any], Any, Any]] = []
    if head == "*" and isinstance(value, list):
        for i, item in enumerate(value):
            out += _resolve(item, None, rest, [*path, i])
    elif head == "**" and isinstance(value, dict):
        for key, item in value.items():
            prior = old.get(key) if isinstance(old, dict) else None
            out += _resolve(item, prior, rest, [*path, key])
    elif isinstance(value, dict) and head in value:
        prior = old.get(head) if isinstance(old, dict) else None
        out += _resolve(value[head], prior, rest, [*path, head])
    return out


def check_structural(schema: Obj, path: str = "") -> list[Cause]:
    """The CRD-creation check that every schema node with properties/items names its type."""
    causes: list[Cause] = []
    combinators = ("allOf", "anyOf", "oneOf", "not")
    untyped = "type" not in schema and not any(k in schema for k in combinators)
    exempt = schema.get("x-kubernetes-int-or-string") or schema.get(
        "x-kubernetes-preserve-unknown-fields"
    )
    if untyped and not exempt:
        message = "Required value: must not be empty for specified object fields"
        causes.append(Cause(path + ".type", "FieldValueRequired", message))
    for key, sub in (schema.get("properties") or {}).items():
        causes += check_structural(sub, f"{path}.properties[{key}]")
    if isinstance(schema.get("items"), dict):
        causes += check_structural(schema["items"], path + ".items")
    return causes
