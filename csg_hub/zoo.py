"""The zoo's published models, the timm way: `list_pretrained("resnet18*")`, `pretrained_info(name).repo_id`.

Reads `csg_hub/zoo_index.json` (package data), generated with `results/results-fashion-mnist.csv` by
`scripts/results_table.py` from the committed metrics and model cards; numbers are Fashion-MNIST test top-1/5.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import json
from dataclasses import dataclass
from importlib import resources

__all__ = ["PretrainedInfo", "list_pretrained", "pretrained_info"]


@dataclass(frozen=True)
class PretrainedInfo:
    """One zoo entry: where it lives on the Hub, what it is and what it measured (top-1/top-5 in %)."""

    name: str
    repo_id: str
    architecture: str
    setting: str
    image_size: int
    top1: float
    top5: float
    stored_params: int
    materialized_params: int
    storage: str
    checkpoint_bytes: int
    dense_twin: str | None = None
    dense_top1: float | None = None
    recovery: float | None = None


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, PretrainedInfo]:
    text = resources.files(__package__).joinpath("zoo_index.json").read_text(encoding="utf-8")
    return {name: PretrainedInfo(name=name, **fields) for name, fields in json.loads(text).items()}


def list_pretrained(filter: str | None = None) -> list[str]:
    """The zoo's model names, sorted; `filter` is a shell-style pattern (`"resnet18*"`, `"*allconvs*"`)."""
    names = sorted(_index())
    return [n for n in names if fnmatch.fnmatchcase(n, filter)] if filter else names


def pretrained_info(name: str) -> PretrainedInfo:
    """The zoo entry `name` (see `list_pretrained`); `from_pretrained(pretrained_info(name).repo_id)` loads it."""
    index = _index()
    if name not in index:
        close = difflib.get_close_matches(name, list(index), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"{name!r} is not in the csg-hub zoo.{hint} list_pretrained() names all {len(index)} models.")
    return index[name]
