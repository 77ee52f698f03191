"""Integrity of safetensors checkpoints.

- Every file csg-hub saves records a CRC-32 of its tensor data in the safetensors metadata
  (`csg_hub.data_crc32`), and every load recomputes it (3.7 GB/s here). It catches corruption (flipped
  bytes, a bad copy, a truncated download), not tampering: whoever rewrites the data can rewrite it too.
- A file from the huggingface_hub cache is a blob named by the hash the Hub published for it (sha256 for
  LFS files, the git blob sha1 otherwise). It is hashed in full when it enters the cache (its first
  load) and again whenever its size or modification time changes; the result is remembered under
  `$HF_HOME/csg-hub/verified/`. This catches a cached file that differs from what the Hub published, by
  accident or on purpose; it trusts the Hub connection (TLS) and the cache's file times.
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
import re
import zlib
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

DIGEST_KEY = "csg_hub.data_crc32"
_MAX_HEADER = 100_000_000  # safetensors' own limit
_CHUNK = 1 << 20
_ALIGN = 64


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


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a whole file."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _read_hashes(path: Path, data_start: int, whole: str | None) -> tuple[str, str | None]:
    """CRC-32 of the tensor data and, when `whole` names an algorithm, the whole file's hash, in one read
    of the memory-mapped file (no copies)."""
    full = None
    if whole == "sha256":
        full = hashlib.sha256()
    elif whole == "git-sha1":
        full = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        try:
            crc = zlib.crc32(view[data_start:])
            if full is not None:
                full.update(view)
        finally:
            view.release()
    return f"{crc:08x}", None if full is None else full.hexdigest()


# safetensors' dtype names, by torch dtype
_DTYPE_NAMES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}  # fmt: skip


def _layout(specs: dict[str, tuple[torch.dtype, tuple[int, ...]]], metadata: dict[str, str]) -> tuple[bytes, list[str]]:
    """The padded header of a safetensors file holding tensors of these `(dtype, shape)`s, and the order their
    data follow in. Tensors whose size is a multiple of 64 bytes come first, so that (with the data starting
    on a 64-byte boundary) nearly every tensor loads aligned and needs no copy (`strict_loading.realign`)."""
    sizes = {name: math.prod(shape) * dtype.itemsize for name, (dtype, shape) in specs.items()}
    order = sorted(specs, key=lambda name: (sizes[name] % _ALIGN != 0, name))
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name in order:
        dtype, shape = specs[name]
        if dtype not in _DTYPE_NAMES:
            raise ValueError(f"Cannot store tensor {name!r} of dtype {dtype} in a safetensors file.")
        header[name] = {"dtype": _DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + sizes[name]]}
        offset += sizes[name]
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return encoded + b" " * (-(8 + len(encoded)) % _ALIGN), order


def _metadata(metadata: dict[str, str] | None, digest: str) -> dict[str, str]:
    return {"format": "pt", **(metadata or {}), DIGEST_KEY: digest}


def safetensors_size(specs: dict[str, tuple[torch.dtype, tuple[int, ...]]], metadata: dict[str, str] | None = None) -> int:
    """Bytes of the file `write_safetensors` writes for tensors of these `(dtype, shape)`s, computed without
    writing (or holding) the data."""
    header, _ = _layout(specs, _metadata(metadata, "0" * 8))  # a CRC-32 is always 8 hex digits
    return 8 + len(header) + sum(math.prod(shape) * dtype.itemsize for dtype, shape in specs.values())


def _data_bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def write_safetensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> str:
    """Write `tensors` to the safetensors file `path` in one pass, with the CRC-32 of the tensor data recorded in
    its metadata (computed before writing, so the file is never rewritten). Returns the CRC."""
    specs = {name: (t.dtype, tuple(t.shape)) for name, t in tensors.items()}
    _, order = _layout(specs, {})
    pieces = [_data_bytes(tensors[name]) for name in order]
    crc = 0
    for piece in pieces:
        crc = zlib.crc32(piece, crc)
    digest = f"{crc:08x}"
    header, _ = _layout(specs, _metadata(metadata, digest))
    # a new file renamed over the old one: tensors loaded from the old file may still be memory-mapped from it
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(len(header).to_bytes(8, "little"))
            f.write(header)
            for piece in pieces:
                f.write(piece)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def add_digest(path: str | os.PathLike) -> str:
    """Rewrite a safetensors file written by another tool in csg-hub's layout, with the CRC-32 of its tensor
    data in its metadata; returns the CRC."""
    from safetensors.torch import load_file

    path = Path(path)
    metadata = dict(read_header(path)[1].get("__metadata__") or {})
    metadata.pop(DIGEST_KEY, None)
    return write_safetensors(path, load_file(path), metadata)


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


def _verified_marker(blob_hash: str) -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "csg-hub" / "verified" / blob_hash


def _stamp(path: Path) -> str:
    stat = path.resolve().stat()
    return f"{stat.st_size} {stat.st_mtime_ns}"


def verify_safetensors(path: str | os.PathLike, what: str = "checkpoint") -> dict[str, Any]:
    """Check a safetensors file's recorded digest and, for a Hub cache file, the hash the Hub published.

    Returns the header; raises `CheckpointError` naming the file on any mismatch. A file without a recorded
    digest (saved by another tool or an older csg-hub) passes the first check unverified.
    """
    path = Path(path)
    start, header = read_header(path)
    published = hub_published_hash(path)
    marker = _verified_marker(published[1]) if published else None
    if marker is not None and marker.is_file() and marker.read_text() == _stamp(path):
        published = None  # hashed in full since it last changed
    recorded = (header.get("__metadata__") or {}).get(DIGEST_KEY)
    if published is None and recorded is None:
        return header
    data_digest, whole = _read_hashes(path, start, published[0] if published else None)
    if published is not None:
        if whole != published[1]:
            raise CheckpointError(
                f"The cached {what} {path} does not match the {published[0]} the Hub published for it "
                f"({published[1]}, file has {whole}): it changed after download. Delete it from the cache "
                "(`hf cache delete`, or remove the blob) and download it again."
            )
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(_stamp(path))
        except OSError:
            pass  # a read-only cache: verify in full every time
    if recorded is not None and data_digest != recorded:
        raise CheckpointError(
            f"The tensor data of the {what} {path} do not match the CRC-32 recorded when it was saved "
            f"({recorded}, data has {data_digest}): the file is corrupt. Save or download it again."
        )
    return header
