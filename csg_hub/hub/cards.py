"""Model cards with measured accuracy (`model-index`) and compression numbers."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..atomic_write import write_file_atomic
from ..report import inference_macs, parameter_report
from ..storage import storage_sizes
from .eval_results import eval_results_files, write_eval_results

try:
    # transformers copies only .py files of remote code into its module cache, so a trust_remote_code
    # bundle carries the template as a module (written by `remote_code.save_with_code`)
    from .model_card_template import TEMPLATE as _BUNDLED_TEMPLATE
except ImportError:
    _BUNDLED_TEMPLATE = None
CSG_CITATION = """@inproceedings{omidvar2021associative,
  title     = {Associative Convolutional Layers},
  author    = {Omidvar, Hamed and Akhlaghi, Vahideh and Su, Hao and Franceschetti, Massimo and Gupta, Rajesh K.},
  booktitle = {Proceedings of The 24th International Conference on Artificial Intelligence and Statistics (AISTATS)},
  year      = {2021},
  eprint    = {1906.04309},
  archivePrefix = {arXiv}
}"""


def accuracy_result(
    top1: float, dataset_id: str, split: str = "test", dataset_name: str | None = None, num_samples: int | None = None
) -> EvalResult:
    """An image-classification `EvalResult` for a measured top-1 accuracy (in %)."""
    result = EvalResult(
        task_type="image-classification",
        dataset_type=dataset_id,
        dataset_name=dataset_name or dataset_id,
        dataset_split=split,
        metric_type="accuracy",
        metric_name="Top-1 accuracy",
        metric_value=round(float(top1), 2),
    )
    result.num_samples = num_samples  # shown in the card body, not part of model-index
    return result


def card_template() -> str:
    """The Jinja template of CSG model cards (package data: `csg_hub/hub/templates/model_card.md`)."""
    if _BUNDLED_TEMPLATE is not None:
        return _BUNDLED_TEMPLATE
    return resources.files(__package__).joinpath("templates", "model_card.md").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _compiled_template():
    import jinja2

    return jinja2.Template(card_template())


# Card metadata key holding what the card body shows but `model-index` cannot: re-pushing a model reads
# it back, so a card never loses a measured number because it was pushed another way.
CARD_FIELDS_KEY = "csg_hub"


def model_card(
    model,
    repo_id: str,
    *,
    results: list[EvalResult] | None = None,
    checkpoint_bytes: int | None = None,
    training_command: str | None = None,
    dense_baseline: float | None = None,
    base_model: str | None = None,
    weights_digest: str | None = None,
    earlier_results: list[EvalResult] | None = None,
    storage_bytes: dict[str, int] | None = None,
    remote_code: bool = False,
    license: str = "apache-2.0",
    tags: list[str] | None = None,
    notes: str | None = None,
) -> ModelCard:
    """The card of a CSG model: metadata (`base_model` when it was converted from a dense parent), results
    with recovery against the dense baseline, model stats, compression table, loading and training notes.

    `weights_digest` (the checkpoint's `csg_hub.integrity` CRC) ties the results to these exact weights, so a
    later push of changed weights does not carry them over; `earlier_results` are shown (outside
    `model-index`) as measured on the weights these were derived from.
    """
    config = model.config
    base_model = base_model or getattr(config, "base_model", None)
    report = parameter_report(model)
    results = list(results or [])
    recorded = {
        "weights_crc32": weights_digest,
        "result_samples": [getattr(r, "num_samples", None) for r in results] if results else None,
        "dense_baseline_top1": dense_baseline,
        "training_command": training_command,
        "notes": notes,
    }
    card_data = ModelCardData(
        library_name="transformers",
        license=license,
        pipeline_tag="image-classification",
        # no "timm" tag: timm.create_model("hf-hub:...") cannot build a CSG repo (the dense export of
        # `push_timm` carries it)
        tags=sorted({"image-classification", "csg", "csg-hub", config.architecture, *(tags or [])} - {"timm"}),
        datasets=sorted({r.dataset_type for r in results}) or None,
        base_model=base_model,
        model_name=repo_id.split("/")[-1],
        eval_results=results or None,
        **{CARD_FIELDS_KEY: {k: v for k, v in recorded.items() if v is not None} or None},
    )
    # the paper generates k x k convs (k > 1) only: name each setting that goes beyond it
    extra = [
        name
        for name, on in (
            ("1x1 convs", config.generate_pointwise),
            ("grouped/depthwise convs", config.generate_grouped),
            ("stem", config.generate_stem),
        )
        if on
    ]
    policy = "k x k convs with k > 1, " + (
        "the paper's policy" if not extra else "as in the paper, plus " + ", ".join(extra)
    )
    input_size = config.data_config["input_size"]
    # ModelCard.from_template, with the template compiled once per process (compiling it took longer than
    # saving a resnet18)
    values = {
        "model_name": repo_id.split("/")[-1],
        "repo_id": repo_id,
        "config": config,
        "report": report,
        "gmacs": inference_macs(model, input_size) / 1e9,
        "input_size": input_size,
        "generator_kernels": ", ".join(report["generators"]) or "none",
        "policy": policy,
        "results": results,
        "earlier_results": earlier_results or [],
        "storage_bytes": storage_bytes if storage_bytes is not None else storage_sizes(model),
        "dense_bytes": 4 * (report["dense_params"] + report["stored_buffers"]),
        "checkpoint_bytes": checkpoint_bytes,
        "dense_baseline": dense_baseline,
        "base_model": base_model,
        "remote_code": remote_code,
        "training_command": training_command,
        "notes": notes,
        "citation": CSG_CITATION,
    }
    return ModelCard(_compiled_template().render(card_data=card_data.to_yaml(), **{**card_data.to_dict(), **values}))


def card_fields(card: ModelCard) -> dict:
    """What a csg-hub card records, as `model_card` keyword arguments: `results`, `weights_digest`,
    `base_model`, `dense_baseline`, `training_command`, `notes` (absent ones left out)."""
    data = card.data
    fields = dict(data.get(CARD_FIELDS_KEY) or {})
    results = list(data.eval_results or [])
    for result, samples in zip(results, fields.get("result_samples") or []):
        result.num_samples = samples
    found = {
        "results": results or None,
        "weights_digest": fields.get("weights_crc32"),
        "base_model": data.get("base_model"),
        "dense_baseline": fields.get("dense_baseline_top1"),
        "training_command": fields.get("training_command"),
        "notes": fields.get("notes"),
    }
    return {k: v for k, v in found.items() if v is not None}


def existing_card(*sources: str | None, token: str | bool | None = None) -> ModelCard | None:
    """The first card found among `sources` (local model folders or Hub repo ids), or None."""
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    for source in sources:
        if not source:
            continue
        readme = Path(source) / "README.md"
        if Path(source).is_dir():
            if readme.exists():
                return ModelCard.load(readme)
            continue
        try:
            return ModelCard.load(source, token=token)
        except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
            continue
        except ValueError:  # not a repo id (e.g. a path that does not exist)
            continue
    return None


def card_result_splits(model_id: str) -> set[str]:
    """The dataset splits of the accuracy results a model card (local folder or Hub repo) already records."""
    card = existing_card(model_id)
    results = (card.data.eval_results or []) if card is not None and card.data is not None else []
    return {r.dataset_split for r in results if r.metric_type == "accuracy" and r.dataset_split}


def update_card_accuracy(
    model_id: str, top1: float, dataset_id: str, split: str = "test", revision: str | None = None
) -> None:
    """Record a measured top-1 in the `model-index` of a model card and in its `.eval_results/<dataset>.yaml`:
    a local folder's files, or a Hub repo's (pushed as one new commit)."""
    local = Path(model_id)
    readme = local / "README.md"
    if local.is_dir():
        card = ModelCard.load(readme) if readme.exists() else ModelCard("---\n---\n")
    else:
        card = ModelCard.load(model_id)
    data = card.data if card.data is not None else ModelCardData()
    new = accuracy_result(top1, dataset_id, split=split)
    kept = [
        r
        for r in (data.eval_results or [])
        if not (r.dataset_type == dataset_id and r.dataset_split == split and r.metric_type == "accuracy")
    ]
    data.eval_results = [*kept, new]
    data.model_name = data.model_name or local.name
    data.datasets = sorted({*(data.datasets or []), dataset_id})
    card.data = data
    if local.is_dir():
        save_card(card, local)
    else:
        from huggingface_hub import CommitOperationAdd, HfApi

        files = {"README.md": str(card), **eval_results_files(data.eval_results)}
        # a commit sha cannot take a commit: record the result on the default branch then
        branch = None if revision is None or len(revision) == 40 else revision
        HfApi().create_commit(
            model_id,
            [CommitOperationAdd(path_in_repo=path, path_or_fileobj=text.encode()) for path, text in files.items()],
            commit_message=f"Record {split} top-1 on {dataset_id}",
            revision=branch,
        )


def save_card(card: ModelCard, folder: str | Path, durable: bool = True) -> None:
    """Write a card into a model folder: README.md and, from the same `model-index` results, the Hub's
    `.eval_results/<dataset>.yaml` files (`csg_hub.hub.eval_results`)."""
    folder = Path(folder)
    write_file_atomic(folder / "README.md", str(card), durable=durable)
    write_eval_results(folder, card.data.eval_results if card.data is not None else None, durable=durable)
