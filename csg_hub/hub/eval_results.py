"""The Hub's structured results: `.eval_results/<dataset>.yaml` in a model repo, derived from the same
`EvalResult` list that a card's `model-index` holds (https://huggingface.co/docs/hub/eval-results).

One file per dataset, named by the dataset id with "/" replaced by "__"
(`zalando-datasets/fashion_mnist` -> `.eval_results/zalando-datasets__fashion_mnist.yaml`), holding a YAML
list of `{dataset: {id, task_id}, value, source: {url, name}}` entries (huggingface_hub's `EvalResultEntry`).
`task_id` is the result's split (`test`): csg-hub reports one metric (top-1) per split. `date` is left out, so
the Hub takes the commit's time; `source` only when the result names one (`EvalResult.source_url`).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, EvalResultEntry, eval_result_entries_to_yaml, parse_eval_result_entries
from huggingface_hub.constants import EVAL_RESULTS_FOLDER

from ..atomic_write import write_file_atomic

__all__ = [
    "EVAL_RESULTS_FOLDER",
    "eval_results_files",
    "eval_results_path",
    "read_eval_results",
    "write_eval_results",
]


def eval_results_path(dataset_id: str) -> str:
    """The repo path of a dataset's results file: `.eval_results/<dataset id, "/" -> "__">.yaml`."""
    if not dataset_id or dataset_id.startswith("/") or ".." in dataset_id or "\\" in dataset_id:
        raise ValueError(f"Cannot name an eval-results file after the dataset id {dataset_id!r}.")
    return f"{EVAL_RESULTS_FOLDER}/{dataset_id.replace('/', '__')}.yaml"


def _entry(result: EvalResult) -> EvalResultEntry:
    return EvalResultEntry(
        dataset_id=result.dataset_type,
        task_id=result.dataset_split or result.dataset_config or "default",
        value=result.metric_value,
        dataset_revision=result.dataset_revision,
        verify_token=result.verify_token,
        source_url=result.source_url,
        source_name=result.source_name if result.source_url else None,
    )


def is_hub_dataset_id(dataset_id: str) -> bool:
    """Whether results on `dataset_id` can go to the Hub: a valid repo id, not a local folder (a dataset read from
    disk has no Hub page or leaderboard; its results stay in the card's `model-index` only)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(dataset_id)
    except HFValidationError:
        return False
    return not os.path.isdir(dataset_id)


def eval_results_files(results: list[EvalResult] | None) -> dict[str, str]:
    """The `.eval_results/*.yaml` files (repo path -> YAML text) of a card's `model-index` results on Hub
    datasets (`is_hub_dataset_id`)."""
    by_dataset: dict[str, list[EvalResultEntry]] = defaultdict(list)
    for result in results or []:
        if is_hub_dataset_id(result.dataset_type):
            by_dataset[result.dataset_type].append(_entry(result))
    return {
        eval_results_path(dataset): yaml.safe_dump(eval_result_entries_to_yaml(entries), sort_keys=False)
        for dataset, entries in sorted(by_dataset.items())
    }


def write_eval_results(folder: str | Path, results: list[EvalResult] | None, durable: bool = True) -> list[Path]:
    """Write the `.eval_results/*.yaml` files of `results` into a model folder (each file atomically); files of
    other datasets are left as they are. Returns the paths written."""
    written = []
    for path, text in eval_results_files(results).items():
        target = Path(folder) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomic(target, text, durable=durable)
        written.append(target)
    return written


def read_eval_results(folder: str | Path) -> list[EvalResultEntry]:
    """Every entry of a model folder's `.eval_results/*.yaml` files (none: an empty list)."""
    entries = []
    for path in sorted((Path(folder) / EVAL_RESULTS_FOLDER).glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise TypeError(f"{path} holds a {type(data).__name__}, not the YAML list of the Hub's .eval_results format.")
        entries += parse_eval_result_entries(data)
    return entries
