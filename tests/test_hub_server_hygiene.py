"""The offline Hub-protocol server's connection hygiene: request framing, the header deadline, the connection limit
and the repo paths it refuses (issue 31, part 5). Raw sockets where the HTTP clients would hide the behaviour."""

from __future__ import annotations

import asyncio
import base64
import json
import select
import socket
import time
import uuid
from collections import Counter
from urllib.parse import quote

import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import HfHubHTTPError

from csg_hub.testing.hub_server import HubServer

HEADER_TIMEOUT = 0.4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server of this module's own, with a short header deadline."""
    with HubServer(tmp_path_factory.mktemp("hygiene-hub"), header_timeout=HEADER_TIMEOUT) as hub:
        yield hub


@pytest.fixture(scope="module")
def repo_id(server) -> str:
    repo_id = f"hygiene/repo-{uuid.uuid4().hex[:8]}"
    HfApi(endpoint=server.url).create_repo(repo_id)
    return repo_id


def _connect(server: HubServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def _read_until_closed(sock: socket.socket, timeout: float = 3.0) -> tuple[bytes, bool]:
    """Everything the server sends; ``closed`` is False when it was still open after ``timeout`` seconds."""
    data, end = b"", time.monotonic() + timeout
    while True:
        sock.settimeout(max(end - time.monotonic(), 0.001))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data, False
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk


def _split(data: bytes) -> tuple[list[tuple[int, dict[str, str], bytes]], bytes]:
    """The complete HTTP responses at the start of a byte stream (each framed by its Content-Length), and the rest."""
    responses = []
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return responses, data
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        length = int(headers.get("content-length", "0"))
        if len(rest) < length:
            return responses, data
        responses.append((int(status_line.split()[1]), headers, rest[:length]))
        data = rest[length:]


def _one_response(sock: socket.socket) -> int:
    """Read one whole response off a kept-alive connection; its status."""
    data = b""
    sock.settimeout(3)
    while not _split(data)[0]:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    (response,), rest = _split(data)
    assert not rest
    return response[0]


def _responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    responses, rest = _split(data)
    assert not rest, f"truncated response: {rest[:200]!r}"
    return responses


def _exchange(server: HubServer, raw: bytes, expect: int) -> tuple[list[tuple[int, dict[str, str], bytes]], bool]:
    """Send raw bytes on a new connection; the responses and whether the server closed the connection.

    Reads until the server closes, or (if it keeps the connection) until ``expect`` responses are in and nothing
    more arrives for a moment: a further response, or a close, would still be seen.
    """
    data, end = b"", time.monotonic() + 3
    with _connect(server) as sock:
        sock.sendall(raw)
        while time.monotonic() < end:
            complete, rest = _split(data)
            quiet = len(complete) >= expect and not rest
            sock.settimeout(0.2 if quiet else max(end - time.monotonic(), 0.001))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if quiet:
                    return complete, False
                break
            except ConnectionResetError:
                return _responses(data), True
            if not chunk:
                return _responses(data), True
            data += chunk
    return _responses(data), False


SECOND = b"GET /api/whoami-v2 HTTP/1.1\r\nHost: x\r\n\r\n"  # what a smuggled request looks like


def _post(headers: bytes, body: bytes) -> bytes:
    return b"POST /api/validate-yaml HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n" + body


# --------------------------------------------------------------------------------------------------------------------
# framing (RFC 9112 section 6)


@pytest.mark.parametrize(
    "headers, body, status",
    [
        # both framings: a TE-first parser reads an empty chunked body and then the "second request" smuggled in it
        (b"Content-Length: 47\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SECOND, 400),
        (b"Transfer-Encoding: chunked\r\nContent-Length: 47\r\n", b"0\r\n\r\n" + SECOND, 400),
        (b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SECOND, 400),
        # differing Content-Lengths, as two fields or one list: a parser picking the first sees SECOND as a request
        (b"Content-Length: 2\r\nContent-Length: 43\r\n", b"{}" + SECOND, 400),
        (b"Content-Length: 2, 43\r\n", b"{}" + SECOND, 400),
        # unreadable Content-Length
        (b"Content-Length: -1\r\n", b"{}" + SECOND, 400),
        (b"Content-Length: +2\r\n", b"{}" + SECOND, 400),
        (b"Content-Length: 2x\r\n", b"{}" + SECOND, 400),
        (b"Content-Length: \r\n", SECOND, 400),
        # transfer codings: chunked must be the final (and only) one; anything else is not implemented here
        (b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n" + SECOND, 501),
        (b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SECOND, 501),
        (b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n" + SECOND, 400),
        (b"Transfer-Encoding: gzip\r\n", b"0\r\n\r\n" + SECOND, 400),
        (b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n" + SECOND, 400),
        (b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n" + SECOND, 400),
        # a space before the colon: the header parser would drop the field silently and frame by Content-Length
        (b"Content-Length: 5\r\nTransfer-Encoding : chunked\r\n", b"0\r\n\r\n" + SECOND, 400),
        # a broken chunked body: the stream has no request boundary any more
        (b"Transfer-Encoding: chunked\r\n", b"zz\r\n{}\r\n0\r\n\r\n" + SECOND, 400),
        (b"Transfer-Encoding: chunked\r\n", b"2\r\n{}XX0\r\n\r\n" + SECOND, 400),
    ],
    ids=[
        "cl-then-te",
        "te-then-cl",
        "cl0-and-te",
        "two-differing-cl",
        "cl-list-differs",
        "cl-negative",
        "cl-plus-sign",
        "cl-not-a-number",
        "cl-empty",
        "te-gzip-chunked",
        "te-two-fields",
        "te-chunked-not-final",
        "te-gzip-only",
        "te-chunked-twice",
        "te-unknown",
        "te-space-before-colon",
        "chunk-size-not-hex",
        "chunk-without-crlf",
    ],
)
def test_ambiguous_framing_gets_one_answer_and_a_closed_connection(server, headers, body, status):
    responses, closed = _exchange(server, _post(headers, body), 1)
    assert [r[0] for r in responses] == [status], responses  # exactly one answer: SECOND is never served
    assert responses[0][1]["connection"] == "close"
    assert closed


def test_http10_request_with_transfer_encoding_is_refused(server):
    raw = b"POST /api/validate-yaml HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SECOND
    responses, closed = _exchange(server, raw, 1)
    assert [r[0] for r in responses] == [400] and closed


def test_identical_duplicate_content_lengths_are_one_length(server):
    """RFC 9110 section 8.6 lets a recipient read ``N, N`` (or two equal fields) as N; the connection stays open."""
    raw = _post(b"Content-Length: 2, 2\r\nContent-Length: 2\r\n", b"{}") + SECOND
    responses, closed = _exchange(server, raw, 2)
    assert [r[0] for r in responses] == [200, 200] and not closed


def test_chunked_bodies_still_work_with_keep_alive(server):
    content = json.dumps({"content": "---\nlicense: mit\n---\n"}).encode()
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(part), part) for part in (content[:5], content[5:])) + b"0\r\n"
    raw = _post(b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n", body + b"X-Trailer: 1\r\n\r\n")
    responses, closed = _exchange(server, raw + SECOND, 2)
    assert [r[0] for r in responses] == [200, 200] and not closed
    assert json.loads(responses[0][2]) == {"errors": [], "warnings": []}


def test_json_body_over_the_limit_closes_the_connection(tmp_path):
    with HubServer(tmp_path, max_json_bytes=10) as hub:
        body = b'{"content": "' + b"x" * 100 + b'"}'
        responses, closed = _exchange(hub, _post(b"Content-Length: %d\r\n" % len(body), body) + SECOND, 1)
    assert [r[0] for r in responses] == [413] and closed


# --------------------------------------------------------------------------------------------------------------------
# the whole-header deadline


def test_trickled_headers_are_cut_off_at_the_header_deadline(server):
    with _connect(server) as sock:
        start = time.monotonic()
        sock.sendall(b"GET /api/whoami-v2 HTTP/1.1\r\n")
        data = b""
        # one header byte every 50 ms: each read is far inside the idle timeout, the whole block never ends
        for byte in b"X-Slow: " + b"a" * 200:
            try:
                sock.send(bytes([byte]))
            except OSError:
                break
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                data, _ = _read_until_closed(sock, timeout=1.0)
                break
        elapsed = time.monotonic() - start
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert HEADER_TIMEOUT * 0.9 <= elapsed < HEADER_TIMEOUT + 1.0


def test_the_header_deadline_does_not_cut_idle_keep_alive_connections(server):
    """Between requests the idle timeout applies (pooled connections wait), not the header deadline."""
    with _connect(server) as sock:
        sock.sendall(SECOND)
        assert _one_response(sock) == 200
        time.sleep(HEADER_TIMEOUT * 1.5)
        sock.sendall(SECOND)
        assert _one_response(sock) == 200


# --------------------------------------------------------------------------------------------------------------------
# the connection limit


def test_connections_past_the_limit_get_503_and_a_freed_slot_is_reused(tmp_path):
    with HubServer(tmp_path, max_connections=4) as hub:
        idle = [_connect(hub) for _ in range(4)]
        try:
            with _connect(hub) as extra:
                extra.sendall(SECOND)
                data, closed = _read_until_closed(extra)
            ((status, headers, body),) = _responses(data)
            assert status == 503 and closed
            assert headers["connection"] == "close" and headers["retry-after"] == "1"
            assert "busy" in json.loads(body)["error"]
            # the four held connections are still served
            idle[0].sendall(SECOND)
            assert _one_response(idle[0]) == 200
            # closing one frees its slot (once the server has seen the close)
            idle.pop().close()
            deadline, status = time.monotonic() + 3, 503
            while status == 503 and time.monotonic() < deadline:
                with _connect(hub) as again:
                    again.sendall(SECOND)
                    status = _one_response(again)
            assert status == 200
        finally:
            for sock in idle:
                sock.close()


async def _one_keep_alive_request(port: int, outcomes: Counter, release: asyncio.Event) -> None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    except (OSError, asyncio.TimeoutError) as e:
        outcomes[f"connect failed: {type(e).__name__}"] += 1
        return
    try:
        writer.write(SECOND)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        outcomes[line.split()[1].decode() if line else "closed without an answer"] += 1
        await release.wait()  # keep the connection open (keep-alive) until every one has its answer
    except asyncio.TimeoutError:
        outcomes["no answer"] += 1
    except OSError as e:
        outcomes[f"reset: {type(e).__name__}"] += 1
    finally:
        writer.close()


async def _burst(port: int, n: int) -> Counter:
    outcomes: Counter = Counter()
    release = asyncio.Event()
    tasks = [asyncio.create_task(_one_keep_alive_request(port, outcomes, release)) for _ in range(n)]
    deadline = time.monotonic() + 20
    while sum(outcomes.values()) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    release.set()
    await asyncio.gather(*tasks)
    return outcomes


@pytest.mark.slow
def test_a_thousand_concurrent_keep_alive_connections_are_all_answered(tmp_path):
    """Served up to ``max_connections``, 503 past it: none reset, none left without an answer."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2200:  # both ends of 1000 connections live in this process
        if hard != resource.RLIM_INFINITY and hard < 2200:
            pytest.skip(f"needs 2200 open files, the limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (2200, hard))
    with HubServer(tmp_path) as hub:
        outcomes = asyncio.run(_burst(hub.port, 1000))
    assert outcomes == {"200": hub.max_connections, "503": 1000 - hub.max_connections}, outcomes


# --------------------------------------------------------------------------------------------------------------------
# repo paths

# every one refused by the server; those marked client=True the huggingface_hub client itself lets through
BAD_PATHS = {
    "a/.git/hooks/x": False,
    ".git/config": False,
    "a/.GIT/hooks/x": True,
    "a/.Git/config": True,
    "a/.git./x": True,
    "..\\..\\x": True,
    "a\\b.txt": True,
    "a\x00b": True,
    "a\nb": True,
    "a\x7fb": True,
    "/abs/x": False,  # the client strips the leading "/"
    "a/../b": False,
    "../x": False,
    "a/./b": True,
    "./a": False,  # the client strips the leading "./"
    "a//b": True,
    "a/": True,
    ".": False,
    "": True,
}
CLIENT_PASSES = [p for p, passes in BAD_PATHS.items() if passes]


def _ndjson(*operations: tuple[str, dict]) -> bytes:
    lines = [{"key": "header", "value": {"summary": "bad path"}}] + [{"key": k, "value": v} for k, v in operations]
    return b"\n".join(json.dumps(line).encode() for line in lines)


def _http(server: HubServer, method: str, path: str, body: bytes = b"", content_type: str = "application/json"):
    """One request on a fresh connection: (status, parsed JSON body or None)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    with _connect(server) as sock:
        sock.sendall(head.encode() + b"Connection: close\r\n\r\n" + body)
        data, _ = _read_until_closed(sock)
    ((status, headers, payload),) = _responses(data)
    return status, json.loads(payload) if "json" in headers.get("content-type", "") else payload


@pytest.mark.parametrize("bad", list(BAD_PATHS), ids=[repr(p) for p in BAD_PATHS])
def test_bad_paths_are_refused_at_the_http_level(server, repo_id, bad):
    api = f"/api/models/{repo_id}"
    content = base64.b64encode(b"hello").decode()
    oid = HfApi(endpoint=server.url).model_info(repo_id, files_metadata=True).sha
    requests = [
        ("POST", f"{api}/commit/main", _ndjson(("file", {"path": bad, "content": content, "encoding": "base64"}))),
        ("POST", f"{api}/commit/main", _ndjson(("lfsFile", {"path": bad, "algo": "sha256", "oid": "0" * 64}))),
        ("POST", f"{api}/commit/main", _ndjson(("deletedFile", {"path": bad}))),
        ("POST", f"{api}/preupload/main", json.dumps({"files": [{"path": bad, "size": 5, "sample": content}]})),
    ]
    if bad == bad.rstrip("/"):  # a folder delete strips trailing slashes ("a/" is folder "a")
        requests.append(("POST", f"{api}/commit/main", _ndjson(("deletedFolder", {"path": bad}))))
    if bad:  # reads (an empty path has no resolve route, and is the root of a tree)
        requests.append(("GET", f"/{repo_id}/resolve/main/{quote(bad)}", b""))
        if bad == bad.strip("/"):  # tree and paths-info ignore leading and trailing slashes
            requests.append(("GET", f"{api}/tree/main/{quote(bad)}", b""))
            requests.append(("POST", f"{api}/paths-info/main", json.dumps({"paths": [bad]})))
    for method, url, body in requests:
        status, answer = _http(server, method, url, body.encode() if isinstance(body, str) else body)
        assert status == 400, (method, url, answer)
        assert "Invalid path in repository" in answer["error"] and repr(bad) in answer["error"]
    assert HfApi(endpoint=server.url).model_info(repo_id).sha == oid  # nothing was committed


@pytest.mark.parametrize("bad", CLIENT_PASSES, ids=[repr(p) for p in CLIENT_PASSES])
def test_bad_paths_are_refused_through_hf_api(server, repo_id, bad):
    api = HfApi(endpoint=server.url)
    before = api.model_info(repo_id).sha
    with pytest.raises(HfHubHTTPError) as info:
        api.upload_file(path_or_fileobj=b"hello", path_in_repo=bad, repo_id=repo_id)
    assert info.value.response.status_code == 400 and "Invalid path in repository" in str(info.value)
    with pytest.raises(HfHubHTTPError) as info:
        api.create_commit(repo_id, [CommitOperationAdd(bad, b"hello")], commit_message="bad path")
    assert info.value.response.status_code == 400
    if not bad.endswith("/"):  # "a/" would be a folder delete of "a"
        with pytest.raises(HfHubHTTPError) as info:
            api.create_commit(repo_id, [CommitOperationDelete(bad)], commit_message="bad delete")
        assert info.value.response.status_code == 400 and "Invalid path in repository" in str(info.value)
    assert api.model_info(repo_id).sha == before


def test_unusual_but_valid_paths_are_accepted(server, repo_id):
    api = HfApi(endpoint=server.url)
    paths = [".github/workflows/ci.yml", "a/.gitkeep", "a/.gitignore", "dir/with space.txt", "données/é.txt", "..a"]
    api.create_commit(repo_id, [CommitOperationAdd(p, p.encode()) for p in paths], commit_message="fine")
    assert set(paths) <= set(api.list_repo_files(repo_id))
    assert _http(server, "GET", f"/{repo_id}/resolve/main/{quote('données/é.txt')}") == (200, "données/é.txt".encode())
