"""The one way csg-hub pushes anything to the Hub (huggingface_hub's `ModelHubMixin` pattern).

Each artifact (a CSG model, a dense timm export, a weight-VAE decoder, a model's latents) knows how to write
its repo's files, card included, into a folder (`_save_pretrained`); `push_to_hub` creates the repo, saves the
artifact into a temporary folder and uploads that folder as one commit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from huggingface_hub import CommitInfo, HfApi
from huggingface_hub.utils import SoftTemporaryDirectory


class HubArtifact(Protocol):
    """Anything `push_to_hub` can upload."""

    default_commit_message: str

    def _save_pretrained(self, save_directory: Path, repo_id: str) -> None:
        """Write every file of the repo (card included) into `save_directory`; `repo_id` is what the card names."""


def push_to_hub(
    artifact: HubArtifact,
    repo_id: str,
    *,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    delete_patterns: list[str] | None = None,
) -> CommitInfo:
    """Create `repo_id` if needed and upload what `artifact` saves as one commit; returns the commit.

    `delete_patterns` removes files of earlier commits that the artifact no longer writes (default: the artifact's
    own `delete_patterns`, when it has them)."""
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with SoftTemporaryDirectory() as tmp:
        artifact._save_pretrained(Path(tmp), repo_id)
        if delete_patterns is None:  # what the artifact found to remove while saving, if it looks
            delete_patterns = getattr(artifact, "delete_patterns", None)
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=tmp,
            commit_message=commit_message or artifact.default_commit_message,
            commit_description=commit_description,
            revision=revision,
            create_pr=create_pr,
            delete_patterns=delete_patterns,
        )
