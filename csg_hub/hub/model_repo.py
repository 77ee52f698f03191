"""A CSG model's Hub repo: its folder (config, weights, image processor, optional remote code) and its card."""

from __future__ import annotations

import contextlib
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo, EvalResult

from ..atomic_write import atomic_folder
from ..integrity import recorded_digest
from .cards import card_fields, existing_card, model_card, save_card
from .hub_mixin import push_to_hub
from .remote_code import save_with_code


@dataclass
class CSGModelRepo:
    """What `push_model` uploads: the model's files and a card filled from `card` (`model_card` arguments:
    results, training_command, dense_baseline, base_model, notes), completed from earlier cards."""

    model: Any
    include_code: bool = False
    card: dict[str, Any] = field(default_factory=dict)
    tags: list[str] | None = None
    token: str | bool | None = None
    revision: str | None = None
    # what an earlier push may have left that this one must remove: code without its auto_map (unless this push
    # carries code), results files of earlier weights (results follow the card's model-index)
    delete_patterns: list[str] | None = None
    repo_is_new: bool | None = None  # set by push_to_hub: a new repo has nothing to look up
    remote_files: set[str] | None = None  # the repo's files, as listed while saving (None: not listed)

    @property
    def default_commit_message(self) -> str:
        return f"Upload CSG {self.model.config.architecture}"

    def _save_pretrained(self, save_directory: Path, repo_id: str) -> None:
        # one listing of the repo tells whether it has a card to carry numbers from and files to remove
        remote = set() if self.repo_is_new else _repo_files(repo_id, self.revision, self.token)
        self.remote_files = remote
        stale = [".eval_results/*.yaml", *([] if self.include_code else ["*.py"])]
        self.delete_patterns = [p for p in stale if remote is None or any(fnmatch.fnmatch(f, p) for f in remote)] or None
        card_repo = repo_id if remote is None or "README.md" in remote else None

        def complete(digest: str | None) -> dict[str, Any]:
            return carried_card_fields(self.model, card_repo, digest, token=self.token, **self.card)

        # a fresh temporary folder: nothing to swap
        save_with_card(self.model, save_directory, repo_id, include_code=self.include_code, tags=self.tags,
                       complete=complete, atomic=False)  # fmt: skip


def _repo_files(repo_id: str, revision: str | None, token: str | bool | None) -> set[str] | None:
    """The files of `repo_id` at `revision`, or None when that cannot be listed (a branch still to be created)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        return set(HfApi(token=token).list_repo_files(repo_id, revision=revision))
    except (RepositoryNotFoundError, RevisionNotFoundError):
        return None


def save_with_card(model, folder: str | Path, repo_id: str, *, include_code: bool = False, atomic: bool = True,
                   **card: Any) -> Path:  # fmt: skip
    """Save `model` into `folder` (with its modeling code when `include_code`) and write its card (`write_card`),
    all in one step (`atomic_folder`) unless `atomic=False`."""
    folder = Path(folder)
    with atomic_folder(folder) if atomic else contextlib.nullcontext(folder) as into:
        if include_code:
            save_with_code(model, into)
        else:
            model.save_pretrained(into)
        # durable as part of the swapped-in folder (or not needed: a push's temporary folder)
        write_card(model, into, repo_id, remote_code=include_code, durable=False, **card)
    return folder


def write_card(model, folder: str | Path, repo_id: str, *, complete=None, durable: bool = True, **card: Any) -> None:
    """Write the card of the model saved in `folder` (README.md and `.eval_results/*.yaml`; `model_card` arguments
    in `card`: results, training_command, dense_baseline, base_model, notes, tags), tied to the saved weights by their digest. `complete(digest)`, when
    given, returns the card's results and notes instead (`CSGModelRepo` completes them from earlier cards)."""
    folder = Path(folder)
    weights = folder / "model.safetensors"
    digest = recorded_digest(weights)
    fixed = {k: card.pop(k) for k in ("remote_code", "tags") if k in card}
    fields = complete(digest) if complete is not None else {**card, "weights_digest": digest}
    card = model_card(model, repo_id, checkpoint_bytes=weights.stat().st_size, **fixed, **fields)
    save_card(card, folder, durable=durable)  # README.md and .eval_results/*.yaml, from the same results


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
    given = {"results": results, "training_command": training_command, "dense_baseline": dense_baseline,
             "base_model": base_model, "notes": notes}  # fmt: skip
    artifact = CSGModelRepo(model, include_code=include_code, card=given, tags=tags, token=token, revision=revision)
    return push_to_hub(
        artifact,
        repo_id,
        commit_message=commit_message,
        commit_description=commit_description,
        private=private,
        token=token,
        revision=revision,
        create_pr=create_pr,
    )


def carried_card_fields(model, repo_id: str | None, digest: str | None, token: str | bool | None = None, **given) -> dict:
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
