"""Integrity of safetensors checkpoints.

Two checks, one read of the file:

- every file csg-hub saves records the sha256 of its tensor data in the safetensors metadata
  (`csg_hub.sha256`); loading recomputes it. This catches corruption (flipped bytes, a bad copy), not
  tampering: whoever rewrites the data can rewrite the digest too;
- a file from the Hub cache is a blob named by the hash the Hub published for it (sha256 for LFS files,
  the git blob sha1 otherwise); loading recomputes it over the whole file. This catches a cached file
  that was modified after download, by accident or on purpose. It trusts the Hub connection (TLS).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from .errors import CheckpointError

DIGEST_KEY = "csg_hub.sha256"
_MAX_HEADER = 100_000_000  # safetensors' own limit
_CHUNK = 1 << 20


def read_header(path: str | os.PathLike) -> tuple[int, dict[str, Any]]:
    """`(offset of the tensor data, header)` of a safetensors file; `CheckpointError` if it is not one."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(8)
        length = int.from_bytes(raw, "little") if len(raw) == 8 else -1
        if length < 2 or length > min(_MAX_HEADER, size - 8):
            raise CheckpointError(f"{path} is not a readable safetensors file: it is truncated or corrupt.")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{path} has an unreadable safetensors header: it is truncated or corrupt.") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has an unreadable safetensors header: it is truncated or corrupt.")
    try:
        needed = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError) as err:
        raise CheckpointError(f"{path} has a malformed safetensors header: it is truncated or corrupt.") from err
    if needed != size - 8 - length:
        raise CheckpointError(
            f"{path} holds {size - 8 - length:,} bytes of tensor data but its header describes {needed:,}: "
            "it is truncated or corrupt."
        )
    return 8 + length, header


def _hashes(path: Path, data_start: int, whole: str | None) -> tuple[str, str | None]:
    """sha256 of the tensor data and, when `whole` names an algorithm, of the whole file, in one read."""
    data = hashlib.sha256()
    full = None
    if whole == "sha256":
        full = hashlib.sha256()
    elif whole == "git-sha1":
        full = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as f:
        head = f.read(data_start)
        if full is not None:
            full.update(head)
        while chunk := f.read(_CHUNK):
            data.update(chunk)
            if full is not None:
                full.update(chunk)
    return data.hexdigest(), None if full is None else full.hexdigest()


def add_digest(path: str | os.PathLike) -> str:
    """Rewrite safetensors file `path` with the sha256 of its tensor data in its metadata; returns it."""
    path = Path(path)
    start, header = read_header(path)
    data = path.read_bytes()[start:]
    digest = hashlib.sha256(data).hexdigest()
    header.setdefault("__metadata__", {})[DIGEST_KEY] = digest
    encoded = json.dumps(header, separators=(",", ":")).encode()
    # safetensors needs the data 8-byte aligned; 64 puts it on a cache line, so that tensors at aligned
    # offsets load aligned and need no copy (modeling._realign)
    encoded += b" " * (-(8 + len(encoded)) % 64)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(len(encoded).to_bytes(8, "little"))
        f.write(encoded)
        f.write(data)
    os.replace(tmp, path)
    return digest


def recorded_digest(path: str | os.PathLike) -> str | None:
    """The tensor-data digest recorded in a safetensors file's metadata, if any."""
    return (read_header(path)[1].get("__metadata__") or {}).get(DIGEST_KEY)


def hub_published_hash(path: str | os.PathLike) -> tuple[str, str] | None:
    """`(algorithm, hash)` the Hub published for a file of the huggingface_hub cache, from the name of the
    blob its snapshot entry links to; None for files outside the cache."""
    path = Path(path)
    if not path.is_symlink():
        return None
    blob = path.resolve()
    if blob.parent.name != "blobs":
        return None
    if re.fullmatch(r"[0-9a-f]{64}", blob.name):
        return "sha256", blob.name
    if re.fullmatch(r"[0-9a-f]{40}", blob.name):
        return "git-sha1", blob.name
    return None


def verify_safetensors(path: str | os.PathLike, what: str = "checkpoint") -> dict[str, Any]:
    """Check a safetensors file's recorded digest and, for a Hub cache file, the hash the Hub published.

    Returns the header; raises `CheckpointError` naming the file on any mismatch. A file without a recorded
    digest (saved by another tool or an older csg-hub) passes the first check unverified.
    """
    path = Path(path)
    start, header = read_header(path)
    published = hub_published_hash(path)
    recorded = (header.get("__metadata__") or {}).get(DIGEST_KEY)
    if published is None and recorded is None:
        return header
    data_digest, whole = _hashes(path, start, published[0] if published else None)
    if published is not None and whole != published[1]:
        raise CheckpointError(
            f"The cached {what} {path} does not match the {published[0]} the Hub published for it "
            f"({published[1]}, file has {whole}): it changed after download. Delete it from the cache "
            "(`hf cache delete`, or remove the blob) and download it again."
        )
    if recorded is not None and data_digest != recorded:
        raise CheckpointError(
            f"The tensor data of the {what} {path} do not match the digest recorded when it was saved "
            f"(sha256 {recorded}, data has {data_digest}): the file is corrupt. Save or download it again."
        )
    return header
