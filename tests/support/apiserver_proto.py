"""Protobuf request bodies of the few typed calls kubectl makes that reach the emulator.

kubectl sends built-in types as `application/vnd.kubernetes.protobuf` (`kubectl create token`,
`kubectl auth whoami`, `kubectl auth can-i`): the `k8s\\0` envelope around a runtime.Unknown
whose `raw` field holds the object. Only the review and token request messages are decoded
(field numbers from k8s.io/api's generated.proto); the emulator answers JSON, which client-go
decodes by the response's Content-Type as it does for any server.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
PROTOBUF = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"

# message: field number -> (json name, kind); kind is "string", "strings", "int" or a message
_RESOURCE_ATTRIBUTES = {
    n: (name, "string")
    for n, name in enumerate(
        ("namespace", "verb", "group", "version", "resource", "subresource", "name"), start=1
    )
}
_NON_RESOURCE_ATTRIBUTES = {1: ("path", "string"), 2: ("verb", "string")}
_ACCESS_SPEC = {
    1: ("resourceAttributes", _RESOURCE_ATTRIBUTES),
    2: ("nonResourceAttributes", _NON_RESOURCE_ATTRIBUTES),
    3: ("user", "string"),
    4: ("groups", "strings"),
    6: ("uid", "string"),
}
_TOKEN_REQUEST_SPEC = {
    1: ("audiences", "strings"),
    3: (
        "boundObjectRef",
        {1: ("kind", "string"), 2: ("apiVersion", "string"), 3: ("name", "string"),
         4: ("uid", "string")},
    ),
    4: ("expirationSeconds", "int"),
}  # fmt: skip
MESSAGES: dict[str, dict[int, tuple[str, Any]]] = {
    "TokenRequest": {2: ("spec", _TOKEN_REQUEST_SPEC)},
    "TokenReview": {2: ("spec", {1: ("token", "string"), 2: ("audiences", "strings")})},
    "SelfSubjectReview": {},
    "SelfSubjectAccessReview": {2: ("spec", _ACCESS_SPEC)},
    "SubjectAccessReview": {2: ("spec", _ACCESS_SPEC)},
    "LocalSubjectAccessReview": {2: ("spec", _ACCESS_SPEC)},
    "SelfSubjectRulesReview": {2: ("spec", {1: ("namespace", "string")})},
}


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of one message: varints and length-delimited fields."""
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
            out.append((number, value))
        elif wire == 2:
            size, i = _varint(data, i)
            out.append((number, data[i : i + size]))
            i += size
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


def _message(data: bytes, schema: dict[int, tuple[str, Any]]) -> Obj:
    out: Obj = {}
    for number, value in _fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        if kind == "int" and isinstance(value, int):
            out[name] = value
        elif kind == "string" and isinstance(value, bytes):
            out[name] = value.decode()
        elif kind == "strings" and isinstance(value, bytes):
            out.setdefault(name, []).append(value.decode())
        elif isinstance(kind, dict) and isinstance(value, bytes):
            out[name] = _message(value, kind)
    return out


def decode(kind: str, body: bytes) -> Obj:
    """The JSON form of a protobuf-encoded review or TokenRequest; ValueError otherwise."""
    if not body.startswith(_MAGIC) or kind not in MESSAGES:
        raise ValueError(f"cannot decode {kind} from protobuf")
    raw = next((v for n, v in _fields(body[len(_MAGIC) :]) if n == 2), b"")
    assert isinstance(raw, bytes)
    return _message(raw, MESSAGES[kind])
