"""csg_hub.integrity on its own: the safetensors header reader, the CRC-32 of the tensor data, and the
check of a huggingface_hub cache file against the hash its blob is named by."""

from __future__ import annotations

import hashlib
import json
import os
import re
import zlib
from pathlib import Path

import pytest
import safetensors.torch
import torch
from huggingface_hub import constants

import csg_hub
from csg_hub import integrity
from csg_hub.integrity import DIGEST_KEY


def _tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    # sizes that are and are not multiples of 64 bytes, and two dtypes: add_digest reorders them
    return {
        "a.weight": torch.randn(16, 8, generator=generator),
        "b.bias": torch.randn(3, generator=generator),
        "c.codes": torch.randn(5, 7, generator=generator).half(),
        "d.steps": torch.arange(10, dtype=torch.int64),
    }


def _save(path: Path, digest: bool = True) -> Path:
    safetensors.torch.save_file(_tensors(), path, metadata={"format": "pt"})
    if digest:
        integrity.add_digest(path)
    return path


@pytest.fixture
def good(tmp_path) -> Path:
    return _save(tmp_path / "model.safetensors")


@pytest.fixture
def hf_home(tmp_path, monkeypatch) -> Path:
    """The verified-markers of `verify_safetensors` go under this test's own HF_HOME."""
    home = tmp_path / "hf-home"
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    return home


def _raw(path: Path, header: dict | bytes | str, data: bytes = b"", length: int | None = None) -> Path:
    encoded = header if isinstance(header, bytes) else (header if isinstance(header, str) else json.dumps(header))
    encoded = encoded.encode() if isinstance(encoded, str) else encoded
    path.write_bytes((len(encoded) if length is None else length).to_bytes(8, "little") + encoded + data)
    return path


def _corrupt(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


# --- read_header -------------------------------------------------------------------------------------


def test_read_header_of_a_digested_file(good):
    offset, header = integrity.read_header(good)
    assert offset % 64 == 0  # the data start aligned
    assert offset == 8 + int.from_bytes(good.read_bytes()[:8], "little")
    assert set(header) == {"__metadata__", *_tensors()}
    assert header["__metadata__"]["format"] == "pt"  # metadata kept, digest added
    assert re.fullmatch(r"[0-9a-f]{8}", header["__metadata__"][DIGEST_KEY])
    data_size = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    assert offset + data_size == good.stat().st_size
    # the tensors whose size is a multiple of 64 bytes come first, so they load aligned
    assert header["a.weight"]["data_offsets"][0] == 0


def test_add_digest_keeps_the_tensors_and_returns_the_crc(tmp_path):
    path = _save(tmp_path / "m.safetensors", digest=False)
    crc = integrity.add_digest(path)
    offset, _ = integrity.read_header(path)
    assert crc == f"{zlib.crc32(path.read_bytes()[offset:]):08x}"
    assert integrity.recorded_digest(path) == crc
    loaded = safetensors.torch.load_file(path)
    assert loaded.keys() == _tensors().keys()
    for name, tensor in _tensors().items():
        assert torch.equal(loaded[name], tensor), name


@pytest.mark.parametrize(
    ("header", "data", "length", "match"),
    [
        pytest.param({"__metadata__": {}}, b"", 10**6, "truncated or corrupt", id="length-beyond-the-file"),
        pytest.param(b"", b"", 1, "truncated or corrupt", id="length-below-2"),
        pytest.param(b"not json at all!", b"", None, "unreadable safetensors header", id="not-json"),
        pytest.param(b"\x80\x81{}", b"", None, "unreadable safetensors header", id="not-utf8"),
        pytest.param("[1, 2, 3]", b"", None, "unreadable safetensors header", id="json-but-no-object"),
        pytest.param({"t": {"dtype": "F32", "shape": [2]}}, b"", None, "malformed", id="no-data-offsets"),
        pytest.param(
            {"t": {"dtype": "F32", "shape": [25], "data_offsets": [0, 100]}},
            b"\0" * 10,
            None,
            "holds 10 bytes of tensor data but its header describes 100",
            id="describes-more-bytes-than-present",
        ),
        pytest.param(
            {"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
            b"\0" * 12,
            None,
            "holds 12 bytes of tensor data but its header describes 4",
            id="trailing-bytes",
        ),
    ],
)
def test_read_header_refuses_what_is_not_a_safetensors_file(tmp_path, header, data, length, match):
    path = _raw(tmp_path / "bad.safetensors", header, data, length)
    with pytest.raises(csg_hub.CheckpointError, match=match) as err:
        integrity.read_header(path)
    assert str(path) in str(err.value)
    with pytest.raises(csg_hub.CheckpointError):
        integrity.verify_safetensors(path)


def test_files_shorter_than_a_header_length(tmp_path):
    for content in (b"", b"\x10\0\0"):
        path = tmp_path / "short.safetensors"
        path.write_bytes(content)
        with pytest.raises(csg_hub.CheckpointError, match="truncated or corrupt"):
            integrity.read_header(path)


# --- the recorded CRC-32 -------------------------------------------------------------------------------


def test_a_good_file_verifies(good, hf_home):
    header = integrity.verify_safetensors(good)
    assert header == integrity.read_header(good)[1]
    assert not hf_home.exists()  # not a cache file: nothing remembered


def test_a_flipped_byte_in_the_tensor_data_fails_the_crc(good, hf_home):
    offset, _ = integrity.read_header(good)
    _corrupt(good, offset + 5)
    integrity.read_header(good)  # still a well-formed file: only the CRC can tell
    with pytest.raises(csg_hub.CheckpointError, match=rf"(?s){re.escape(str(good))}.*CRC-32"):
        integrity.verify_safetensors(good, what="test checkpoint")
    with pytest.raises(csg_hub.CheckpointError, match="test checkpoint"):
        integrity.verify_safetensors(good, what="test checkpoint")


def test_a_flipped_byte_in_the_last_tensor_fails_the_crc(good):
    _corrupt(good, good.stat().st_size - 1)
    with pytest.raises(csg_hub.CheckpointError, match="CRC-32"):
        integrity.verify_safetensors(good)


@pytest.mark.parametrize("cut", [1, 64, "half-header"])
def test_a_truncated_file_is_refused(good, cut):
    content = good.read_bytes()
    keep = len(content) - cut if isinstance(cut, int) else 8 + int.from_bytes(content[:8], "little") // 2
    good.write_bytes(content[:keep])
    with pytest.raises(csg_hub.CheckpointError, match=rf"{re.escape(str(good))}.*truncated or corrupt"):
        integrity.verify_safetensors(good)


def test_a_file_without_a_recorded_digest_passes_unverified(tmp_path, hf_home):
    """Today's documented behaviour: files saved by other tools (or older csg-hub) carry no CRC and load."""
    path = _save(tmp_path / "plain.safetensors", digest=False)
    assert integrity.recorded_digest(path) is None
    offset, _ = integrity.read_header(path)
    _corrupt(path, offset)  # undetectable without a digest
    assert DIGEST_KEY not in integrity.verify_safetensors(path)["__metadata__"]


def test_recorded_digest_is_the_crc_of_the_tensor_data(good):
    offset, header = integrity.read_header(good)
    assert integrity.recorded_digest(good) == header["__metadata__"][DIGEST_KEY]
    assert integrity.recorded_digest(good) == f"{zlib.crc32(good.read_bytes()[offset:]):08x}"


def test_file_sha256(good, tmp_path):
    assert integrity.file_sha256(good) == hashlib.sha256(good.read_bytes()).hexdigest()
    big = tmp_path / "big.bin"  # more than one read chunk
    big.write_bytes(bytes(range(256)) * 9000)
    assert integrity.file_sha256(big) == hashlib.sha256(big.read_bytes()).hexdigest()


# --- files of the huggingface_hub cache ------------------------------------------------------------------


def _cached(root: Path, source: Path, blob_name: str | None = None) -> Path:
    """`source` as the huggingface_hub cache holds it: a blob named by its hash, linked from a snapshot."""
    blobs = root / "models--org--m" / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    blob = blobs / (blob_name or hashlib.sha256(source.read_bytes()).hexdigest())
    blob.write_bytes(source.read_bytes())
    link = root / "models--org--m" / "snapshots" / ("0" * 40) / "model.safetensors"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(Path("../../blobs") / blob.name)
    return link


def test_hub_published_hash_from_the_blob_name(good, tmp_path):
    link = _cached(tmp_path / "cache", good)
    assert integrity.hub_published_hash(link) == ("sha256", hashlib.sha256(good.read_bytes()).hexdigest())
    assert integrity.hub_published_hash(good) is None  # a regular file
    sha1 = "a" * 40
    git_link = tmp_path / "git" / "snapshots" / "config.json"
    (tmp_path / "git" / "blobs").mkdir(parents=True)
    (tmp_path / "git" / "blobs" / sha1).write_text("{}")
    git_link.parent.mkdir(parents=True)
    git_link.symlink_to(tmp_path / "git" / "blobs" / sha1)
    assert integrity.hub_published_hash(git_link) == ("git-sha1", sha1)
    elsewhere = tmp_path / "link-to-a-plain-file"
    elsewhere.symlink_to(good)
    assert integrity.hub_published_hash(elsewhere) is None  # a link, but not into a blobs folder


def test_a_cached_file_is_hashed_once_and_remembered(good, tmp_path, hf_home):
    link = _cached(tmp_path / "cache", good)
    integrity.verify_safetensors(link)
    published = hashlib.sha256(good.read_bytes()).hexdigest()
    marker = hf_home / "csg-hub" / "verified" / published
    assert marker.is_file()
    integrity.verify_safetensors(link)  # the marker matches: no full hash
    assert marker.is_file()


def test_a_cached_file_that_differs_from_its_blob_name_is_refused(good, tmp_path, hf_home):
    wrong = hashlib.sha256(b"what the Hub published").hexdigest()
    link = _cached(tmp_path / "cache", good, blob_name=wrong)
    with pytest.raises(csg_hub.CheckpointError, match=rf"(?s){re.escape(str(link))}.*sha256.*{wrong}"):
        integrity.verify_safetensors(link)
    assert not (hf_home / "csg-hub" / "verified" / wrong).exists()  # never remembered as verified


def test_a_cached_file_changed_after_its_verification_is_hashed_again(good, tmp_path, hf_home):
    link = _cached(tmp_path / "cache", good)
    integrity.verify_safetensors(link)
    offset, _ = integrity.read_header(link)
    blob = link.resolve()
    before = blob.stat().st_mtime_ns
    _corrupt(blob, offset + 1)  # same size; a new modification time, set so even a coarse clock shows it
    os.utime(blob, ns=(before + 10**9, before + 10**9))
    with pytest.raises(csg_hub.CheckpointError, match="does not match the sha256 the Hub published"):
        integrity.verify_safetensors(link)


# --- write_safetensors: the file written once, CRC included ------------------------------------------------


def _write_safetensors():
    return integrity.write_safetensors


def _awkward_tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        **_tensors(),
        "e.bf16": torch.randn(3, 5, generator=generator).bfloat16(),
        "f.transposed": torch.randn(4, 6, generator=generator).T,  # not contiguous
        "g.mask": torch.tensor([True, False, True]),
        "h.scalar": torch.tensor(2.5),
        "i.empty": torch.zeros(0, 3),
        "j.int8": torch.arange(-5, 6, dtype=torch.int8),
    }


def test_write_safetensors_gives_a_file_that_verifies_and_loads(tmp_path, hf_home):
    write = _write_safetensors()
    path = tmp_path / "written.safetensors"
    tensors = _awkward_tensors()
    crc = write(path, tensors, metadata={"note": "kept"})
    offset, header = integrity.read_header(path)
    assert offset % 64 == 0
    assert header["__metadata__"][DIGEST_KEY] == crc == integrity.recorded_digest(path)
    assert header["__metadata__"]["note"] == "kept"
    data_size = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    assert path.stat().st_size == offset + data_size  # 8 + header + data, nothing else
    assert crc == f"{zlib.crc32(path.read_bytes()[offset:]):08x}"
    integrity.verify_safetensors(path)
    loaded = safetensors.torch.load_file(path)
    assert loaded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name
    specs = {name: (t.dtype, tuple(t.shape)) for name, t in tensors.items()}  # the size promised before writing
    assert integrity.safetensors_size(specs, {"note": "kept"}) == path.stat().st_size


def test_a_flipped_byte_in_a_written_file_fails_the_crc(tmp_path):
    write = _write_safetensors()
    path = tmp_path / "once.safetensors"
    write(path, _tensors())
    _corrupt(path, integrity.read_header(path)[0] + 3)
    with pytest.raises(csg_hub.CheckpointError, match=rf"{re.escape(str(path))}.*CRC-32"):
        integrity.verify_safetensors(path)
