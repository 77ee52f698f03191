"""Model cards with measured accuracy (`model-index`) and compression numbers."""

from __future__ import annotations

from importlib import resources

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..layers.report import parameter_report

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


def model_card(
    model,
    repo_id: str,
    *,
    results: list[EvalResult] | None = None,
    checkpoint_bytes: int | None = None,
    training_command: str | None = None,
    dense_baseline: float | None = None,
    remote_code: bool = False,
    license: str = "apache-2.0",
    tags: list[str] | None = None,
    notes: str | None = None,
) -> ModelCard:
    """The card of a CSG model: metadata, results, compression table, loading and training notes."""
    config = model.config
    report = parameter_report(model)
    results = list(results or [])
    card_data = ModelCardData(
        library_name="transformers",
        license=license,
        pipeline_tag="image-classification",
        tags=sorted({"image-classification", "csg", "csg-hub", "timm", config.architecture, *(tags or [])}),
        datasets=sorted({r.dataset_type for r in results}) or None,
        model_name=repo_id.split("/")[-1],
        eval_results=results or None,
    )
    policy = ", ".join(
        name
        for name, on in (
            ("paper policy: k x k convs with k > 1", True),
            ("1x1 convs", config.generate_pointwise),
            ("grouped/depthwise convs", config.generate_grouped),
            ("stem", config.generate_stem),
        )
        if on
    )
    return ModelCard.from_template(
        card_data,
        template_str=card_template(),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        config=config,
        report=report,
        generator_kernels=", ".join(report["generators"]) or "none",
        policy=policy,
        results=results,
        dense_bytes=4 * (report["dense_params"] + report["stored_buffers"]),
        checkpoint_bytes=checkpoint_bytes,
        dense_baseline=dense_baseline,
        remote_code=remote_code,
        training_command=training_command,
        notes=notes,
        citation=CSG_CITATION,
    )
