"""Pushing CSG models to the Hub with their card."""

from __future__ import annotations

import tempfile
from pathlib import Path

from huggingface_hub import CommitInfo, EvalResult, HfApi

from .cards import model_card
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
    tags: list[str] | None = None,
) -> CommitInfo:
    """Upload `config.json`, `model.safetensors` and a model card (plus the modeling code when
    `include_code=True`) to `repo_id`, creating the repo if needed. Returns the commit."""
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as tmp:
        if include_code:
            save_with_code(model, tmp)
        else:
            model.save_pretrained(tmp)
        card = model_card(
            model,
            repo_id,
            results=results,
            checkpoint_bytes=(Path(tmp) / "model.safetensors").stat().st_size,
            training_command=training_command,
            dense_baseline=dense_baseline,
            remote_code=include_code,
            tags=tags,
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
