"""Checking values against type hints: the builder methods' keywords are the schema of both
experiment files and our configs' own fields.

RLlib's builder methods (`training()`, `env_runners()`, ...) declare their keywords with type
hints and the default `NotProvided`; :func:`builder_fields` reads them, up a config class's
chain, and :func:`conforms` checks a value against one. Values come from YAML (ints count as
floats, lists as tuples) or from Python (numpy scalars count as numbers, tuples as lists).
"""

from __future__ import annotations

import inspect
import numbers
import types
import typing
from collections.abc import Callable
from typing import Any

import numpy as np
from ray.rllib.algorithms.algorithm_config import NotProvided


def builder_fields(config_cls: type, method: str, *, own_only: bool = False) -> dict[str, Any]:
    """Keyword arguments of `config_cls.<method>()` and their type hints, up the class chain.

    Our configs' builder methods take their own keywords and pass `**kwargs` on to the parent
    class's, so the accepted keywords are the union over the MRO. Only keywords that follow
    RLlib's builder convention (default `NotProvided`) count, which leaves out the deprecated
    ones (default `DEPRECATED_VALUE`). With `own_only`, only the classes of this package.
    """
    fields: dict[str, Any] = {}
    for klass in config_cls.__mro__:
        if own_only and not klass.__module__.startswith("rllib_hatrpo"):
            continue
        if method in vars(klass):
            for name, hint in signature_fields(vars(klass)[method], builder=True).items():
                fields.setdefault(name, hint)
    return fields


def signature_fields(function: Callable[..., Any], *, builder: bool = False) -> dict[str, Any]:
    """The named parameters of `function` (not `self`, `*args`, `**kwargs`; with `builder`,
    only those defaulting to `NotProvided`) and their type hints (`Any` where unannotated or
    unresolvable)."""
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(function).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if builder and param.default is not NotProvided:
            continue
        fields[name] = _resolve(param.annotation, function)
    return fields


def _resolve(annotation: Any, function: Callable[..., Any]) -> Any:
    """A string annotation (`from __future__ import annotations`) evaluated where it was
    written; `Any` for a missing or unresolvable one."""
    if annotation is inspect.Parameter.empty:
        return Any
    if isinstance(annotation, str):
        try:
            return eval(annotation, function.__globals__)  # noqa: S307 - our own source code
        except Exception:
            return Any
    return annotation


def is_search_space(value: Any) -> bool:
    """A Tune search space (`tune.uniform(...)`, `tune.grid_search([...])`, ...) standing in
    for a value until a trial resolves it."""
    from ray.tune.search.sample import Domain

    return isinstance(value, Domain) or (isinstance(value, dict) and set(value) == {"grid_search"})


def conforms(value: Any, hint: Any) -> bool:
    """Whether a value fits a type hint (ints count as floats, lists and tuples as each other,
    numpy scalars as numbers and booleans).

    Hints that no plain value can fit (classes, callables) accept only what their union
    allows besides them, e.g. None.
    """
    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, arg) for arg in args)
    if hint is type(None) or hint is None:
        return value is None
    is_bool = isinstance(value, bool | np.bool_)
    if hint is bool:
        return is_bool
    if hint is int:
        return isinstance(value, numbers.Integral) and not is_bool
    if hint is float:
        return isinstance(value, numbers.Real) and not is_bool
    if hint is str:
        return isinstance(value, str)
    if hint in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, list | tuple):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(conforms, value, args))
        return not args or all(conforms(item, args[0]) for item in value)
    if hint is dict or origin is dict:
        return isinstance(value, dict) and (
            not args or all(conforms(item, args[1]) for item in value.values())
        )
    return False


def describe(hint: Any) -> str:
    """A type hint as a short type expression: `float | list[list[int | float]] | null`."""
    if hint is Any:
        return "any"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(describe(arg) for arg in args)
    if hint is type(None) or hint is None:
        return "null"
    if origin in (list, tuple, dict):
        inner = ", ".join(describe(arg) for arg in args if arg is not Ellipsis)
        name = "list" if origin is tuple else origin.__name__
        return f"{name}[{inner}]" if inner else name
    return getattr(hint, "__name__", str(hint))


def show(value: Any) -> str:
    """A value and its type, for messages."""
    return f"{value!r} ({type(value).__name__})"
