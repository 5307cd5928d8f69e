"""Which keys a table of release.toml may hold, read from the model that owns that table.

An unknown key is reported with the keys of the model that actually validates its table
(found by walking the key path through the models' annotations), so a new field or a new
nested table is suggested without anyone keeping a list of keys up to date.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from release.config.model import ReleaseConfig


def _models_in(annotation: Any) -> list[type[BaseModel]] | Any:
    """The model(s) an annotation stands for, unwrapping Annotated, Optional and unions.

    Returns the annotation itself when it is no model (a dict, a scalar).
    """
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        found: list[type[BaseModel]] = []
        for member in get_args(annotation):
            inner = _models_in(member)
            if isinstance(inner, list):
                found += inner
        return found or annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return annotation


def _file_keys(model: type[BaseModel]) -> dict[str, Any]:
    """Key as written in the file -> annotation (an alias is what the file says)."""
    hidden: frozenset[str] = getattr(model, "NOT_FILE_KEYS", frozenset())
    return {
        (field.alias or name): field.annotation
        for name, field in model.model_fields.items()
        if name not in hidden
    }


def owner_keys(path: Sequence[str], variant: str | None = None) -> list[str]:
    """The keys valid in the table at `path` (the key path without the unknown key).

    `variant` picks one model of a union when the file said which (a source's 'git' or
    'index'); without it, the keys of every model of the union are valid.
    """
    current: Any = ReleaseConfig
    for part in path:
        models = _models_in(current)
        if isinstance(models, list):
            if variant is not None:
                models = [m for m in models if variant in _file_keys(m)] or models
            fields: dict[str, Any] = {}
            for model in models:
                fields |= _file_keys(model)
            if part not in fields:
                return []
            current = fields[part]
        elif get_origin(models) is dict:
            current = get_args(models)[1]  # `part` names an entry: step into its value
        else:
            return []
    models = _models_in(current)
    if not isinstance(models, list):
        return []
    if variant is not None:
        models = [m for m in models if variant in _file_keys(m)] or models
    keys: list[str] = []
    for model in models:
        keys += [key for key in _file_keys(model) if key not in keys]
    return keys
