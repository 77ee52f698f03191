"""scripts/publish_zoo.py against the Hub-protocol server: real model_cards folders pushed byte for byte through
the one push path, a second run committing nothing, a corrupted upload caught by the verification, the zoo
collection, and a published repo loaded by id with pipeline("image-classification") and evaluated on a sample.
Also the server's collection endpoints, through huggingface_hub's own HfApi calls."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import uuid
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from csg_hub.hub.folder_repo import FolderRepo, file_sha256, folder_files, git_blob_sha1
from csg_hub.hub.hub_mixin import push_to_hub

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["resnet18-csg-28px-c32", "resnet18-csg-28px-s16c64"]  # the two smallest zoo folders


def _script():
    spec = importlib.util.spec_from_file_location("publish_zoo", ROOT / "scripts" / "publish_zoo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _org() -> str:
    return f"zoo-{uuid.uuid4().hex[:10]}"


def _run(tmp_path: Path, *argv: str) -> tuple[int, dict]:
    output = tmp_path / f"summary-{uuid.uuid4().hex[:6]}.json"
    rc = _script().main([*argv, "--output", str(output)])
    return rc, json.loads(output.read_text())


def _by_name(summary: dict) -> dict[str, dict]:
    return {r["name"]: r for r in summary["repos"]}


def _server_files(hub_server, repo_id: str) -> dict[str, dict]:
    commit = hub_server.store.existing_repo("model", repo_id).resolve("main")
    return {p: f for p, f in commit["files"].items() if p != ".gitattributes"}


@pytest.fixture(scope="module")
def published(hub_server, tmp_path_factory):
    """Two real zoo folders published once (no evaluation) into a fresh org."""
    org = _org()
    rc, summary = _run(tmp_path_factory.mktemp("publish"), "--org", org, "--only", *SMALL)
    assert rc == 0, summary
    return org, summary


# --------------------------------------------------------------------------------------------------------------------
# FolderRepo and the hashes


def test_folder_repo_copies_every_file_and_hashes_match_git(tmp_path):
    src = tmp_path / "src"
    (src / ".eval_results").mkdir(parents=True)
    (src / "README.md").write_text("card\n")
    (src / ".eval_results" / "x.yaml").write_text("a: 1\n")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref\n")
    assert list(folder_files(src)) == [".eval_results/x.yaml", "README.md"]
    out = tmp_path / "out"
    out.mkdir()
    FolderRepo(src)._save_pretrained(out, "org/name")
    assert {p: b.read_bytes() for p, b in folder_files(out).items()} == {
        ".eval_results/x.yaml": b"a: 1\n",
        "README.md": b"card\n",
    }
    # `git hash-object` of "card\n"
    assert git_blob_sha1(src / "README.md") == "00c3bdd3af760ad499e18bacdee7430e609d143e"
    with pytest.raises(FileNotFoundError):
        FolderRepo(tmp_path / "missing")


# --------------------------------------------------------------------------------------------------------------------
# Publishing


@pytest.mark.slow
@pytest.mark.integration
def test_publish_pushes_every_file_byte_for_byte(published, hub_server):
    org, summary = published
    repos = _by_name(summary)
    assert sorted(repos) == sorted(SMALL) and summary["failed"] == []
    for name in SMALL:
        assert repos[name]["status"] == "published"
        local = folder_files(ROOT / "model_cards" / name)
        remote = _server_files(hub_server, f"{org}/{name}")
        assert sorted(remote) == sorted(local)
        for path, f in remote.items():
            assert hub_server.store.blob_path(f["sha256"]).read_bytes() == local[path].read_bytes(), path
        assert repos[name]["commit"] == HfApi().repo_info(f"{org}/{name}").sha
        assert repos[name]["bytes"] == sum(p.stat().st_size for p in local.values())


@pytest.mark.slow
@pytest.mark.integration
def test_second_run_commits_nothing(published, tmp_path):
    org, first = published
    heads = {name: HfApi().repo_info(f"{org}/{name}").sha for name in SMALL}
    commits = {name: len(HfApi().list_repo_commits(f"{org}/{name}")) for name in SMALL}
    rc, second = _run(tmp_path, "--org", org, "--only", *SMALL)
    assert rc == 0
    for name, entry in _by_name(second).items():
        assert entry["status"] == "unchanged" and entry["changed"] == [] and entry["deleted"] == []
        assert entry["commit"] == heads[name] == _by_name(first)[name]["commit"]
        assert HfApi().repo_info(f"{org}/{name}").sha == heads[name]
        assert len(HfApi().list_repo_commits(f"{org}/{name}")) == commits[name]


@pytest.mark.slow
@pytest.mark.integration
def test_collection_holds_the_published_repos(published, tmp_path):
    org, summary = published
    slug = summary["collection"]["slug"]
    assert slug.startswith(f"{org}/csg-hub-zoo")
    collection = HfApi().get_collection(slug)
    assert collection.title == "csg-hub zoo"
    assert [i.item_id for i in collection.items] == [f"{org}/{name}" for name in SMALL]
    # idempotent: a second run finds the same collection and adds nothing
    rc, again = _run(tmp_path, "--org", org, "--only", *SMALL)
    assert rc == 0 and again["collection"]["slug"] == slug
    assert len(HfApi().get_collection(slug).items) == len(SMALL)


def _unique_folder(tmp_path: Path) -> Path:
    """A copy of a zoo folder with bytes no other test publishes (blobs are shared by content on the server)."""
    folder = tmp_path / "cards" / "unique-model"
    shutil.copytree(ROOT / "model_cards" / SMALL[0], folder)
    with (folder / "README.md").open("a") as f:
        f.write(f"\n<!-- {uuid.uuid4().hex} -->\n")
    (folder / "extra.bin").write_bytes(uuid.uuid4().bytes * 64)  # an LFS file
    return folder


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("corrupted", ["README.md", "extra.bin"])
def test_corrupted_upload_is_reported_not_published(hub_server, tmp_path, corrupted):
    folder = _unique_folder(tmp_path)
    org = _org()
    argv = ["--org", org, "--model-cards", str(folder.parent), "--vae-runs", str(tmp_path / "none")]
    rc, summary = _run(tmp_path, *argv)
    assert rc == 0 and _by_name(summary)["unique-model"]["status"] == "published"
    # one byte changed on the server's disk after the push
    blob = hub_server.store.blob_path(_server_files(hub_server, f"{org}/unique-model")[corrupted]["sha256"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    for mode in ([], ["--verify-only"]):  # a re-run (nothing to push) and a verification alone both catch it
        rc, summary = _run(tmp_path, *argv, *mode)
        entry = _by_name(summary)["unique-model"]
        assert rc == 1 and entry["status"] == "CORRUPT", entry
        assert corrupted in entry["detail"] or "download failed" in entry["detail"]
        assert summary["failed"] == [f"{org}/unique-model"]


@pytest.mark.slow
@pytest.mark.integration
def test_dry_run_pushes_nothing_and_names_the_changes(hub_server, tmp_path):
    folder = _unique_folder(tmp_path)
    org = _org()
    argv = ["--org", org, "--model-cards", str(folder.parent), "--vae-runs", str(tmp_path / "none")]
    rc, summary = _run(tmp_path, *argv, "--dry-run")
    entry = _by_name(summary)["unique-model"]
    assert rc == 0 and entry["status"] == "would push" and sorted(entry["changed"]) == sorted(folder_files(folder))
    assert not hub_server.store.repo("model", f"{org}/unique-model").exists()
    # after a push, a removed file and a changed one are what a dry run reports; the push then deletes the file
    assert _run(tmp_path, *argv)[0] == 0
    (folder / "extra.bin").unlink()
    (folder / "config.json").write_text((folder / "config.json").read_text() + "\n")
    rc, summary = _run(tmp_path, *argv, "--dry-run")
    entry = _by_name(summary)["unique-model"]
    assert (entry["changed"], entry["deleted"]) == (["config.json"], ["extra.bin"])
    rc, summary = _run(tmp_path, *argv)
    assert rc == 0 and _by_name(summary)["unique-model"]["status"] == "published"
    assert sorted(_server_files(hub_server, f"{org}/unique-model")) == sorted(folder_files(folder))


def test_vae_folders_without_weights_are_skipped_not_faked(tmp_path):
    entries = {e.name: e for e in _script().zoo_entries(ROOT / "model_cards", ROOT / "runs" / "vae")}
    assert len([e for e in entries.values() if e.kind == "model"]) == len(list((ROOT / "model_cards").iterdir()))
    for run in ("resnet18-csg", "resnet18-dense"):
        decoder = entries[f"{run}-vae-decoder"]
        if not list((ROOT / "runs" / "vae" / run / "decoder").glob("*.safetensors")):
            assert decoder.status == "skipped" and "weights not in the checkout" in decoder.detail
        assert entries[f"{run}-latents"].status == "skipped"  # its config names a local decoder path


def test_only_rejects_unknown_names():
    with pytest.raises(SystemExit, match="no zoo folder named"):
        _script().main(["--org", "x", "--only", "no-such-model", "--dry-run"])


@pytest.mark.slow
@pytest.mark.integration
def test_published_repo_loads_by_id_and_reproduces_on_a_sample(hub_server, tmp_path):
    from transformers import pipeline

    from csg_hub.data import fashion_mnist_dataset_dict

    dataset = tmp_path / "fashion_mnist"
    fashion_mnist_dataset_dict(limit=16).save_to_disk(str(dataset))
    org, name = _org(), SMALL[0]
    rc, summary = _run(tmp_path, "--org", org, "--only", name, "--eval-samples", "16", "--dataset", str(dataset))
    entry = _by_name(summary)[name]
    assert rc == 0 and entry["status"] == "published", entry
    assert entry["eval_samples"] == 16 and entry["pipeline_disagreements"] == 0
    assert entry["eval_top1"] == entry["pipeline_top1"] and entry["card_top1"] == pytest.approx(89.62)
    import datasets

    image = datasets.load_from_disk(str(dataset))["test"][0]["image"]
    classifier = pipeline("image-classification", model=f"{org}/{name}", revision=entry["commit"])
    assert classifier(image)[0]["label"] in classifier.model.config.id2label.values()


# --------------------------------------------------------------------------------------------------------------------
# The server's collections, through HfApi


@pytest.mark.slow
@pytest.mark.integration
def test_server_collections_through_hfapi(hub_server):
    api, org = HfApi(), _org()
    push_to_hub(_TinyArtifact(), f"{org}/a")
    created = api.create_collection("My zoo", namespace=org, description="d")
    assert created.slug.startswith(f"{org}/my-zoo-") and created.items == []
    again = api.create_collection("My zoo", namespace=org, exists_ok=True)
    assert again.slug == created.slug
    with pytest.raises(HfHubHTTPError) as e:
        api.create_collection("My zoo", namespace=org)
    assert e.value.response.status_code == 409
    api.add_collection_item(created.slug, f"{org}/a", "model", note="first")
    collection = api.add_collection_item(created.slug, f"{org}/a", "model", exists_ok=True)
    assert [(i.item_id, i.item_type, i.position, i.note) for i in collection.items] == [
        (f"{org}/a", "model", 0, "first")
    ]
    with pytest.raises(HfHubHTTPError) as e:
        api.add_collection_item(created.slug, f"{org}/missing", "model")
    assert e.value.response.status_code == 404
    assert [c.slug for c in api.list_collections(owner=org)] == [created.slug]
    assert [c.slug for c in api.list_collections(item=f"models/{org}/a")] == [created.slug]
    api.delete_collection_item(created.slug, collection.items[0].item_object_id)
    assert api.get_collection(created.slug).items == []
    api.delete_collection(created.slug)
    with pytest.raises(HfHubHTTPError) as e:
        api.get_collection(created.slug)
    assert e.value.response.status_code == 404
    api.delete_collection(created.slug, missing_ok=True)


class _TinyArtifact:
    default_commit_message = "tiny"

    def _save_pretrained(self, save_directory: Path, repo_id: str) -> None:
        (Path(save_directory) / "README.md").write_text(f"# {repo_id}\n")


def test_file_sha256_matches_hashlib(tmp_path):
    import hashlib

    path = tmp_path / "f"
    path.write_bytes(b"x" * 3_000_000)
    assert file_sha256(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
