"""A small, file-backed HTTP server that speaks the Hugging Face Hub protocol, for tests and offline demos.

It answers the requests that unmodified clients send (huggingface_hub, transformers ``from_pretrained`` /
``push_to_hub``, timm ``hf-hub:`` models, ``datasets.load_dataset`` / ``Dataset.push_to_hub``) when they are
pointed at it with ``HF_ENDPOINT=http://127.0.0.1:PORT`` and ``HF_HUB_DISABLE_XET=1``.

This is an offline/test stand-in, NOT a Hub replacement: there are no accounts, no authentication or permission
checks (any ``Authorization`` header is accepted and ignored), no Xet storage, no pull requests, no gating, no
search index and no web pages. Repositories live under ``root``: content-addressed blobs (sha256) plus one JSON
file per commit and a refs file per repository, so a new server on the same root serves the same data.
Collections (create, get, list, delete, add and remove items: what ``HfApi``'s collection calls need) are one
JSON file each under ``root/collections/``.

The tests trust it, so it is strict where a lax server would hide client bugs or let one connection disturb
another: ambiguous body framing (``Content-Length`` with ``Transfer-Encoding``, differing lengths, unknown codings)
is answered 400/501 and the connection closed; a header block must arrive within ``header_timeout``; past
``max_connections`` new connections get a 503 with ``Retry-After``; repo paths with ``.git`` components,
backslashes, control characters, ``.``/``..`` or empty segments are refused.

Usage::

    with HubServer(Path("/tmp/hub")) as server:
        os.environ["HF_ENDPOINT"] = server.url  # before importing huggingface_hub

    python -m csg_hub.testing.hub_server --root /tmp/hub --port 8000
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import logging
import mimetypes
import os
import re
import selectors
import shutil
import socket
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

__all__ = ["HubServer", "main"]

logger = logging.getLogger(__name__)

REPO_TYPES = ("model", "dataset", "space")
DEFAULT_BRANCH = "main"
DEFAULT_USER = "user"  # owner of repos created without a namespace, and what /api/whoami-v2 reports
LFS_THRESHOLD = 10 * 1024 * 1024
LFS_EXTENSIONS = (
    ".7z",
    ".arrow",
    ".bin",
    ".bz2",
    ".ckpt",
    ".ftz",
    ".gz",
    ".h5",
    ".joblib",
    ".jpeg",
    ".jpg",
    ".mlmodel",
    ".model",
    ".msgpack",
    ".npy",
    ".npz",
    ".onnx",
    ".ot",
    ".parquet",
    ".pb",
    ".pickle",
    ".pkl",
    ".png",
    ".pt",
    ".pth",
    ".rar",
    ".safetensors",
    ".tar",
    ".tflite",
    ".tgz",
    ".wasm",
    ".webp",
    ".xz",
    ".zip",
    ".zst",
    ".mp3",
    ".wav",
    ".flac",
    ".ogg",
    ".mp4",
    ".gif",
    ".tiff",
    ".bmp",
    ".avro",
    ".tfrecord",
    ".db",
    ".feather",
    ".lance",
)
GITATTRIBUTES = "".join(f"*{ext} filter=lfs diff=lfs merge=lfs -text\n" for ext in LFS_EXTENSIONS) + (
    "*tfevents* filter=lfs diff=lfs merge=lfs -text\n"
)
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
YAML_BLOCK = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")
# \Z, not $: `$` also matches before a trailing newline ("name\n" would pass)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,95}\Z")
SHA1_RE = re.compile(r"[0-9a-f]{40}\Z")
SHA256_RE = re.compile(r"[0-9a-f]{64}\Z")
MAX_BODY_BYTES = 8 * 1024**3  # LFS uploads; every other request body is JSON or NDJSON
MAX_JSON_BYTES = 256 * 1024**2  # JSON and NDJSON commit bodies, read into memory
IDLE_TIMEOUT = 30.0
HEADER_TIMEOUT = 10.0  # from a request's first byte to the end of its header block, however the bytes trickle in
MAX_CONNECTIONS = 256  # connections served at once; past it, new ones get an immediate 503
LISTEN_BACKLOG = 1024  # connections the kernel queues before accept: a burst is answered, not reset or dropped
REJECT_LINGER = 2.0  # seconds a refused (503) connection is read and discarded before it is closed
CHUNK = 1 << 20


# --------------------------------------------------------------------------------------------------------------------
# Errors and small helpers


class InvalidCardError(ValueError):
    """README.md metadata that is not a YAML mapping."""


class HubError(Exception):
    """An error answered as JSON ``{"error": ...}``; ``code`` becomes ``X-Error-Code`` (how clients pick the type)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.extra = extra or {}  # more JSON fields next to "error"


def _repo_not_found(repo_id: str) -> HubError:
    return HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")


def _now() -> str:
    """The timestamp format huggingface_hub's ``parse_datetime`` expects."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def git_blob_oid(data: bytes) -> str:
    """The sha1 git gives a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return LFS_POINTER.format(oid=sha256, size=size).encode()


def _front_matter(text: str) -> str | None:
    """The YAML block at the top of a model/dataset card, if any."""
    match = YAML_BLOCK.search(text)
    return match.group(2) if match else None


def _parse_card_yaml(text: str) -> dict[str, Any]:
    """Parse a README's YAML front matter; raise ValueError with a readable message when it is invalid."""
    block = _front_matter(text)
    if block is None:
        return {}
    try:
        import yaml
    except ImportError:  # PyYAML is optional: without it, accept any metadata
        return {}
    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError as e:
        raise InvalidCardError(f"Invalid YAML in README.md metadata: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidCardError(f"README.md metadata must be a YAML mapping, got {type(data).__name__}")
    return data


def _jsonable(value: Any) -> Any:
    """YAML dates etc. as plain JSON values."""
    return json.loads(json.dumps(value, default=str))


def _is_binary_ish(path: str, size: int, sample: bytes) -> bool:
    """What the real Hub stores with LFS: big files, binary extensions, or content that sniffs as binary."""
    return size > LFS_THRESHOLD or path.lower().endswith(tuple(LFS_EXTENSIONS)) or b"\0" in sample


def _path_problem(path: str) -> str | None:
    """Why ``path`` cannot name a file in a repository, or None when it can."""
    if not path:
        return "the path is empty"
    if "\\" in path:
        return "backslashes are not allowed (folders are separated by '/')"
    if any(unicodedata.category(c) == "Cc" for c in path):
        return "control characters (NUL, newlines, ...) are not allowed"
    if path.startswith("/"):
        return "absolute paths are not allowed"
    for segment in path.split("/"):
        if segment == "":
            return "empty segments ('//' or a trailing '/') are not allowed"
        if segment in (".", ".."):
            return f"'{segment}' segments are not allowed"
        # git refuses `.git` whatever its case; Windows and macOS checkouts also read `.git.` / `.git ` as `.git`
        if segment.lower().rstrip(". ") == ".git":
            return f"'.git' components are not allowed ({segment!r})"
    return None


def _check_path(path: str) -> str:
    """The one check of every client-supplied repo path (commits, deletes, copies, preupload, tree, resolve).

    Refuses paths that could escape the repository or reach into git's own files on a checkout: empty, absolute,
    with ``.``/``..``/empty segments, a ``.git`` component (any case), a backslash, or a control character.
    """
    problem = _path_problem(path)
    if problem is not None:
        raise HubError(400, f"Invalid path in repository {path!r}: {problem}")
    return path


def _repo_url_prefix(repo_type: str) -> str:
    return "" if repo_type == "model" else f"{repo_type}s/"


# --------------------------------------------------------------------------------------------------------------------
# Storage


class _Repo:
    """One repository on disk: ``meta.json``, ``refs.json`` and ``commits/<oid>.json``."""

    def __init__(self, store: _Store, repo_type: str, repo_id: str):
        self.store = store
        self.type = repo_type
        self.id = repo_id
        self.dir = store.root / "repos" / f"{repo_type}s" / repo_id

    def exists(self) -> bool:
        return (self.dir / "refs.json").is_file()

    @property
    def namespace(self) -> str:
        return self.id.split("/")[0] if "/" in self.id else DEFAULT_USER

    def meta(self) -> dict[str, Any]:
        return json.loads((self.dir / "meta.json").read_text())

    def set_meta(self, **values: Any) -> None:
        self.store.write_json(self.dir / "meta.json", {**self.meta(), **values})

    def refs(self) -> dict[str, dict[str, str]]:
        """``{"branches": {name: oid}, "tags": {name: oid}}``."""
        return json.loads((self.dir / "refs.json").read_text())

    def set_ref(self, kind: str, name: str, oid: str | None) -> None:
        refs = self.refs()
        if oid is None:
            refs[kind].pop(name, None)
        else:
            refs[kind][name] = oid
        self.store.write_json(self.dir / "refs.json", refs)

    def commit(self, oid: str) -> dict[str, Any] | None:
        key = f"{self.type}/{self.id}/{oid}"
        cached = self.store.commit_cache.get(key)
        if cached is None:
            path = self.dir / "commits" / f"{oid}.json"
            if not SHA1_RE.match(oid) or not path.is_file():
                return None
            cached = self.store.commit_cache[key] = json.loads(path.read_text())
        return cached

    def resolve(self, revision: str) -> dict[str, Any] | None:
        """A branch, a tag, or a full commit sha -> the commit."""
        # a full commit sha names that commit, whatever refs say (git and the Hub resolve it first; refs
        # named like a sha are refused when created)
        if SHA1_RE.match(revision) and self.commit(revision) is not None:
            return self.commit(revision)
        revision = revision.removeprefix("refs/heads/").removeprefix("refs/tags/")
        refs = self.refs()
        oid = refs["branches"].get(revision) or refs["tags"].get(revision)
        return None if oid is None else self.commit(oid)

    def history(self, commit: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """This commit and its ancestors, newest first."""
        current: dict[str, Any] | None = commit
        while current is not None:
            yield current
            current = self.commit(current["parent"]) if current["parent"] else None

    def write_commit(self, parent: str | None, summary: str, description: str, files: dict[str, Any]) -> dict:
        date = _now()
        seed = json.dumps([parent, summary, description, files, date, time.time_ns(), uuid.uuid4().hex])
        commit = {
            "oid": hashlib.sha1(seed.encode()).hexdigest(),
            "parent": parent,
            "summary": summary,
            "description": description,
            "date": date,
            "author": DEFAULT_USER,
            "files": files,
        }
        self.store.write_json(self.dir / "commits" / f"{commit['oid']}.json", commit)
        return commit


class _Store:
    """Content-addressed blobs plus repositories under one root; one lock serialises every write."""

    def __init__(self, root: Path):
        self.root = Path(root)
        for sub in ("blobs", "repos", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.commit_cache: dict[str, dict[str, Any]] = {}

    def write_json(self, path: Path, data: Any) -> None:
        """Write atomically so concurrent readers never see half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "tmp" / f"{uuid.uuid4().hex}.json"
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)

    def repo(self, repo_type: str, repo_id: str) -> _Repo:
        return _Repo(self, repo_type, repo_id)

    def existing_repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self.repo(repo_type, repo_id)
        if not all(NAME_RE.match(part) for part in repo_id.split("/")) or not repo.exists():
            raise _repo_not_found(repo_id)
        return repo

    def list_repos(self, repo_type: str) -> list[_Repo]:
        base = self.root / "repos" / f"{repo_type}s"
        ids = sorted(str(p.parent.relative_to(base)) for p in base.glob("**/refs.json"))
        return [self.repo(repo_type, repo_id) for repo_id in ids]

    # blobs

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256[:2] / sha256[2:]

    def has_blob(self, sha256: str) -> bool:
        return bool(SHA256_RE.match(sha256)) and self.blob_path(sha256).is_file()

    def put_bytes(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        if not self.has_blob(sha256):
            self._install(sha256, lambda f: f.write(data))
        return sha256

    def put_stream(self, chunks: Iterable[bytes], oid: str, size: int) -> None:
        """Store an uploaded LFS object, checking that its sha256 and size are the ones announced."""
        hasher, written = hashlib.sha256(), 0
        tmp = self.root / "tmp" / uuid.uuid4().hex
        try:
            with tmp.open("wb") as f:
                for chunk in chunks:
                    hasher.update(chunk)
                    written += len(chunk)
                    f.write(chunk)
            if written != size or hasher.hexdigest() != oid:
                raise HubError(
                    400,
                    f"LFS upload rejected: expected sha256 {oid} and size {size}, "
                    f"got sha256 {hasher.hexdigest()} and size {written}",
                )
            self.blob_path(oid).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, self.blob_path(oid))
        finally:
            tmp.unlink(missing_ok=True)

    def _install(self, sha256: str, write: Callable[[Any], Any]) -> None:
        tmp = self.root / "tmp" / uuid.uuid4().hex
        with tmp.open("wb") as f:
            write(f)
        self.blob_path(sha256).parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, self.blob_path(sha256))

    def file_entry(self, data: bytes, lfs: bool) -> dict[str, Any]:
        """Store ``data`` and describe it the way a commit records files."""
        sha256 = self.put_bytes(data)
        return self.lfs_entry(sha256, len(data)) if lfs else self._regular_entry(sha256, data)

    @staticmethod
    def _regular_entry(sha256: str, data: bytes) -> dict[str, Any]:
        return {"sha256": sha256, "size": len(data), "lfs": False, "git_oid": git_blob_oid(data)}

    @staticmethod
    def lfs_entry(sha256: str, size: int) -> dict[str, Any]:
        # git stores the pointer file for LFS content, so the blob oid is the pointer's, as on the real Hub
        return {"sha256": sha256, "size": size, "lfs": True, "git_oid": git_blob_oid(_lfs_pointer(sha256, size))}


# --------------------------------------------------------------------------------------------------------------------
# HTTP plumbing


@dataclass
class Response:
    """What a handler answers: a JSON/bytes body, or a byte range of a blob file streamed from disk."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    file: Path | None = None
    start: int = 0
    length: int = 0

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(data).encode()
        return cls(status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, body)


def _body_framing(headers: Any, version: str) -> tuple[bool, int]:
    """``(chunked, content_length)`` of a request body (RFC 9112 section 6); HubError for ambiguous framing.

    A request whose body length two parsers could read differently is refused (and its connection closed by the
    caller), never guessed at: guessing is how one connection's body becomes a second, smuggled request.
    """
    if headers.defects or any("\n" in value or "\r" in value for value in headers.values()):
        # e.g. `Transfer-Encoding : chunked` (space before the colon), which the parser silently drops, or obs-fold
        raise HubError(400, "Malformed header block (a field name with spaces, or a folded field line)")
    codings_fields = headers.get_all("Transfer-Encoding") or []
    length_fields = headers.get_all("Content-Length") or []
    if codings_fields and length_fields:
        raise HubError(400, "Both Transfer-Encoding and Content-Length: ambiguous request framing, refused")
    if codings_fields:
        if version == "HTTP/1.0":
            raise HubError(400, "Transfer-Encoding in an HTTP/1.0 request")
        codings = [c.strip().lower() for field in codings_fields for c in field.split(",")]
        if codings[-1] != "chunked" or codings.count("chunked") != 1:
            raise HubError(400, f"Transfer-Encoding {', '.join(codings_fields)!r}: 'chunked' must be the final coding")
        if len(codings) > 1:
            raise HubError(501, f"Unsupported transfer coding in {', '.join(codings_fields)!r} (only 'chunked')")
        return True, 0
    if not length_fields:
        return False, 0
    values = {v.strip() for field in length_fields for v in field.split(",")}
    if len(values) != 1:
        raise HubError(400, f"Conflicting Content-Length values {length_fields!r}")
    (length,) = values
    if not re.fullmatch(r"\d{1,19}", length):
        raise HubError(400, f"Invalid Content-Length {length!r}")
    return False, int(length)


class Request:
    """The parts of an HTTP request the handlers use; the body is read lazily (plain or chunked)."""

    def __init__(self, handler: BaseHTTPRequestHandler):
        parts = urlsplit(handler.path)
        self.method = handler.command
        self.path = parts.path
        self.query = parse_qs(parts.query, keep_blank_values=True)
        self.headers = handler.headers
        hub = handler.server.hub  # type: ignore[attr-defined]
        self._server_url = hub.url
        self._max_body = hub.max_body_bytes
        self._max_json = hub.max_json_bytes
        self._rfile = handler.rfile
        self._read = 0
        self._chunk_left = 0  # bytes of the current chunk not read yet
        # set when the body could not be read to its end (bad framing, too large, cut short): the rest of the
        # connection's stream is not a request boundary any more, so it must be closed, not drained or reused
        self.broken = False
        self._chunked, self._remaining = _body_framing(handler.headers, handler.request_version)
        if self._remaining > self._max_body:
            raise HubError(413, f"Request body of {self._remaining} bytes exceeds the limit of {self._max_body}")
        self._done = not self._chunked and self._remaining == 0

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name) or self.query.get(f"{name}[]")
        return values[0] if values else default

    def flag(self, name: str) -> bool:
        return (self.param(name) or "").lower() in ("1", "true", "yes")

    @property
    def base_url(self) -> str:
        """The server's own configured address; never the client's `Host` header, which anyone can set."""
        return self._server_url

    def iter_body(self) -> Iterator[bytes]:
        """The body in pieces of at most ``CHUNK`` bytes (a chunked body's chunk sizes never size a read)."""
        if self.broken:
            return
        try:
            while not self._done:
                piece = self._next_chunked_piece() if self._chunked else self._next_plain_piece()
                self._read += len(piece)
                if self._read > self._max_body:
                    raise HubError(413, f"Request body exceeds the limit of {self._max_body} bytes")
                if piece:
                    yield piece
        except (HubError, OSError):
            self.broken = True
            raise

    def _next_plain_piece(self) -> bytes:
        piece = self._rfile.read(min(CHUNK, self._remaining))
        self._remaining -= len(piece)
        if not piece:
            raise HubError(400, f"Body ended {self._remaining} bytes short of its Content-Length")
        self._done = self._remaining <= 0
        return piece

    def _next_chunked_piece(self) -> bytes:
        if self._chunk_left == 0:
            line = self._rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise HubError(400, "Chunked body ended early (or a chunk-size line is too long)")
            size = line.split(b";")[0].strip()
            if not re.fullmatch(rb"[0-9a-fA-F]{1,16}", size):
                raise HubError(400, f"Invalid chunk size {size[:40]!r} in a chunked body")
            self._chunk_left = int(size, 16)
            if self._chunk_left == 0:
                self._read_trailers()
                self._done = True
                return b""
        piece = self._rfile.read(min(CHUNK, self._chunk_left))
        if not piece:
            raise HubError(400, "Chunked body ended early")
        self._chunk_left -= len(piece)
        if self._chunk_left == 0 and self._rfile.readline(3) not in (b"\r\n", b"\n"):
            raise HubError(400, "A chunk of a chunked body is not followed by CRLF")
        return piece

    def _read_trailers(self) -> None:
        for _ in range(100):
            line = self._rfile.readline(65537)
            if line in (b"\r\n", b"\n"):
                return
            if not line.endswith(b"\n"):
                raise HubError(400, "Chunked body ended early (in its trailers)")
        raise HubError(400, "Too many trailer fields in a chunked body")

    def body(self) -> bytes:
        """The whole body, read into memory: only for JSON and NDJSON requests, bounded by `max_json_bytes`."""
        limit = self._max_json
        data = bytearray()
        for chunk in self.iter_body():
            data += chunk
            if len(data) > limit:
                self.broken = True  # hang up rather than read (up to max_body_bytes of) the rest
                raise HubError(413, f"Request body exceeds the limit of {limit} bytes for this endpoint")
        return bytes(data)

    def json(self) -> dict[str, Any]:
        """The body as a JSON object (every Hub endpoint takes one); 400 otherwise."""
        raw = self.body()
        try:
            data = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as e:
            raise HubError(400, f"Request body is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise HubError(400, f"Request body must be a JSON object, got {type(data).__name__}")
        return data

    def form_or_json(self) -> dict[str, list[Any]]:
        """A form-encoded or JSON body as ``{key: [values]}``."""
        content_type = (self.headers.get("Content-Type") or "").lower()
        if "json" in content_type:
            data = self.json()
            return {k: v if isinstance(v, list) else [v] for k, v in data.items()}
        return parse_qs(self.body().decode(), keep_blank_values=True)

    def drain(self) -> None:
        """Consume what the handler did not read, so the keep-alive connection stays in sync."""
        for _ in self.iter_body():
            pass

    def integer(self, value: Any, what: str) -> int:
        """A non-negative integer field of the request; 400 for anything else."""
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
            raise HubError(400, f"Invalid {what} {value!r}: expected a non-negative integer")
        if int(value) < 0:
            raise HubError(400, f"Invalid {what} {value!r}: expected a non-negative integer")
        return int(value)


class _DeadlineReader(io.RawIOBase):
    """A connection's input: every read waits at most the idle timeout and, while a header block is read, no
    later than that block's deadline (``header_timeout`` after its first byte).

    A per-read timeout alone lets a client hold a connection (and its thread) forever by trickling a header byte
    every few seconds; the deadline bounds the whole block. The wait for a request's first byte stays the idle
    timeout, so pooled keep-alive connections are not cut short between requests.
    """

    def __init__(self, sock: socket.socket, idle_timeout: float, header_timeout: float):
        self._sock = sock
        self._idle = idle_timeout
        self._header_timeout = header_timeout
        self._in_header = False
        self._deadline: float | None = None
        self.expired = False  # the header deadline passed (answer 408, then close)

    def readable(self) -> bool:
        return True

    def begin_header_block(self) -> None:
        self._in_header, self._deadline, self.expired = True, None, False

    def end_header_block(self) -> None:
        self._in_header, self._deadline = False, None
        self._sock.settimeout(self._idle)  # writes (and body reads) get the idle timeout back

    def readinto(self, buffer: Any) -> int:
        timeout = self._idle
        if self._deadline is not None:
            timeout = min(timeout, self._deadline - time.monotonic())
            if timeout <= 0:
                self.expired = True
                raise TimeoutError("header deadline passed")
        self._sock.settimeout(timeout)
        try:
            n = self._sock.recv_into(buffer)
        except TimeoutError:
            self.expired = self._deadline is not None and time.monotonic() >= self._deadline
            raise
        if n and self._in_header and self._deadline is None:
            self._deadline = time.monotonic() + self._header_timeout
        return n


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the clients pool connections
    server_version = "csg-hub-server/0.1"
    timeout = IDLE_TIMEOUT  # per-socket read timeout: idle or stalled connections do not hold a thread

    def setup(self) -> None:
        hub = self.server.hub  # type: ignore[attr-defined]
        self.timeout = hub.idle_timeout
        super().setup()
        # headers and body leave in separate writes: without this, Nagle's algorithm holds the body until the
        # client's delayed ACK (~40 ms a request), a latency the real Hub does not have
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile.close()  # the socket file setup() made: reads go through the deadline reader instead
        self._reader = _DeadlineReader(self.connection, hub.idle_timeout, hub.header_timeout)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.begin_header_block()
        try:
            super().handle_one_request()  # a read timeout there closes the connection
        finally:
            expired = self._reader.expired
            self._reader.end_header_block()
        if expired:
            self.close_connection = True
            try:
                self.wfile.write(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass

    def _serve(self) -> None:
        self._reader.end_header_block()  # the header block is in: body reads get the idle timeout only
        self.server.hub._handle(self)  # type: ignore[attr-defined]

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.hub.verbose:  # type: ignore[attr-defined]
            super().log_message(format, *args)


class _Refuser:
    """Answers the connections past the limit with a 503 and closes them gracefully, all on one thread.

    Closing a socket whose request is still unread makes the kernel send a reset, which can destroy the 503
    before the client reads it; so each socket is half-closed after the answer, and its input is read and
    discarded until the client hangs up (or ``linger`` seconds pass).
    """

    def __init__(self, linger: float = REJECT_LINGER, capacity: int = 4096):
        self._linger = linger
        self._capacity = capacity  # past it (a flood), refused sockets are closed at once
        self._lock = threading.Lock()
        self._pending: list[socket.socket] = []
        self._count = 0
        self._stopped = False
        self._deadlines: dict[socket.socket, float] = {}
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name="hub-server-refuser", daemon=True)
        self._thread.start()

    def refuse(self, sock: socket.socket, answer: bytes) -> None:
        try:
            sock.setblocking(False)
            sock.send(answer)  # a fresh socket's send buffer takes a short answer whole
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        with self._lock:
            if self._stopped or self._count >= self._capacity:
                sock.close()
                return
            self._count += 1
            self._pending.append(sock)
        self._wake()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        self._wake()
        self._thread.join(timeout=5)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:  # the pipe is full: the thread is awake anyway
            pass

    def _drop(self, sock: socket.socket) -> None:
        self._selector.unregister(sock)
        del self._deadlines[sock]
        sock.close()
        with self._lock:
            self._count -= 1

    def _run(self) -> None:
        try:
            while True:
                wait = min(self._deadlines.values(), default=time.monotonic() + 1.0) - time.monotonic()
                events = self._selector.select(max(wait, 0.0))
                with self._lock:
                    if self._stopped:
                        return
                    new, self._pending = self._pending, []
                for sock in new:
                    self._deadlines[sock] = time.monotonic() + self._linger
                    self._selector.register(sock, selectors.EVENT_READ)
                for key, _ in events:
                    if key.fileobj is self._wake_r:
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except OSError:
                            pass
                        continue
                    sock = key.fileobj
                    try:
                        data = sock.recv(65536)  # type: ignore[union-attr]
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data and sock in self._deadlines:
                        self._drop(sock)  # type: ignore[arg-type]
                now = time.monotonic()
                for sock, deadline in list(self._deadlines.items()):
                    if deadline <= now:
                        self._drop(sock)
        finally:
            for sock in list(self._deadlines):
                self._drop(sock)
            with self._lock:
                for sock in self._pending:
                    sock.close()
                self._pending = []
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()


class _HTTPServer(ThreadingHTTPServer):
    """A thread per connection, up to ``hub.max_connections`` at once; past it, an immediate 503."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], hub: HubServer):
        self.hub = hub
        self.request_queue_size = hub.listen_backlog  # listen(): a burst of connects waits to be accepted
        self._active: set[Any] = set()
        self._active_lock = threading.Lock()
        super().__init__(address, _Handler)
        self._refuser = _Refuser()
        body = json.dumps({"error": f"Server busy: {hub.max_connections} connections open; retry later"}).encode()
        self._busy_answer = (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
            b"Retry-After: 1\r\nConnection: close\r\nX-Error-Message: Server busy (connection limit)\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    @property
    def active_connections(self) -> int:
        with self._active_lock:
            return len(self._active)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._active_lock:
            busy = len(self._active) >= self.hub.max_connections
            if not busy:
                self._active.add(request)
        if busy:
            self._refuser.refuse(request, self._busy_answer)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Called once per served connection when it ends (also when its thread could not start)."""
        try:
            super().shutdown_request(request)
        finally:
            with self._active_lock:
                self._active.discard(request)

    def server_close(self) -> None:
        super().server_close()
        self._refuser.stop()


# URL pieces: a repo id is "name" or "namespace/name"; revisions and tree paths arrive %-encoded
_T = r"(?P<repo_type>model|dataset|space)s"
_REPO = r"(?P<repo>[^/]+(?:/[^/]+)?)"
_PREFIX = r"(?:(?P<repo_type>dataset|space)s/)?"
_REV = r"(?P<rev>[^/]+)"
_SLUG = r"(?P<slug>[^/]+/[^/]+)"
COLLECTION_ITEM_TYPES = ("model", "dataset", "space", "paper", "collection")


# --------------------------------------------------------------------------------------------------------------------
# The server


class HubServer:
    """A Hub-protocol server on a background thread, storing repositories under ``root``.

    A test double, not a Hub: no authentication, no permissions, no Xet, no pull requests. Any client that
    reaches it can read, write and delete every repo, so it must not listen beyond localhost.

    Args:
        root: directory for blobs and repositories (created if missing; reused across restarts).
        host, port: where to listen; ``port=0`` picks a free port (see ``url`` after ``start``).
        verbose: log every request to stderr.
        max_body_bytes: largest request body accepted (413 beyond: LFS uploads).
        max_json_bytes: largest JSON / NDJSON body, which is read into memory (413 beyond).
        idle_timeout: seconds a connection may stay silent (mid-request or between requests).
        header_timeout: seconds from a request's first byte to the end of its header block (then 408 and close).
        max_connections: connections served at once; past it a new connection is answered 503 (``Retry-After``,
            ``Connection: close``) and closed, never dropped silently.
        listen_backlog: connections the kernel queues until accepted (capped by ``net.core.somaxconn``).
    """

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_json_bytes: int = MAX_JSON_BYTES,
        idle_timeout: float = IDLE_TIMEOUT,
        header_timeout: float = HEADER_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        listen_backlog: int = LISTEN_BACKLOG,
    ):
        self.root = Path(root)
        self.host = host
        self.port = port
        self.verbose = verbose
        self.max_body_bytes = max_body_bytes
        self.max_json_bytes = max_json_bytes
        self.idle_timeout = idle_timeout
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.listen_backlog = listen_backlog
        self.store = _Store(self.root)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._failures: list[list[Any]] = []  # [status, remaining count, path substring or None]
        self._failures_lock = threading.Lock()
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Response]]] = [
            (method, re.compile(f"^{pattern}$"), handler) for method, pattern, handler in self._route_table()
        ]

    def _route_table(self) -> list[tuple[str, str, Callable[..., Response]]]:
        api = rf"/api/{_T}/{_REPO}"
        resolve = rf"/{_PREFIX}{_REPO}/(?:resolve|raw)/{_REV}/(?P<path>.+)"
        return [
            ("POST", r"/api/repos/create", self._create_repo),
            ("DELETE", r"/api/repos/delete", self._delete_repo),
            ("POST", r"/api/validate-yaml", self._validate_yaml),
            ("GET", r"/api/whoami-v2", self._whoami),
            ("GET", r"/api/agent-harnesses", self._agent_harnesses),
            ("GET", rf"/api/{_T}", self._list_repos),
            ("GET", rf"{api}/revision/{_REV}", self._repo_info),
            ("GET", rf"{api}/tree/{_REV}(?:/(?P<path>.*))?", self._tree),
            ("POST", rf"{api}/paths-info/{_REV}", self._paths_info),
            ("POST", rf"{api}/preupload/{_REV}", self._preupload),
            ("POST", rf"{api}/commit/{_REV}", self._commit),
            ("GET", rf"{api}/refs", self._refs),
            ("GET", rf"{api}/commits/{_REV}", self._commits),
            ("POST", rf"{api}/branch/{_REV}", self._create_branch),
            ("DELETE", rf"{api}/branch/{_REV}", self._delete_branch),
            ("POST", rf"{api}/tag/{_REV}", self._create_tag),
            ("DELETE", rf"{api}/tag/{_REV}", self._delete_tag),
            ("PUT", rf"{api}/settings", self._settings),
            ("GET", rf"{api}/discussions", self._discussions),
            ("GET", api, self._repo_info),
            ("POST", rf"/{_PREFIX}{_REPO}\.git/info/lfs/objects/batch", self._lfs_batch),
            ("PUT", r"/lfs-objects/(?P<oid>[0-9a-f]{64})/(?P<size>\d+)", self._lfs_put),
            ("GET", r"/lfs-objects/(?P<oid>[0-9a-f]{64})", self._lfs_get),
            ("GET", resolve, self._resolve),
            ("GET", r"/api/collections", self._list_collections),
            ("POST", r"/api/collections", self._create_collection),
            ("GET", rf"/api/collections/{_SLUG}", self._get_collection),
            ("DELETE", rf"/api/collections/{_SLUG}", self._delete_collection),
            ("POST", rf"/api/collections/{_SLUG}/items", self._add_collection_item),
            ("DELETE", rf"/api/collections/{_SLUG}/items/(?P<item_id>[0-9a-f]{{24}})", self._delete_collection_item),
        ]

    # lifecycle

    def start(self) -> HubServer:
        """Bind and serve on a daemon thread."""
        if self._httpd is None:
            self._httpd = _HTTPServer((self.host, self.port), self)
            self.port = self._httpd.server_address[1]
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, args=(0.1,), name="hub-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def fail_requests(self, status: int = 500, count: int = 1, path_contains: str | None = None) -> None:
        """Answer the next ``count`` requests (whose path contains ``path_contains``, if given) with ``status``.

        Rules queue up and the oldest matching one is used first. ``count=0`` cancels every pending injection.
        huggingface_hub retries 5xx with backoff (1, 2, 4, 8, 8 s) on preupload, the LFS batch and PUT, and on the
        resolve HEAD of a file it has not cached (1 + 6 attempts); a failure meant to surface there must outnumber
        them, and then ``hf_hub_download`` raises ``LocalEntryNotFoundError`` caused by the ``HfHubHTTPError``.
        Repo info (``/api/models/...``) and commit requests are not retried: one injected failure surfaces.
        """
        with self._failures_lock:
            if count <= 0:
                self._failures.clear()
            else:
                self._failures.append([status, count, path_contains])

    def _injected_failure(self, path: str) -> int | None:
        with self._failures_lock:
            for rule in self._failures:
                if rule[2] is None or rule[2] in path:
                    rule[1] -= 1
                    if rule[1] <= 0:
                        self._failures.remove(rule)
                    return rule[0]
        return None

    # dispatch

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        try:
            request = Request(handler)
        except HubError as e:  # unreadable framing: answer and drop the connection, its stream is lost
            handler.close_connection = True
            self._write(handler, None, self._error(e))
            return
        try:
            response = self._dispatch(request)
        except TimeoutError:  # the client stopped sending mid-body: answer, then hang up
            handler.close_connection = True
            try:
                self._write(handler, request, self._error(HubError(408, "Timed out waiting for the request body")))
            except OSError:
                pass
            return
        except HubError as e:
            response = self._error(e)
        except (ValueError, TypeError, KeyError, AttributeError) as e:  # fields of the wrong shape or type
            response = self._error(HubError(400, f"Malformed request: {type(e).__name__}: {e}"))
        except Exception as e:  # a server bug: answer 500 rather than drop the connection
            logger.exception("hub server error on %s %s", request.method, request.path)
            response = self._error(HubError(500, f"Internal server error: {type(e).__name__}: {e}"))
        try:
            request.drain()
        except HubError as e:  # the rest of the body is unreadable or too large: answer, then hang up
            response = self._error(e)
        except (ConnectionError, TimeoutError):
            handler.close_connection = True
            return
        if request.broken:  # the body was not read to its end: the stream has no request boundary any more
            handler.close_connection = True
        try:
            self._write(handler, request, response)
        except (ConnectionError, TimeoutError):
            handler.close_connection = True

    def _dispatch(self, request: Request) -> Response:
        status = self._injected_failure(request.path)
        if status is not None:
            raise HubError(status, f"Injected failure ({status}) for {request.path}")
        path_matched = False
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if match is None:
                continue
            path_matched = True
            if method == request.method or (method, request.method) == ("GET", "HEAD"):  # HEAD: GET minus the body
                groups = {k: unquote(v) if v is not None else None for k, v in match.groupdict().items()}
                if "repo_type" in groups and groups["repo_type"] is None:  # no "datasets/" prefix: a model
                    groups["repo_type"] = "model"
                return handler(request, **groups)
        if path_matched:
            raise HubError(405, f"Method {request.method} not allowed on {request.path}")
        raise HubError(404, f"Not found: {request.method} {request.path}")

    @staticmethod
    def _error(e: HubError) -> Response:
        # header values must be latin-1 and one line
        message = e.message.replace("\r", " ").replace("\n", " ").encode("ascii", "replace").decode()
        headers = {"X-Error-Message": message[:1000], **e.headers}
        if e.code:
            headers["X-Error-Code"] = e.code
        return Response.json({"error": e.message, **e.extra}, e.status, headers)

    @staticmethod
    def _write(handler: BaseHTTPRequestHandler, request: Request | None, response: Response) -> None:
        length = response.length if response.file is not None else len(response.body)
        handler.send_response(response.status)
        for name, value in response.headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(length))
        if handler.close_connection:
            handler.send_header("Connection", "close")
        handler.end_headers()
        if handler.command == "HEAD":
            return
        if response.file is None:
            handler.wfile.write(response.body)
            return
        with response.file.open("rb") as f:
            f.seek(response.start)
            remaining = length
            while remaining > 0:
                chunk = f.read(min(CHUNK, remaining))
                if not chunk:
                    break
                handler.wfile.write(chunk)
                remaining -= len(chunk)

    # repository lookup shared by handlers

    def _repo(self, repo_type: str, repo: str) -> _Repo:
        parts = repo.split("/")
        if len(parts) > 2 or not all(NAME_RE.match(part) for part in parts):
            raise HubError(400, f"Invalid repo id {repo!r}: use namespace/name with letters, digits, '-', '_', '.'")
        return self.store.existing_repo(repo_type, repo)

    @staticmethod
    def _commit_at(repo: _Repo, rev: str) -> dict[str, Any]:
        commit = repo.resolve(rev)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return commit

    def _repo_url(self, request: Request, repo: _Repo) -> str:
        return f"{request.base_url}/{_repo_url_prefix(repo.type)}{repo.id}"

    # repos

    def _create_repo(self, request: Request) -> Response:
        body = request.json()
        repo_type = body.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type {repo_type!r}; expected one of {REPO_TYPES}")
        name, namespace = body.get("name") or "", body.get("organization") or DEFAULT_USER
        if not NAME_RE.match(name) or not NAME_RE.match(namespace):
            raise HubError(400, f"Invalid repo name {namespace}/{name}: use letters, digits, '-', '_' and '.'")
        repo = self.store.repo(repo_type, f"{namespace}/{name}")
        private = body.get("visibility", "private" if body.get("private") else "public") != "public"
        with self.store.lock:
            if repo.exists():
                # create_repo(exist_ok=True) reads the repo URL from this very 409 answer
                url = self._repo_url(request, repo)
                raise HubError(409, f"You already created this {repo_type} repo: {repo.id}", extra={"url": url})
            repo.dir.mkdir(parents=True, exist_ok=True)
            self.store.write_json(repo.dir / "meta.json", {"private": private, "createdAt": _now()})
            files = {".gitattributes": self.store.file_entry(GITATTRIBUTES.encode(), lfs=False)}
            commit = repo.write_commit(None, "initial commit", "", files)
            self.store.write_json(repo.dir / "refs.json", {"branches": {DEFAULT_BRANCH: commit["oid"]}, "tags": {}})
        return Response.json({"url": self._repo_url(request, repo), "name": repo.id, "id": repo.id})

    def _delete_repo(self, request: Request) -> Response:
        body = request.json()
        namespace = body.get("organization") or DEFAULT_USER
        repo = self._repo(body.get("type") or "model", f"{namespace}/{body.get('name')}")
        with self.store.lock:
            shutil.rmtree(repo.dir)
        return Response.json({})

    def _settings(self, request: Request, repo_type: str, repo: str) -> Response:
        target, body = self._repo(repo_type, repo), request.json()
        if "visibility" in body or "private" in body:
            with self.store.lock:
                target.set_meta(
                    private=body.get("visibility", "private" if body.get("private") else "public") != "public"
                )
        return Response.json({})

    def _discussions(self, request: Request, repo_type: str, repo: str) -> Response:
        """No discussions or pull requests here; listing them answers an empty page."""
        self._repo(repo_type, repo)
        return Response.json({"discussions": [], "count": 0, "start": 0, "numClosedDiscussions": 0})

    def _whoami(self, request: Request) -> Response:
        return Response.json(
            {
                "type": "user",
                "id": "0" * 24,
                "name": DEFAULT_USER,
                "fullname": "Offline Hub user",
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "offline", "role": "write"}},
            }
        )

    def _agent_harnesses(self, request: Request) -> Response:
        """huggingface_hub fetches this registry to tag its user agent; an empty one disables that."""
        return Response.json({"standardEnvVars": [], "harnesses": {}})

    def _list_repos(self, request: Request, repo_type: str) -> Response:
        search, author = request.param("search"), request.param("author")
        infos = [
            self._info(repo, self._commit_at(repo, DEFAULT_BRANCH), blobs=False)
            for repo in self.store.list_repos(repo_type)
            if (not search or search.lower() in repo.id.lower()) and (not author or repo.namespace == author)
        ]
        return Response.json(infos)

    def _repo_info(self, request: Request, repo_type: str, repo: str, rev: str = DEFAULT_BRANCH) -> Response:
        target = self._repo(repo_type, repo)
        return Response.json(self._info(target, self._commit_at(target, rev), blobs=request.flag("blobs")))

    def _info(self, repo: _Repo, commit: dict[str, Any], blobs: bool) -> dict[str, Any]:
        files = commit["files"]
        card = self._card_data(files)
        siblings = []
        for path, f in sorted(files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=f["size"], blobId=f["git_oid"])
                if f["lfs"]:
                    sibling["lfs"] = {"size": f["size"], "sha256": f["sha256"], "pointerSize": self._pointer_size(f)}
            siblings.append(sibling)
        meta = repo.meta()
        info: dict[str, Any] = {
            "_id": hashlib.sha1(f"{repo.type}/{repo.id}".encode()).hexdigest()[:24],
            "id": repo.id,
            "author": repo.namespace,
            "sha": commit["oid"],
            "lastModified": commit["date"],
            "createdAt": meta.get("createdAt"),
            "private": meta.get("private", False),
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [str(t) for t in card["tags"]] if isinstance(card.get("tags"), list) else [],
            "siblings": siblings,
        }
        if card:
            info["cardData"] = card
        if repo.type == "model":
            info["modelId"] = repo.id
            for key in ("library_name", "pipeline_tag"):
                if isinstance(card.get(key), str):
                    info[key] = card[key]
        if blobs:
            info["usedStorage"] = sum(f["size"] for f in files.values())
        return info

    def _card_data(self, files: dict[str, Any]) -> dict[str, Any]:
        readme = files.get("README.md")
        if readme is None:
            return {}
        try:
            return _jsonable(_parse_card_yaml(self.store.blob_path(readme["sha256"]).read_text(errors="replace")))
        except ValueError:  # an invalid card only loses its metadata, as on the Hub
            return {}

    def _validate_yaml(self, request: Request) -> Response:
        content = request.json().get("content") or ""
        try:
            _parse_card_yaml(content)
        except ValueError as e:
            return Response.json({"errors": [{"message": str(e)}], "warnings": [], "error": str(e)}, 400)
        return Response.json({"errors": [], "warnings": []})

    # refs and history

    def _refs(self, request: Request, repo_type: str, repo: str) -> Response:
        refs = self._repo(repo_type, repo).refs()

        def entries(kind: str, prefix: str) -> list[dict[str, str]]:
            return [{"name": n, "ref": f"{prefix}{n}", "targetCommit": o} for n, o in sorted(refs[kind].items())]

        return Response.json(
            {
                "branches": entries("branches", "refs/heads/"),
                "tags": entries("tags", "refs/tags/"),
                "converts": [],
                "pullRequests": [],
            }
        )

    def _commits(self, request: Request, repo_type: str, repo: str, rev: str) -> Response:
        target = self._repo(repo_type, repo)
        history = target.history(self._commit_at(target, rev))
        return Response.json([self._commit_summary(c) for c in history])

    @staticmethod
    def _commit_summary(commit: dict[str, Any]) -> dict[str, Any]:
        message = commit["summary"] + (f"\n\n{commit['description']}" if commit["description"] else "")
        return {
            "id": commit["oid"],
            "title": commit["summary"],
            "message": message,
            "date": commit["date"],
            "authors": [{"user": commit.get("author", DEFAULT_USER)}],
        }

    def _create_branch(self, request: Request, repo_type: str, repo: str, rev: str) -> Response:
        target, body = self._repo(repo_type, repo), request.json()
        start = self._commit_at(target, body.get("startingPoint") or DEFAULT_BRANCH)
        if not NAME_RE.match(rev) or SHA1_RE.match(rev):
            raise HubError(
                400, f"Invalid branch name {rev!r}" + (" (it looks like a commit sha)" if SHA1_RE.match(rev) else "")
            )
        with self.store.lock:
            if rev in target.refs()["branches"]:
                raise HubError(409, f"Reference already exists: refs/heads/{rev}")
            target.set_ref("branches", rev, start["oid"])
        return Response.json({})

    def _delete_branch(self, request: Request, repo_type: str, repo: str, rev: str) -> Response:
        target = self._repo(repo_type, repo)
        if rev == DEFAULT_BRANCH:
            raise HubError(403, "The main branch cannot be deleted")
        with self.store.lock:
            if rev not in target.refs()["branches"]:
                raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            target.set_ref("branches", rev, None)
        return Response.json({})

    def _create_tag(self, request: Request, repo_type: str, repo: str, rev: str) -> Response:
        target, body = self._repo(repo_type, repo), request.json()
        commit, tag = self._commit_at(target, rev), str(body.get("tag") or "")
        if not NAME_RE.match(tag) or SHA1_RE.match(tag):
            raise HubError(
                400, f"Invalid tag name {tag!r}" + (" (it looks like a commit sha)" if SHA1_RE.match(tag) else "")
            )
        with self.store.lock:
            if tag in target.refs()["tags"]:
                raise HubError(409, f"Tag already exists: {tag}")
            target.set_ref("tags", tag, commit["oid"])
        return Response.json({})

    def _delete_tag(self, request: Request, repo_type: str, repo: str, rev: str) -> Response:
        target = self._repo(repo_type, repo)
        with self.store.lock:
            if rev not in target.refs()["tags"]:
                raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            target.set_ref("tags", rev, None)
        return Response.json({})

    # collections: create (409 + slug for an existing title), get, list, add item (409 if present), delete.
    # Stored as one JSON file per collection under root/collections/<namespace>/; items keep their order.

    def _collection_path(self, slug: str) -> Path:
        namespace, _, name = slug.partition("/")
        if not NAME_RE.match(namespace) or not NAME_RE.match(name):
            raise HubError(400, f"Invalid collection slug {slug!r}")
        return self.store.root / "collections" / namespace / f"{name}.json"

    def _load_collection(self, slug: str) -> dict[str, Any]:
        path = self._collection_path(slug)
        if not path.is_file():
            raise HubError(404, f"Collection not found: {slug}", "CollectionNotFound")
        return json.loads(path.read_text())

    def _save_collection(self, collection: dict[str, Any]) -> None:
        collection["lastUpdated"] = _now()
        self.store.write_json(self._collection_path(collection["slug"]), collection)

    def _all_collections(self) -> list[dict[str, Any]]:
        base = self.store.root / "collections"
        return [json.loads(p.read_text()) for p in sorted(base.glob("*/*.json"))] if base.is_dir() else []

    def _create_collection(self, request: Request) -> Response:
        body = request.json()
        title, namespace = str(body.get("title") or "").strip(), body.get("namespace") or DEFAULT_USER
        if not title or not NAME_RE.match(str(namespace)):
            raise HubError(400, "A collection needs a title and a valid namespace")
        with self.store.lock:
            for existing in self._all_collections():
                if existing["owner"]["name"] == namespace and existing["title"] == title:
                    # create_collection(exists_ok=True) reads the slug from this very 409 answer
                    raise HubError(409, f"Collection {title!r} already exists", extra={"slug": existing["slug"]})
            words = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "collection"
            slug = f"{namespace}/{words}-{uuid.uuid4().hex[:24]}"
            collection = {
                "slug": slug,
                "title": title,
                "description": body.get("description"),
                "owner": {"name": namespace, "type": "user" if namespace == DEFAULT_USER else "org"},
                "items": [],
                "position": len([c for c in self._all_collections() if c["owner"]["name"] == namespace]),
                "private": bool(body.get("private", False)),
                "theme": "default",
                "upvotes": 0,
            }
            self._save_collection(collection)
        return Response.json(collection)

    def _get_collection(self, request: Request, slug: str) -> Response:
        return Response.json(self._load_collection(slug))

    def _list_collections(self, request: Request) -> Response:
        owners, items = request.query.get("owner", []), request.query.get("item", [])
        found = [
            # as on the Hub: at most 4 items per collection, and no "position" (the client numbers the listing)
            {**{k: v for k, v in c.items() if k != "position"}, "items": c["items"][:4]}
            for c in self._all_collections()
            if (not owners or c["owner"]["name"] in owners)
            and all(any(f"{i['type']}s/{i['id']}" == want for i in c["items"]) for want in items)
        ]
        return Response.json(found)

    def _delete_collection(self, request: Request, slug: str) -> Response:
        with self.store.lock:
            self._load_collection(slug)
            self._collection_path(slug).unlink()
        return Response.json({})

    def _add_collection_item(self, request: Request, slug: str) -> Response:
        body = request.json()
        item = body.get("item") or {}
        item_id, item_type = str(item.get("id") or ""), item.get("type")
        if item_type not in COLLECTION_ITEM_TYPES or not item_id:
            raise HubError(400, f"Invalid collection item {item!r}: type one of {COLLECTION_ITEM_TYPES} and an id")
        if item_type in REPO_TYPES:
            self._repo(item_type, item_id)  # 404 for a repo that does not exist, as on the Hub
        with self.store.lock:
            collection = self._load_collection(slug)
            if any(i["id"] == item_id and i["type"] == item_type for i in collection["items"]):
                raise HubError(409, f"{item_type} {item_id} is already in collection {slug}")
            entry: dict[str, Any] = {
                "_id": uuid.uuid4().hex[:24],
                "id": item_id,
                "type": item_type,
                "position": len(collection["items"]),
            }
            if body.get("note") is not None:
                entry["note"] = {"text": str(body["note"]), "html": str(body["note"])}
            collection["items"].append(entry)
            self._save_collection(collection)
        return Response.json(collection)

    def _delete_collection_item(self, request: Request, slug: str, item_id: str) -> Response:
        with self.store.lock:
            collection = self._load_collection(slug)
            kept = [i for i in collection["items"] if i["_id"] != item_id]
            if len(kept) == len(collection["items"]):
                raise HubError(404, f"Item {item_id} not in collection {slug}")
            collection["items"] = [{**i, "position": n} for n, i in enumerate(kept)]
            self._save_collection(collection)
        return Response.json({})

    # listing files

    @staticmethod
    def _pointer_size(f: dict[str, Any]) -> int:
        return len(_lfs_pointer(f["sha256"], f["size"]))

    def _file_entry(self, path: str, f: dict[str, Any]) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": f["git_oid"], "size": f["size"], "path": path}
        if f["lfs"]:
            entry["lfs"] = {"oid": f["sha256"], "size": f["size"], "pointerSize": self._pointer_size(f)}
        return entry

    @staticmethod
    def _dir_entry(path: str, files: dict[str, Any]) -> dict[str, Any]:
        # a stand-in for git's tree oid: stable for identical content under the folder
        inside = sorted((p, f["git_oid"]) for p, f in files.items() if p.startswith(f"{path}/"))
        oid = hashlib.sha1(json.dumps(inside).encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": path}

    @staticmethod
    def _folders(files: dict[str, Any]) -> set[str]:
        return {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}

    def _entry(self, path: str, files: dict[str, Any], folders: set[str]) -> dict[str, Any] | None:
        if path in files:
            return self._file_entry(path, files[path])
        if path in folders:
            return self._dir_entry(path, files)
        return None

    def _add_last_commits(self, repo: _Repo, commit: dict[str, Any], entries: list[dict[str, Any]]) -> None:
        """``expand=true``: the newest commit that changed each entry (walks history; repos here are small)."""
        pending = {e["path"]: e for e in entries}
        history = list(repo.history(commit))
        for current, parent in zip(history, history[1:] + [None]):
            before = parent["files"] if parent else {}
            changed = {p for p in set(current["files"]) | set(before) if current["files"].get(p) != before.get(p)}
            for path in list(pending):
                if any(c == path or c.startswith(f"{path}/") for c in changed):
                    info = {"id": current["oid"], "title": current["summary"], "date": current["date"]}
                    pending.pop(path)["lastCommit"] = info
            if not pending:
                return

    def _tree(self, request: Request, repo_type: str, repo: str, rev: str, path: str | None) -> Response:
        target = self._repo(repo_type, repo)
        commit = self._commit_at(target, rev)
        files, folders = commit["files"], self._folders(commit["files"])
        base = (path or "").strip("/")
        if base:
            _check_path(base)
        if base and base not in folders:
            detail = "is a file, not a folder" if base in files else "does not exist"
            raise HubError(404, f"{base} {detail} at {rev}", "EntryNotFound", {"X-Repo-Commit": commit["oid"]})
        prefix = f"{base}/" if base else ""
        candidates = [p for p in sorted(set(files) | folders) if p.startswith(prefix)]
        if not request.flag("recursive"):
            candidates = [p for p in candidates if "/" not in p[len(prefix) :]]
        entries = [e for p in candidates if (e := self._entry(p, files, folders)) is not None]
        entries.sort(key=lambda e: (e["type"] != "directory", e["path"]))
        if request.flag("expand"):
            self._add_last_commits(target, commit, entries)
        return Response.json(entries)

    def _paths_info(self, request: Request, repo_type: str, repo: str, rev: str) -> Response:
        target = self._repo(repo_type, repo)
        commit = self._commit_at(target, rev)
        form = request.form_or_json()
        files, folders = commit["files"], self._folders(commit["files"])
        paths = [_check_path(str(p).strip("/")) for p in form.get("paths", [])]
        entries = [e for p in dict.fromkeys(paths) if (e := self._entry(p, files, folders)) is not None]
        if str((form.get("expand") or ["false"])[0]).lower() in ("1", "true"):
            self._add_last_commits(target, commit, entries)
        return Response.json(entries)

    # uploads

    def _preupload(self, request: Request, repo_type: str, repo: str, rev: str) -> Response:
        target = self._repo(repo_type, repo)
        files = self._commit_at(target, rev)["files"]
        answers = []
        for item in request.json().get("files", []):
            path, size = _check_path(str(item.get("path") or "")), request.integer(item.get("size") or 0, "size")
            sample = base64.b64decode(item.get("sample") or "")
            lfs = _is_binary_ish(path, size, sample)
            existing = files.get(path)
            # the client compares this with its local oid (sha256 for LFS, git sha1 otherwise) to skip no-ops
            oid = None if existing is None else existing["sha256"] if existing["lfs"] else existing["git_oid"]
            answers.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        return Response.json({"files": answers, "commitOid": None})

    def _lfs_batch(self, request: Request, repo_type: str, repo: str) -> Response:
        self._repo(repo_type, repo)
        body = request.json()
        operation = body.get("operation")
        if operation not in ("upload", "download"):
            raise HubError(400, f"Unsupported LFS operation {operation!r}")
        objects = []
        for obj in body.get("objects", []):
            oid, size = str(obj.get("oid")), request.integer(obj.get("size") or 0, "size")
            answer: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not SHA256_RE.match(oid):
                answer["error"] = {"code": 422, "message": f"Invalid LFS oid {oid!r}"}
            elif operation == "upload" and not self.store.has_blob(oid):
                href = f"{request.base_url}/lfs-objects/{oid}/{size}"
                answer["actions"] = {"upload": {"href": href, "header": {}}}
            elif operation == "download" and self.store.has_blob(oid):
                answer["actions"] = {"download": {"href": f"{request.base_url}/lfs-objects/{oid}", "header": {}}}
            elif operation == "download":
                answer["error"] = {"code": 404, "message": f"Object {oid} does not exist"}
            objects.append(answer)
        return Response.json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def _lfs_put(self, request: Request, oid: str, size: str) -> Response:
        self.store.put_stream(request.iter_body(), oid, int(size))
        return Response(200, {"ETag": f'"{oid}"'})

    def _lfs_get(self, request: Request, oid: str) -> Response:
        if not self.store.has_blob(oid):
            raise HubError(404, f"LFS object {oid} does not exist")
        blob = self.store.blob_path(oid)
        return Response(200, {"Content-Type": "application/octet-stream"}, file=blob, length=blob.stat().st_size)

    def _commit(self, request: Request, repo_type: str, repo: str, rev: str) -> Response:
        target = self._repo(repo_type, repo)
        if request.flag("create_pr"):
            raise HubError(400, "Pull requests are not supported by this offline Hub server")
        header, operations = self._parse_ndjson(request.body())
        branch = rev.removeprefix("refs/heads/")
        with self.store.lock:
            head_oid = target.refs()["branches"].get(branch)
            if head_oid is None:
                raise HubError(404, f"Invalid rev id: {rev} (commits go to a branch)", "RevisionNotFound")
            head = target.commit(head_oid)
            assert head is not None
            parent = header.get("parentCommit")
            if parent and parent != head_oid:
                raise HubError(412, f"A commit has happened since {parent}; the head of {branch} is {head_oid}")
            files = self._apply(dict(head["files"]), operations)
            summary = str(header.get("summary") or "Upload files")
            commit = target.write_commit(head_oid, summary, str(header.get("description") or ""), files)
            target.set_ref("branches", branch, commit["oid"])
        return Response.json(
            {
                "success": True,
                "commitOid": commit["oid"],
                "commitUrl": f"{self._repo_url(request, target)}/commit/{commit['oid']}",
                "pullRequestUrl": None,
                "hookOutput": "",
            }
        )

    @staticmethod
    def _parse_ndjson(raw: bytes) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
        header: dict[str, Any] = {}
        operations = []
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                key, value = item["key"], item["value"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise HubError(400, f"Invalid commit payload line {number}: {e}") from e
            if not isinstance(value, dict):
                raise HubError(400, f"Invalid commit payload line {number}: value must be an object")
            if key == "header":
                header = value
            else:
                operations.append((key, value))
        return header, operations

    def _apply(self, files: dict[str, Any], operations: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        """Apply commit operations to a copy of the head's file map."""
        for key, value in operations:
            raw = str(value.get("path") or "")
            path = _check_path(raw.rstrip("/") if key == "deletedFolder" else raw)
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"Unsupported encoding {value.get('encoding')!r} for {path}")
                try:
                    content = base64.b64decode(value.get("content") or "", validate=True)
                except ValueError as e:
                    raise HubError(400, f"Invalid base64 content for {path}: {e}") from e
                files[path] = self.store.file_entry(content, lfs=False)
            elif key == "lfsFile":
                files[path] = self._lfs_file(path, value)
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            elif key == "deletedFolder":
                doomed = [p for p in files if p.startswith(f"{path}/")]
                if not doomed:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in doomed:
                    del files[p]
            else:
                raise HubError(400, f"Unsupported commit operation {key!r}")
        self._check_file_folder_clash(files)
        return files

    def _lfs_file(self, path: str, value: dict[str, Any]) -> dict[str, Any]:
        oid = str(value.get("oid"))
        if value.get("algo", "sha256") != "sha256" or not self.store.has_blob(oid):
            raise HubError(400, f"LFS object {oid} for {path} was not uploaded (run the LFS batch + PUT first)")
        size = self.store.blob_path(oid).stat().st_size
        if value.get("size") is not None and value["size"] != size:
            raise HubError(400, f"LFS object {oid} for {path} has size {size}, not {value['size']}")
        return self.store.lfs_entry(oid, size)

    def _check_file_folder_clash(self, files: dict[str, Any]) -> None:
        clash = self._folders(files) & set(files)
        if clash:
            raise HubError(400, f"Paths used both as a file and as a folder: {sorted(clash)}")

    # downloads

    def _resolve(self, request: Request, repo_type: str, repo: str, rev: str, path: str) -> Response:
        target = self._repo(repo_type, repo)
        commit = self._commit_at(target, rev)
        f = commit["files"].get(_check_path(path))
        if f is None:
            headers = {"X-Repo-Commit": commit["oid"]}  # lets the client cache the file's absence
            raise HubError(404, f"Entry not found: {path} at {rev}", "EntryNotFound", headers)
        size = f["size"]
        headers = {
            "X-Repo-Commit": commit["oid"],
            "ETag": f'"{f["sha256"] if f["lfs"] else f["git_oid"]}"',
            "Accept-Ranges": "bytes",
            "Content-Type": mimetypes.guess_type(path)[0] or "application/octet-stream",
            # RFC 5987 form: header values must be latin-1, file names need not be
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
        }
        if f["lfs"]:
            headers.update({"X-Linked-Etag": f'"{f["sha256"]}"', "X-Linked-Size": str(size)})
        blob = self.store.blob_path(f["sha256"])
        byte_range = self._parse_range(request.headers.get("Range"), size)
        if byte_range is None:
            return Response(200, headers, file=blob, start=0, length=size)
        start, end = byte_range
        if start >= size or start > end:
            raise HubError(416, f"Range not satisfiable for {size} bytes", headers={"Content-Range": f"bytes */{size}"})
        end = min(end, size - 1)
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return Response(206, headers, file=blob, start=start, length=end - start + 1)

    @staticmethod
    def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
        """``bytes=a-b``, ``bytes=a-`` or ``bytes=-n``; anything else (e.g. several ranges) serves the whole file."""
        match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header or "")
        if match is None or match.group(1) == match.group(2) == "":
            return None
        first, last = match.groups()
        if first == "":
            return max(size - int(last), 0), size - 1
        return int(first), int(last) if last else size - 1


# --------------------------------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m csg_hub.testing.hub_server",
        description="Serve a file-backed Hugging Face Hub-protocol server for offline tests and demos "
        "(no auth, no Xet, no permissions: never expose it beyond localhost). Point clients at it with "
        "HF_ENDPOINT=<url> HF_HUB_DISABLE_XET=1.",
    )
    parser.add_argument("--root", type=Path, required=True, help="directory holding blobs and repositories")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on, 0 for any free one (default: 8000)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--max-connections",
        type=int,
        default=MAX_CONNECTIONS,
        help=f"connections served at once; more get an immediate 503 (default: {MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=HEADER_TIMEOUT,
        help=f"seconds to receive a request's whole header block (default: {HEADER_TIMEOUT:g})",
    )
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"WARNING: listening on {args.host}: this server has no authentication; anyone who reaches it can "
            "read, overwrite and delete every repo. Use it on localhost only.",
            flush=True,
        )
    server = HubServer(
        args.root,
        host=args.host,
        port=args.port,
        verbose=args.verbose,
        max_connections=args.max_connections,
        header_timeout=args.header_timeout,
    ).start()
    print(f"Hub-protocol server on {server.url} (root: {args.root})", flush=True)
    print(f"  export HF_ENDPOINT={server.url} HF_HUB_DISABLE_XET=1", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
