"""Typed configs from plain mappings: one strict builder for every config dataclass of the
project (unknown keys and values of the wrong type are errors that name the key, before any work
starts). It lives in the lowest package so that the segmenter, the env and the run share it."""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

C = TypeVar("C")


def fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the type ``hint`` (ints for floats and lists for tuples allowed)."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    target = origin or hint
    if target is bool:
        return isinstance(value, bool)
    if target is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if target is float:
        return (isinstance(value, numbers.Real) and not isinstance(value, bool)
                and (not isinstance(value, float) or not math.isnan(value)))
    if target in (list, tuple):
        return isinstance(value, (list, tuple))
    if target is dict:
        return isinstance(value, Mapping)
    if isinstance(target, type):
        return isinstance(value, target)
    return True


def describe_type(hint: Any) -> str:
    """``hint`` in words: ``an integer``, ``a string or null`` ..."""
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             dict: "a table {...}", list: "a list [...]", tuple: "a list [...]", type(None): "null"}
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in typing.get_args(hint))
    return names.get(origin or hint, str(hint).replace("typing.", ""))


def check_field_types(config: Any, where: str) -> None:
    """Raise ``ValueError`` naming the first field of the dataclass instance ``config`` whose
    value does not fit its annotation (``where`` starts the message, e.g. ``"env config"``)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        hint = hints.get(f.name, Any)
        if not fits(value, hint):
            raise ValueError(f"{where} {f.name}={value!r} has type {type(value).__name__}; "
                             f"expected {describe_type(hint)}")


def strict_config(cls: type[C], data: Mapping[str, Any], where: str) -> C:
    """``cls(**data)`` for a config dataclass: unknown keys and values of the wrong type are a
    ``ValueError`` naming them and the known keys."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {where} key(s) {unknown}; known keys: {sorted(known)}")
    config = cls(**data)
    check_field_types(config, where)
    return config
