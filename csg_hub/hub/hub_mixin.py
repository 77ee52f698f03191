"""The one way csg-hub pushes anything to the Hub (huggingface_hub's `ModelHubMixin` pattern).

Each artifact (a CSG model, a dense timm export, a weight-VAE decoder, a model's latents) knows how to write
its repo's files, card included, into a folder (`_save_pretrained`); `push_to_hub` creates the repo, saves the
artifact into a temporary folder and uploads that folder as one commit.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Protocol

from huggingface_hub import CommitInfo, CommitOperationAdd, CommitOperationDelete, HfApi, RepoUrl
from huggingface_hub.errors import HfHubHTTPError, RevisionNotFoundError
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
    repo_id, is_new = _create_repo(api, repo_id, private)
    if hasattr(artifact, "repo_is_new"):  # an artifact that looks at the repo's files can skip that for a new one
        artifact.repo_is_new = is_new
    with SoftTemporaryDirectory() as tmp:
        artifact._save_pretrained(Path(tmp), repo_id)
        if delete_patterns is None:  # what the artifact found to remove while saving, if it looks
            delete_patterns = getattr(artifact, "delete_patterns", None)
        remote = set() if is_new else getattr(artifact, "remote_files", None)
        operations = _operations(Path(tmp), api, repo_id, revision, delete_patterns, remote)
        # create_commit, not upload_folder: the same one commit, without upload_folder's second YAML check of the
        # card and second listing of the repo (each a round trip to the Hub)
        return api.create_commit(
            repo_id=repo_id,
            operations=operations,
            commit_message=commit_message or artifact.default_commit_message,
            commit_description=commit_description,
            revision=revision,
            create_pr=create_pr,
        )


def _operations(folder: Path, api: HfApi, repo_id: str, revision: str | None, delete_patterns: list[str] | None,
                remote: set[str] | None) -> list:  # fmt: skip
    """One addition per file of `folder`, and a deletion for each file of the repo (`remote`, listed when None) that
    matches `delete_patterns` and is not added again (`.gitattributes` stays, as upload_folder keeps it)."""
    added = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
    operations: list = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(p)) for name, p in added.items()]
    if delete_patterns:
        if remote is None:
            try:
                remote = set(api.list_repo_files(repo_id, revision=revision))
            except RevisionNotFoundError:  # a branch the commit creates: nothing on it yet
                remote = set()
        stale = sorted(f for f in remote - added.keys() if f != ".gitattributes"
                       and any(fnmatch.fnmatch(f, pattern) for pattern in delete_patterns))  # fmt: skip
        operations += [CommitOperationDelete(path_in_repo=f) for f in stale]
    return operations


def _create_repo(api: HfApi, repo_id: str, private: bool | None) -> tuple[str, bool]:
    """`api.create_repo(repo_id, exist_ok=True)`, also telling whether the repo is new, in the same one request."""
    try:
        return api.create_repo(repo_id, private=private).repo_id, True
    except HfHubHTTPError as err:
        status = getattr(err.response, "status_code", None)
        if status == 409:
            try:  # the Hub's answer names the existing repo, as create_repo(exist_ok=True) reads it
                return RepoUrl(err.response.json()["url"], endpoint=api.endpoint).repo_id, False
            except (ValueError, KeyError, TypeError):
                pass
        elif status not in (401, 402, 403):  # no right to create: the repo may exist, which exist_ok checks
            raise
    return api.create_repo(repo_id, private=private, exist_ok=True).repo_id, False
