"""Shared pydantic configuration for the custom resource models.

Field docstrings become CRD descriptions, and fields are camelCase on the wire (as in every
Kubernetes API) while staying snake_case in Python.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""A Kubernetes DNS-1123 label: tasks become part of Job names, so they must be one too."""

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""Parameter and output names: they become environment variable names."""

ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
"""What Kubernetes accepts as an environment variable name."""

FreeForm = dict[str, Any]
"""A Kubernetes object kopflow passes through unchanged (the API server validates it)."""


class Model(BaseModel):
    """Base of every resource model: camelCase aliases, no unknown fields, docs from docstrings."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=False,
        frozen=False,
        # Validators are built on first use, not at import: `kopflow validate` builds only
        # those its documents need; the operator builds its own once at start (controller/main).
        defer_build=True,
    )

    def dump(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Lazy:
    """Marks a field of model type `Annotated[M, Lazy()]`: it is validated by M's own validator,
    built on first use, so a document without the field never pays for building M's schema.

    `kopflow validate` starts faster that way (the pod template is 40% of a workflow's
    schema). Errors keep their full location and kind, the JSON schema (and so the CRD) is
    M's, and pydantic serializes the value as the M it is. A model built after M is built
    validates it inline, exactly as without the marker.
    """

    model: type[BaseModel] | None = None

    def __get_pydantic_core_schema__(
        self, source: type[BaseModel], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        self.model = source
        if source.__pydantic_complete__:
            # M is built already (the operator builds it at start): validate it inline, as
            # any field, with no call into Python per value on every event.
            return handler(source)
        return core_schema.no_info_plain_validator_function(source.model_validate)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        assert self.model is not None
        self.model.model_rebuild()
        return handler(self.model.__pydantic_core_schema__)
