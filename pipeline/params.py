"""Read params.yaml: one section per stage plus top-level keys (seed, gamma, ...) that experiments sweep with -S.

Every section is declared as a frozen dataclass next to the code that reads it (e.g. `EncodeParams` in embeddings.py);
`section(params, "encode", EncodeParams)` checks it: a missing key, an unknown key (a typo) or a value of the wrong type
is one PipelineError line that names the key and the expected type. Field types may be int, float, str, bool,
`X | None`, `list[X]`, `tuple[X, ...]` or `Literal[...]`.
"""
import dataclasses
import types
import typing
from pathlib import Path

import yaml

from pipeline.errors import PipelineError


def load_params(path="params.yaml") -> dict:
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path} not found: run stages from the repository root")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise PipelineError(f"{path} is not valid YAML ({str(err).splitlines()[0]}): fix the file") from None
    if not isinstance(params, dict):
        raise PipelineError(f"{path} must be a mapping of sections, not {type(params).__name__}")
    return params


def type_name(expected) -> str:
    """How a declared type reads in an error message: `int`, `float | null`, `list of float`, `one of 'a', 'b'`."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin is typing.Literal:
        return "one of " + ", ".join("null" if a is None else repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("null" if a is type(None) else type_name(a) for a in args)
    if origin in (list, tuple):
        return f"list of {type_name(args[0])}"
    return getattr(expected, "__name__", str(expected))


def conforms(value, expected) -> bool:
    """Whether a YAML value matches a declared type (an int is a float; a bool is never a number)."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, a) for a in args)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(conforms(v, args[0]) for v in value)
    if expected is type(None):
        return value is None
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def check(values: dict, spec, where: str, defaults: bool = False):
    """Build the dataclass `spec` from `values` after checking every key and type; raise one line listing each problem.

    defaults: fields with a default may be left out (the saved configs of models); otherwise every field is required.
    """
    if not isinstance(values, dict):
        raise PipelineError(f"params.yaml: `{where}` must be a mapping of keys, not {type(values).__name__}")
    hints = typing.get_type_hints(spec)
    fields = {f.name: f for f in dataclasses.fields(spec)}
    problems = [f"unknown key `{where}.{k}`" for k in values if k not in fields]
    for name, field in fields.items():
        has_default = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
        if name not in values:
            if not (defaults and has_default):
                problems.append(f"missing key `{where}.{name}` ({type_name(hints[name])})")
        elif not conforms(values[name], hints[name]):
            problems.append(f"`{where}.{name}` is {values[name]!r}, expected {type_name(hints[name])}")
    if problems:
        known = ", ".join(fields)
        raise PipelineError(f"params.yaml: {'; '.join(problems)} (`{where}` takes: {known})")
    return spec(**{k: v for k, v in values.items()})


def section(params: dict, name: str, spec):
    """The checked `name` section of params.yaml as an instance of the dataclass `spec`."""
    if name not in params:
        raise PipelineError(f"params.yaml has no `{name}` section")
    return check(params[name] or {}, spec, name)


def value(params: dict, key: str, expected):
    """A checked top-level key of params.yaml (`seed`, `gamma`)."""
    if key not in params:
        raise PipelineError(f"params.yaml has no top-level `{key}` ({type_name(expected)})")
    if not conforms(params[key], expected):
        raise PipelineError(f"params.yaml: `{key}` is {params[key]!r}, expected {type_name(expected)}")
    return params[key]
