"""Pushing CSG models to the Hub with their card."""

from __future__ import annotations

import tempfile
from pathlib import Path

from huggingface_hub import CommitInfo, EvalResult, HfApi

from ..integrity import recorded_digest
from .cards import card_fields, existing_card, model_card
from .remote_code import save_with_code


def push_model(
    model,
    repo_id: str,
    *,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    include_code: bool = False,
    results: list[EvalResult] | None = None,
    training_command: str | None = None,
    dense_baseline: float | None = None,
    base_model: str | None = None,
    notes: str | None = None,
    tags: list[str] | None = None,
) -> CommitInfo:
    """Upload `config.json`, `model.safetensors`, `preprocessor_config.json` and a model card (plus the
    modeling code when `include_code=True`) to `repo_id`, creating the repo if needed. Returns the commit.

    What is not given is taken from the card the model came with (its `name_or_path`) or, failing that, the
    card already in `repo_id`: results and the training command only when that card recorded these exact
    weights (else they are listed as the source weights' results), the dense baseline, base model and notes
    always."""
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as tmp:
        if include_code:
            save_with_code(model, tmp)
        else:
            model.save_pretrained(tmp)
        weights = Path(tmp) / "model.safetensors"
        card = model_card(
            model,
            repo_id,
            checkpoint_bytes=weights.stat().st_size,
            remote_code=include_code,
            tags=tags,
            **carried_card_fields(
                model,
                repo_id,
                recorded_digest(weights),
                token=token,
                results=results,
                training_command=training_command,
                dense_baseline=dense_baseline,
                base_model=base_model,
                notes=notes,
            ),
        )
        card.save(Path(tmp) / "README.md")
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=tmp,
            commit_message=commit_message or f"Upload CSG {model.config.architecture}",
            commit_description=commit_description,
            revision=revision,
            create_pr=create_pr,
            # code left from an earlier include_code push must not linger without its auto_map
            delete_patterns=None if include_code else ["*.py"],
        )


def carried_card_fields(model, repo_id: str, digest: str | None, token: str | bool | None = None, **given) -> dict:
    """`model_card` keyword arguments: those `given` (not None), completed from the model's earlier card (the
    card it was loaded with, else the one already in `repo_id`). Results and the training command describe
    weights, so they carry over only to the same weights; results measured on the weights a model was
    loaded with and then changed (fine-tuned) are kept apart, as `earlier_results`."""
    source = getattr(model, "name_or_path", None)
    previous = existing_card(source, token=token)
    own = previous is not None
    previous = previous if own else existing_card(repo_id, token=token)
    fields = card_fields(previous) if previous is not None else {}
    same_weights = digest is not None and fields.get("weights_digest") == digest
    out = {k: v for k, v in given.items() if v is not None}
    for key in ("dense_baseline", "base_model", "notes", *(("results", "training_command") if same_weights else ())):
        if key not in out and key in fields:
            out[key] = fields[key]
    if own and not same_weights and fields.get("results"):
        out["earlier_results"] = fields["results"]
    out["weights_digest"] = digest
    return out
