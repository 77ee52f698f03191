"""An existing folder as a Hub artifact: its files, byte for byte, through the one push path (`push_to_hub`).

Used to publish folders that are already Hub-ready (the zoo's `model_cards/<name>/`): nothing is re-rendered,
so what lands on the Hub is exactly what the checkout holds. Also the hashes a repo's files are compared with:
sha256 for LFS files, the git blob sha1 for regular ones (the two ids the Hub reports in a repo's tree).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..integrity import file_sha256

__all__ = ["FolderRepo", "file_sha256", "folder_files", "git_blob_sha1"]
CHUNK = 1 << 20


def folder_files(folder: Path, follow_symlinks: bool = False) -> dict[str, Path]:
    """Every regular file under `folder` (dot-folders such as `.eval_results/` included, `.git` excluded), by
    its repo path (POSIX separators), sorted; symlinks only with `follow_symlinks` (a Hub cache's snapshot)."""
    folder = Path(folder)
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if (
            ".git" in rel.parts
            or "__pycache__" in rel.parts
            or not path.is_file()
            or (path.is_symlink() and not follow_symlinks)
        ):
            continue
        files[rel.as_posix()] = path
    return files


def git_blob_sha1(path: Path) -> str:
    """The git object id of the file's bytes (`sha1(b"blob <size>\\0" + data)`), what the Hub reports for a
    regular (non-LFS) file."""
    hasher = hashlib.sha1(b"blob %d\0" % os.path.getsize(path))
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


@dataclass
class FolderRepo:
    """A folder pushed as it is: `push_to_hub(FolderRepo(path), "org/name")`."""

    folder: Path
    default_commit_message: str = "Upload folder"

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.folder} is not a folder")

    def files(self) -> dict[str, Path]:
        return folder_files(self.folder)

    def _save_pretrained(self, save_directory: Path, repo_id: str) -> None:
        """Hard-link (else copy) every file into `save_directory`; `repo_id` is not used: the bytes are the
        folder's own, card included."""
        for rel, src in self.files().items():
            dst = Path(save_directory) / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
