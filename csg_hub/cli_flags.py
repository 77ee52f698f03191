"""Command-line flags generated from the dataclasses that own them: one `--flag` per CSG hyper-parameter of
`CSGConfig` and per field of `TrainingArguments`, so a default, a type or a choice lives in one place."""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from typing import Any

from .configuration import CSG_FIELDS, FIELD_CHOICES, CSGConfig
from .training.loop import TrainingArguments


def _field_help(docstring: str) -> dict[str, str]:
    # "    name (`type`, defaults to ...):\n        text..." entries of a transformers-style config docstring
    helps = {}
    for names, body in re.findall(r"^    ([\w, ]+) \(.*\):\n((?:        .*\n?)+)", docstring, re.MULTILINE):
        text = " ".join(line.strip() for line in body.splitlines())
        for name in names.split(", "):
            helps[name] = text.replace("%", "%%")
    return helps


def _add(group, name: str, annotation: Any, default: Any, help: str | None, choices=None) -> None:
    flag = f"--{name.replace('_', '-')}"
    args = typing.get_args(annotation)
    if annotation is bool or isinstance(default, bool):
        group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help)
    elif typing.get_origin(annotation) in (typing.Union, types.UnionType) and any(
        typing.get_origin(a) is list for a in args
    ):
        group.add_argument(flag, nargs="*", default=default, help=help)
    else:
        kind = annotation if isinstance(annotation, type) else next((a for a in args if a is not type(None)), str)
        group.add_argument(flag, type=kind, default=default, choices=choices, help=help)


def add_csg_flags(group) -> None:
    """One flag per CSG hyper-parameter (`CSG_FIELDS`), with `CSGConfig`'s defaults, types, choices and docs."""
    fields = {f.name: f for f in dataclasses.fields(CSGConfig)}
    helps = _field_help(CSGConfig.__doc__ or "")
    for name in CSG_FIELDS:
        field = fields[name]
        _add(group, name, field.type, field.default, helps.get(name), FIELD_CHOICES.get(name))


def csg_options(args: argparse.Namespace) -> dict[str, Any]:
    """The `CSGConfig` keyword arguments that `add_csg_flags`' flags parsed into."""
    return {name: getattr(args, name) for name in CSG_FIELDS}


def add_training_flags(group) -> None:
    """One flag per `TrainingArguments` field (booleans as `--x/--no-x`): the scripts that train share one set
    of recipe flags."""
    for field in dataclasses.fields(TrainingArguments):
        # the optional fields (max_steps) are counts: their type is int when their default is None
        _add(group, field.name, int if field.default is None else type(field.default), field.default, None)


def training_arguments(args: argparse.Namespace) -> TrainingArguments:
    """The `TrainingArguments` that `add_training_flags`' flags parsed into."""
    return TrainingArguments(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingArguments)})
