"""The offline Hub-protocol server, driven by the real huggingface_hub and datasets clients."""

import hashlib
import json
import os
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from csg_hub.testing.hub_server import HubServer

pytestmark = pytest.mark.slow  # Hub-protocol round trips

README = "---\nlicense: apache-2.0\ntags:\n- csg\nlibrary_name: timm\n---\n# A test model\n"
WEIGHTS = bytes(range(256)) * 64  # 16 KiB of binary: a .safetensors path goes through LFS whatever its size
WEIGHTS_PATH = "weights/model.safetensors"


def _repo_id() -> str:
    return f"test-org/repo-{uuid.uuid4().hex[:8]}"


def _request(url: str, method: str = "GET", data: bytes | None = None, headers: dict | None = None):
    """A raw HTTP call; returns (status, headers, body) for errors too."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@pytest.fixture
def api(hub_server) -> HfApi:
    return HfApi()


@pytest.fixture
def model_repo(api, tmp_path) -> tuple[str, str]:
    """A model repo with a text file, a card, and an LFS weights file in a subfolder; returns (repo_id, commit)."""
    repo_id = _repo_id()
    api.create_repo(repo_id)
    folder = tmp_path / "upload"
    (folder / "weights").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"hidden": 8}))
    (folder / "README.md").write_text(README)
    (folder / "weights" / "model.safetensors").write_bytes(WEIGHTS)
    commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="first upload")
    return repo_id, commit.oid


def test_create_repo_conflicts_unless_exist_ok(api):
    repo_id = _repo_id()
    url = api.create_repo(repo_id)
    assert url.repo_id == repo_id
    with pytest.raises(HfHubHTTPError) as info:
        api.create_repo(repo_id)
    assert info.value.response.status_code == 409
    assert api.create_repo(repo_id, exist_ok=True).repo_id == repo_id
    # a fresh repo already has a commit (with .gitattributes), so it has a sha
    assert len(api.model_info(repo_id).sha) == 40
    assert api.list_repo_files(repo_id) == [".gitattributes"]


def test_upload_and_download(api, model_repo, tmp_path):
    repo_id, _ = model_repo
    path = hf_hub_download(repo_id, "weights/model.safetensors")
    assert Path(path).read_bytes() == WEIGHTS
    assert json.loads(Path(hf_hub_download(repo_id, "config.json")).read_text()) == {"hidden": 8}
    assert api.file_exists(repo_id, "README.md")
    assert not api.file_exists(repo_id, "missing.txt")
    assert sorted(api.list_repo_files(repo_id)) == [".gitattributes", "README.md", "config.json", WEIGHTS_PATH]

    info = api.model_info(repo_id, files_metadata=True)
    siblings = {s.rfilename: s for s in info.siblings}
    assert siblings[WEIGHTS_PATH].lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    assert siblings[WEIGHTS_PATH].size == len(WEIGHTS)
    assert siblings["config.json"].lfs is None
    assert info.card_data.license == "apache-2.0" and info.tags == ["csg"] and info.library_name == "timm"

    snapshot = Path(snapshot_download(repo_id, local_dir=tmp_path / "snapshot"))
    assert (snapshot / WEIGHTS_PATH).read_bytes() == WEIGHTS
    assert (snapshot / "README.md").read_text() == README


def test_download_by_commit_sha_returns_older_content(api, model_repo):
    repo_id, first = model_repo
    second = api.upload_file(path_or_fileobj=b'{"hidden": 16}', path_in_repo="config.json", repo_id=repo_id)
    assert second.oid != first
    assert json.loads(Path(hf_hub_download(repo_id, "config.json")).read_text()) == {"hidden": 16}
    assert json.loads(Path(hf_hub_download(repo_id, "config.json", revision=first)).read_text()) == {"hidden": 8}
    commits = api.list_repo_commits(repo_id)
    assert [c.commit_id for c in commits[:2]] == [second.oid, first]
    assert api.list_repo_refs(repo_id).branches[0].target_commit == second.oid


def test_paths_info_tree_and_delete(api, model_repo):
    repo_id, _ = model_repo
    infos = {i.path: i for i in api.get_paths_info(repo_id, ["config.json", "weights", "nope.txt"])}
    assert set(infos) == {"config.json", "weights"}
    assert infos["config.json"].size == len(json.dumps({"hidden": 8}))
    assert type(infos["weights"]).__name__ == "RepoFolder"

    top = {e.path: type(e).__name__ for e in api.list_repo_tree(repo_id)}
    assert top == {
        ".gitattributes": "RepoFile",
        "README.md": "RepoFile",
        "config.json": "RepoFile",
        "weights": "RepoFolder",
    }
    (weights,) = api.list_repo_tree(repo_id, path_in_repo="weights")
    assert weights.path == WEIGHTS_PATH and weights.lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()

    api.delete_file("config.json", repo_id)
    assert not api.file_exists(repo_id, "config.json")
    with pytest.raises(EntryNotFoundError):
        api.delete_file("config.json", repo_id)


def test_client_errors_map_to_hub_exceptions(api, model_repo):
    repo_id, _ = model_repo
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(_repo_id(), "config.json")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(_repo_id())
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, "config.json", revision="no-such-branch")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "missing.txt")
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(repo_id, path_in_repo="no-such-folder"))


def test_invalid_card_metadata_is_rejected(api):
    repo_id = _repo_id()
    api.create_repo(repo_id)
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        api.upload_file(path_or_fileobj=b"---\nlicense: [unclosed\n---\n", path_in_repo="README.md", repo_id=repo_id)


def test_injected_failures(api, hub_server, model_repo):
    repo_id, _ = model_repo
    # model_info makes a single request (no retry), so one injected 500 surfaces as an HfHubHTTPError
    hub_server.fail_requests(500, count=1, path_contains=f"/api/models/{repo_id}")
    with pytest.raises(HfHubHTTPError) as info:
        api.model_info(repo_id)
    assert info.value.response.status_code == 500
    assert api.model_info(repo_id).id == repo_id  # the injection is used up
    # hf_hub_download retries a 5xx HEAD when it has no cached copy, so a single failure is absorbed
    hub_server.fail_requests(500, count=1, path_contains="/resolve/")
    assert Path(hf_hub_download(repo_id, "README.md")).read_text() == README
    hub_server.fail_requests(500, count=3)
    hub_server.fail_requests(count=0)  # cancels pending injections
    assert api.model_info(repo_id).id == repo_id
    # LFS PUTs are retried on 5xx (http_backoff, 1 s backoff): a transient failure is absorbed
    # (fresh bytes: a blob the server already holds is never PUT, and the injection would linger)
    payload = os.urandom(100)
    hub_server.fail_requests(503, count=1, path_contains="/lfs-objects/")
    try:
        api.upload_file(path_or_fileobj=payload, path_in_repo="retried.bin", repo_id=repo_id)
    finally:
        hub_server.fail_requests(count=0)
    assert Path(hf_hub_download(repo_id, "retried.bin")).read_bytes() == payload


def test_lfs_put_with_wrong_sha_is_rejected(hub_server):
    data = b"some bytes"
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    status, _, body = _request(f"{hub_server.url}/lfs-objects/{wrong}/{len(data)}", "PUT", data)
    assert status == 400 and "sha256" in json.loads(body)["error"]
    right = hashlib.sha256(data).hexdigest()
    assert _request(f"{hub_server.url}/lfs-objects/{right}/{len(data) + 1}", "PUT", data)[0] == 400
    assert _request(f"{hub_server.url}/lfs-objects/{right}/{len(data)}", "PUT", data)[0] == 200


def test_range_request_and_headers(hub_server, model_repo):
    repo_id, commit = model_repo
    url = f"{hub_server.url}/{repo_id}/resolve/main/{WEIGHTS_PATH}"
    status, headers, body = _request(url, headers={"Range": "bytes=10-19"})
    assert status == 206 and body == WEIGHTS[10:20]
    assert headers["Content-Range"] == f"bytes 10-19/{len(WEIGHTS)}"
    status, headers, _ = _request(url, "HEAD")
    assert status == 200 and headers["X-Repo-Commit"] == commit
    assert headers["X-Linked-Etag"] == f'"{hashlib.sha256(WEIGHTS).hexdigest()}"'
    assert headers["X-Linked-Size"] == str(len(WEIGHTS)) and "X-Xet-Hash" not in headers
    status, headers, _ = _request(f"{hub_server.url}/{repo_id}/resolve/main/missing.txt", "HEAD")
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound"
    assert _request(url, headers={"Range": f"bytes={len(WEIGHTS)}-"})[0] == 416


def test_data_survives_a_restart(tmp_path):
    root = tmp_path / "hub"
    repo_id = _repo_id()
    with HubServer(root) as first:
        api = HfApi(endpoint=first.url)
        api.create_repo(repo_id)
        commit = api.upload_file(path_or_fileobj=WEIGHTS, path_in_repo="w.bin", repo_id=repo_id).oid
    with HubServer(root) as second:
        status, headers, body = _request(f"{second.url}/{repo_id}/resolve/{commit}/w.bin")
        assert status == 200 and body == WEIGHTS and headers["X-Repo-Commit"] == commit
        info = json.loads(_request(f"{second.url}/api/models/{repo_id}")[2])
        assert info["sha"] == commit and {s["rfilename"] for s in info["siblings"]} == {".gitattributes", "w.bin"}


@pytest.mark.integration
def test_datasets_round_trip(hub_server):
    import datasets
    import numpy as np
    from PIL import Image as PILImage

    repo_id = _repo_id()
    rng = np.random.default_rng(0)
    images = [PILImage.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)) for _ in range(6)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])})
    labels = [0, 1, 1, 0, 1, 0]
    datasets.Dataset.from_dict({"image": images, "label": labels}, features=features).push_to_hub(repo_id)

    loaded = datasets.load_dataset(repo_id, split="train")
    assert loaded["label"] == labels
    assert loaded.features["label"].names == ["cat", "dog"]
    for original, image in zip(images, loaded["image"]):
        assert np.array_equal(np.asarray(original), np.asarray(image))
    with pytest.raises(ValueError, match="nope"):
        datasets.load_dataset(repo_id, split="nope")
