"""The bad-input matrix: every input a careful user or an attacker might hand csg-hub gets a clear error
that names the problem (or the right result), never a silently wrong model or number.

Each case is a function that feeds one bad input; the matrix asserts the error class and a phrase of its
message. README "Reliability" lists the families and their counts.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from helpers import make_config
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    StrictDataclassClassValidationError,
    StrictDataclassFieldValidationError,
)
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

import csg_hub
from csg_hub import vae as weight_vae
from csg_hub.data import classification_loader, image_transform, load_image_dataset, to_mode
from csg_hub.evaluation import pipeline_predictions
from csg_hub.hub import model_card
from csg_hub.integrity import write_safetensors
from csg_hub.testing.hub_server import HubServer
from csg_hub.training import TrainingArguments, paper_optimizer, warmup_cosine
from csg_hub.training.checkpoints import load_checkpoint as _load_checkpoint
from csg_hub.training.checkpoints import save_checkpoint as _save_checkpoint

TINY_VAE = csg_hub.WeightVAEConfig(chunk_size=256, latent_dim=8, encoder_hidden=(32,), decoder_hidden=(32,))
FAST = csg_hub.VAETrainingConfig(copies=4, epochs=1, refine_steps=2)
FIELD, CLASS = StrictDataclassFieldValidationError, StrictDataclassClassValidationError


class ServerAnswer(Exception):
    """An HTTP error status from the test server, as an exception the matrix can match."""


# --- shared material (built once) -----------------------------------------------------------------


@pytest.fixture(scope="module")
def material(tmp_path_factory, hub_server):
    root = tmp_path_factory.mktemp("bad-inputs")
    torch.manual_seed(0)
    model = csg_hub.CSGForImageClassification(make_config()).eval()
    model.save_pretrained(root / "model")
    int8 = csg_hub.CSGForImageClassification(make_config(storage_dtype="int8")).eval()
    int8.save_pretrained(root / "int8")
    artifact = weight_vae.compress(model, "csg", vae_config=TINY_VAE, training=FAST, progress=False)
    weight_vae.save_decoder(artifact.vae, root / "vae/decoder")
    weight_vae.save_latents(artifact, root / "vae/latents", {"path": "../decoder"})
    other = csg_hub.WeightVAE(TINY_VAE)  # same VAE config, other weights
    weight_vae.save_decoder(other, root / "vae/other-decoder")
    repo_id = f"csg-bad/model-{uuid.uuid4().hex[:8]}"
    model.push_to_hub(repo_id)
    return {"root": root, "model": model, "artifact": artifact, "other_vae": other, "repo_id": repo_id,
            "server": hub_server}  # fmt: skip


def _copy(material, name: str, tmp: Path) -> Path:
    target = tmp / name.replace("/", "-")
    shutil.copytree(material["root"] / name, target)
    return target


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        data[key] = value
    path.write_text(json.dumps(data))


def _flip_byte(path: Path, offset_from_end: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def _load(folder: Path):
    return AutoModelForImageClassification.from_pretrained(folder)


# --- config ---------------------------------------------------------------------------------------


def _config(**overrides) -> Callable:
    return lambda material, tmp: make_config(**overrides)


CONFIG_CASES = {
    "include is a string": (_config(include="layer4.*"), FIELD, "include.*expected a list"),
    "exclude is a string": (_config(exclude="fc"), FIELD, "exclude.*expected a list"),
    "include holds a number": (_config(include=["layer4.*", 1]), FIELD, "include.*index 1"),
    "code_dim is a string": (_config(code_dim="72"), FIELD, "code_dim.*expected int, got str"),
    "code_dim is a bool": (_config(code_dim=True), FIELD, "code_dim.*expected int, got bool"),
    "in_chans is a float": (_config(in_chans=1.5), FIELD, "in_chans.*expected int, got float"),
    "architecture is a number": (_config(architecture=123), FIELD, "architecture.*expected str"),
    "generate_pointwise is a string": (_config(generate_pointwise="yes"), FIELD, "generate_pointwise.*expected bool"),
    "image_mean is a number": (_config(image_mean=0.5), FIELD, "image_mean.*expected a list"),
    "model_args is a list": (_config(model_args=[1]), FIELD, "model_args.*expected a dict"),
    "slice_size is zero": (_config(slice_size=0), CLASS, "slice_size must be a positive integer"),
    "image_std is zero": (_config(image_std=[0.0]), CLASS, "image_std must be positive"),
    "image_mean per channel": (_config(image_mean=[0.1, 0.2]), CLASS, "image_mean has 2 values but in_chans is 1"),
    "unknown architecture": (_config(architecture="resnet181"), CLASS, "Unknown timm architecture 'resnet181'"),
    "unknown activation": (_config(generator_activation="nope"), CLASS, "generator_activation 'nope' is unknown"),
}


# --- loading a checkpoint -------------------------------------------------------------------------


def _another_architecture(material, tmp):
    folder = tmp / "resnet34"
    csg_hub.CSGForImageClassification(make_config("resnet34")).save_pretrained(folder)
    _edit_json(folder / "config.json", architecture="resnet18")
    return _load(folder)


def _another_policy(material, tmp):
    folder = _copy(material, "model", tmp)
    _edit_json(folder / "config.json", generate_pointwise=True)
    return _load(folder)


def _another_code_dim(material, tmp):
    folder = _copy(material, "model", tmp)
    _edit_json(folder / "config.json", code_dim=64)
    return _load(folder)


def _integer_tensor(material, tmp):
    folder = _copy(material, "model", tmp)
    tensors = load_file(folder / "model.safetensors")
    tensors["timm_model.fc.bias"] = tensors["timm_model.fc.bias"].to(torch.int64)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return _load(folder)


def _flipped_bytes(material, tmp):
    folder = _copy(material, "model", tmp)
    _flip_byte(folder / "model.safetensors")
    return _load(folder)


def _truncated(material, tmp):
    folder = _copy(material, "model", tmp)
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    return _load(folder)


def _trailing_bytes(material, tmp):
    folder = _copy(material, "model", tmp)
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes() + b"\0" * 64)
    return _load(folder)


def _garbage_file(material, tmp):
    folder = _copy(material, "model", tmp)
    (folder / "model.safetensors").write_bytes(b"\xff" * 64)
    return _load(folder)


def _pickle_only(material, tmp):
    folder = _copy(material, "model", tmp)
    (folder / "model.safetensors").unlink()
    torch.save(material["model"].state_dict(), folder / "pytorch_model.bin")
    return _load(folder)


def _config_json_wrong_type(material, tmp):
    folder = _copy(material, "model", tmp)
    _edit_json(folder / "config.json", code_dim="72")
    return _load(folder)


def _resume_into(model, tmp, damage: Callable[[Path], None] | None = None):
    args = TrainingArguments(epochs=1)
    source = csg_hub.CSGForImageClassification(make_config())
    optimizer = paper_optimizer(source, args)
    _save_checkpoint(tmp / "ckpt", source, optimizer, warmup_cosine(optimizer, 10, 1), 1, [])
    if damage is not None:
        damage(tmp / "ckpt/model.safetensors")
    optimizer = paper_optimizer(model, args)
    return _load_checkpoint(tmp / "ckpt", model, optimizer, warmup_cosine(optimizer, 10, 1))


def _resume_another_model(material, tmp):
    return _resume_into(csg_hub.CSGForImageClassification(make_config(code_dim=64)), tmp)


def _resume_flipped(material, tmp):
    return _resume_into(csg_hub.CSGForImageClassification(make_config()), tmp, _flip_byte)


ERR = csg_hub.CheckpointError
LOADING_CASES = {
    "resnet34 weights under a resnet18 config": (_another_architecture, ERR, "holds 96 tensor.*has no place for"),
    "weights for another CSG policy": (_another_policy, ERR, "lacks 4 tensor"),
    "weights for another code_dim": (_another_code_dim, ERR, "does not fit this config.*codes"),
    "integer tensor where a float belongs": (_integer_tensor, ERR, "wrong kind of number.*fc.bias"),
    "flipped bytes in the tensor data": (_flipped_bytes, ERR, "do not match the CRC-32 recorded"),
    "truncated file": (_truncated, ERR, "truncated or corrupt"),
    "bytes after the data": (_trailing_bytes, ERR, "truncated or corrupt"),
    "not a safetensors file": (_garbage_file, ERR, "truncated or corrupt"),
    "only a pickle checkpoint": (_pickle_only, ERR, "never pickles"),
    "config.json with a string code_dim": (_config_json_wrong_type, FIELD, "code_dim.*expected int"),
    "resume checkpoint of another model": (_resume_another_model, ERR, "does not fit this model.*codes"),
    "resume checkpoint with flipped bytes": (_resume_flipped, ERR, "resume checkpoint.*do not match the CRC-32"),
}


# --- the Hub cache --------------------------------------------------------------------------------


def _tampered_cache_blob(material, tmp):
    path = Path(hf_hub_download(material["repo_id"], "model.safetensors"))
    blob = path.resolve()
    data = load_file(blob)
    data["timm_model.fc.bias"] = data["timm_model.fc.bias"] + 1.0
    blob.chmod(0o644)
    save_file(data, blob, metadata={"format": "pt"})  # a consistent file, but not the one the Hub published
    try:
        return AutoModelForImageClassification.from_pretrained(material["repo_id"])
    finally:
        blob.unlink()  # the next download fetches the published file again


def _sha_named_tag(material, tmp):
    sha = HfApi().model_info(material["repo_id"]).sha
    HfApi().create_tag(material["repo_id"], tag="a" * 40, revision=sha)


HUB_CASES = {
    "cached blob changed after download": (_tampered_cache_blob, ERR, "does not match the sha256 the Hub published"),
    "tag named like a commit sha": (_sha_named_tag, HfHubHTTPError, "looks like a commit sha"),
}


# --- weight-VAE artifacts -------------------------------------------------------------------------


def _pull(folder: Path):
    return weight_vae.pull_latents(folder)


def _vae_copy(material, tmp) -> Path:
    return _copy(material, "vae", tmp)


def _swapped_manifest_entries(material, tmp):
    folder = _vae_copy(material, tmp)
    path = folder / "latents/manifest.json"
    manifest = json.loads(path.read_text())
    entries = manifest["tensors"]
    i, j = next((i, j) for i in range(len(entries)) for j in range(i + 1, len(entries))
                if entries[i]["shape"] == entries[j]["shape"])  # fmt: skip
    entries[i]["name"], entries[j]["name"] = entries[j]["name"], entries[i]["name"]
    path.write_text(json.dumps(manifest))
    return _pull(folder / "latents")


def _decoder_pinned_by_branch(material, tmp):
    folder = _vae_copy(material, tmp)
    pin = {"repo_id": "csg-bad/decoder", "revision": "main", "sha256": "0" * 64}
    _edit_json(folder / "latents/config.json", decoder=pin)
    return _pull(folder / "latents")


def _other_decoder_same_config(material, tmp):
    folder = _vae_copy(material, tmp)
    config = json.loads((folder / "latents/config.json").read_text())
    _edit_json(folder / "latents/config.json", decoder={**config["decoder"], "path": "../other-decoder"})
    return _pull(folder / "latents")


def _other_decoder_on_the_hub(material, tmp):
    repo = f"csg-bad/decoder-{uuid.uuid4().hex[:8]}"
    real = weight_vae.push_decoder(material["artifact"].vae, repo).oid
    latents = f"csg-bad/latents-{uuid.uuid4().hex[:8]}"
    weight_vae.push_latents(material["artifact"], latents, repo, real)
    other = weight_vae.push_decoder(material["other_vae"], repo).oid  # same VAE config, new commit
    folder = Path(HfApi().snapshot_download(latents))
    edited = tmp / "latents"
    shutil.copytree(folder, edited)
    config = json.loads((edited / "config.json").read_text())
    _edit_json(edited / "config.json", decoder={**config["decoder"], "revision": other})
    return _pull(edited)


def _edited_kept_tensor(material, tmp):
    folder = _vae_copy(material, tmp)
    path = folder / "latents/kept.safetensors"
    kept = load_file(path)
    kept["timm_model.fc.bias"] = kept["timm_model.fc.bias"] + 1
    save_file(kept, path)  # well-formed, no recorded digest: only the manifest's digests can tell
    return _pull(folder / "latents")


def _flipped_latents(material, tmp):
    folder = _vae_copy(material, tmp)
    _flip_byte(folder / "latents/latents.safetensors", 10)
    return _pull(folder / "latents")


def _save_with_branch_pin(material, tmp):
    pin = {"repo_id": "csg-bad/decoder", "revision": "main", "sha256": "0" * 64}
    weight_vae.save_latents(material["artifact"], tmp / "latents", pin)


def _old_format(material, tmp):
    folder = _vae_copy(material, tmp)
    _edit_json(folder / "latents/config.json", version=1)
    return _pull(folder / "latents")


VAE_CASES = {
    "two same-shape manifest entries swapped": (_swapped_manifest_entries, ERR, "does not match the latents it points"),
    "decoder pinned by a branch name": (_decoder_pinned_by_branch, ERR, "'main', which is not a commit sha"),
    "another decoder with the same VAE config": (_other_decoder_same_config, ERR, "not the decoder the latents"),
    "decoder at another commit on the Hub": (_other_decoder_on_the_hub, ERR, "not the decoder the latents"),
    "kept tensor edited": (_edited_kept_tensor, ERR, "do not match their digests"),
    "flipped bytes in the latents": (_flipped_latents, ERR, "do not match the CRC-32 recorded"),
    "saving with a branch as decoder pin": (_save_with_branch_pin, ValueError, "full 40-hex commit sha"),
    "latents written by an older format": (_old_format, ERR, "not a csg-hub-weight-vae-latents v2"),
}


# --- data and evaluation --------------------------------------------------------------------------


def _dataset(labels: list, images: list | None = None, class_label: bool = False):
    images = images or [np.zeros((28, 28), dtype=np.uint8) for _ in labels]
    label_feature = datasets.ClassLabel(num_classes=10) if class_label else datasets.Value("int64")
    features = datasets.Features({"image": datasets.Image(), "label": label_feature})
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)


def _batches(dataset, num_classes: int = 10):
    return list(classification_loader(dataset, make_config(image_size=28).data_config, 2, num_classes=num_classes))


def _label_outside(material, tmp):
    return _batches(_dataset([0, 1, 2, 12]))


def _negative_label(material, tmp):
    return _batches(_dataset([0, -1]))


def _undecodable_image(material, tmp):
    good = np.zeros((28, 28), dtype=np.uint8)
    return _batches(_dataset([0, 1], [good, {"bytes": b"not an image", "path": None}]))


def _more_classes_than_the_model(material, tmp):
    return _batches(_dataset([0, 9], class_label=True), num_classes=5)


def _eval_script(material, tmp, dataset) -> dict:
    dataset.save_to_disk(str(tmp / "data"))
    return _eval_args(material, "--dataset", str(tmp / "data"), "--split", "x")


def _eval_empty_split(material, tmp):
    return _eval_script(material, tmp, _dataset([0], class_label=True).select([]))


def _eval_other_class_count(material, tmp):
    ds = _dataset([0, 1], class_label=True).cast_column("label", datasets.ClassLabel(num_classes=3))
    return _eval_script(material, tmp, ds)


def _eval_args(material, *extra: str) -> dict:
    import importlib.util

    spec = importlib.util.spec_from_file_location("eval_script", Path(__file__).parent.parent / "scripts/eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(["--model", str(material["root"] / "model"), *extra])


def _eval_partial_card_update(material, tmp):
    return _eval_args(material, "--dataset", "x", "--update-card", "--limit", "64")


def _eval_unknown_column(material, tmp):
    _dataset([0, 1], class_label=True).save_to_disk(str(tmp / "data"))
    return _eval_args(material, "--dataset", str(tmp / "data"), "--label-column", "target")


def _other_label_names(material, tmp):
    from csg_hub.data import label_mapping

    return label_mapping(["cat", "dog"], ["ant", "bee"])


DATA_CASES = {
    "eval --update-card on a partial split": (_eval_partial_card_update, SystemExit, "drop --limit"),
    "eval with a label column that does not exist": (_eval_unknown_column, ValueError, "no label column 'target'"),
    "dataset classes named unlike the model's": (_other_label_names, ValueError, "are not the model's"),
    "label outside the model's classes": (_label_outside, ValueError, "Row 3 of the dataset: label 12"),
    "negative label": (_negative_label, ValueError, "Row 1 of the dataset: label -1"),
    "undecodable image": (_undecodable_image, ValueError, "Row 1 of the dataset: its 'image' image cannot be decoded"),
    "ClassLabel larger than the model": (_more_classes_than_the_model, ValueError, "Row 1 of the dataset: label 9"),
    "eval on an empty split": (_eval_empty_split, ValueError, "holds no rows|Could not read the dataset.*empty"),
    "eval with another class count": (_eval_other_class_count, ValueError, "3 classes but the model predicts 10"),
}


# --- the test Hub server --------------------------------------------------------------------------


def _raw(server: HubServer, request: bytes, timeout: float = 10.0) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
    return answer


def _status(answer: bytes) -> None:
    status_line = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    message = ""
    for line in answer.split(b"\r\n"):
        if line.lower().startswith(b"x-error-message:"):
            message = line.split(b":", 1)[1].decode(errors="replace").strip()
    if not status_line or int(status_line.split()[1]) >= 400:
        raise ServerAnswer(f"{status_line} {message}")


def _post(path: str, body: bytes, extra: str = "", length: str | None = None) -> bytes:
    length = str(len(body)) if length is None else length
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {length}\r\nConnection: close\r\n{extra}\r\n"
    return head.encode() + body


def _small_server(tmp: Path, **limits) -> HubServer:
    return HubServer(tmp / "hub", **limits).start()


def _bogus_content_length(material, tmp):
    _status(_raw(material["server"], _post("/api/repos/create", b"{}", length="12abc")))


def _oversized_body(material, tmp):
    server = _small_server(tmp, max_body_bytes=1000)
    try:
        _status(_raw(server, _post("/api/repos/create", b"{}", length="5000")))
    finally:
        server.stop()


def _oversized_json(material, tmp):
    server = _small_server(tmp, max_json_bytes=100)
    try:
        body = json.dumps({"name": "x", "pad": "y" * 500}).encode()
        _status(_raw(server, _post("/api/repos/create", body)))
    finally:
        server.stop()


def _stalled_body(material, tmp):
    # announces 1000 bytes, sends 2: the server must give the thread back after its idle timeout
    server = _small_server(tmp, idle_timeout=0.5)
    try:
        _status(_raw(server, _post("/api/repos/create", b"{}", length="1000"), timeout=5))
    finally:
        server.stop()


def _bad_chunk_size(material, tmp):
    request = (
        b"POST /api/repos/create HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
    )
    _status(_raw(material["server"], request))


def _newline_in_repo_name(material, tmp):
    _status(_raw(material["server"], _post("/api/repos/create", json.dumps({"name": "evil\n"}).encode())))


def _newline_in_repo_id(material, tmp):
    request = b"GET /api/models/csg-bad/x%0A HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    _status(_raw(material["server"], request))


def _malformed_size(material, tmp):
    body = json.dumps({"files": [{"path": "a.bin", "size": "big", "sample": ""}]}).encode()
    _status(_raw(material["server"], _post(f"/api/models/{material['repo_id']}/preupload/main", body)))


def _negative_lfs_size(material, tmp):
    body = json.dumps({"operation": "upload", "objects": [{"oid": "0" * 64, "size": -5}]}).encode()
    _status(_raw(material["server"], _post(f"/{material['repo_id']}.git/info/lfs/objects/batch", body)))


def _malformed_files_list(material, tmp):
    body = json.dumps({"files": "not-a-list-of-objects"}).encode()
    _status(_raw(material["server"], _post(f"/api/models/{material['repo_id']}/preupload/main", body)))


def _branch_named_like_sha(material, tmp):
    HfApi().create_branch(material["repo_id"], branch="b" * 40)


SERVER_CASES = {
    "Content-Length that is not a number": (_bogus_content_length, ServerAnswer, "400.*Invalid Content-Length"),
    "body over the size limit": (_oversized_body, ServerAnswer, "413"),
    "JSON body over its limit": (_oversized_json, ServerAnswer, "413"),
    "body shorter than its Content-Length": (_stalled_body, ServerAnswer, "408.*Timed out waiting for the request body"),
    "chunk size that is not hex": (_bad_chunk_size, ServerAnswer, "400.*Invalid chunk size"),
    "repo name with a newline": (_newline_in_repo_name, ServerAnswer, "400.*Invalid repo name"),
    "repo id with a newline": (_newline_in_repo_id, ServerAnswer, "400.*Invalid repo id"),
    "size that is not a number": (_malformed_size, ServerAnswer, "400.*Invalid size"),
    "negative LFS size": (_negative_lfs_size, ServerAnswer, "400.*Invalid size"),
    "files field of the wrong type": (_malformed_files_list, ServerAnswer, "400.*Malformed request"),
    "branch named like a commit sha": (_branch_named_like_sha, HfHubHTTPError, "looks like a commit sha"),
}

# --- values nobody used to check (issue 31, part 3) -----------------------------------------------


def _without_binding(folder: Path) -> None:
    # a folder whose weights were rewritten by another tool: its config.json records no weights CRC either
    data = json.loads((folder / "config.json").read_text())
    data.pop("weights_crc32", None)
    (folder / "config.json").write_text(json.dumps(data))


def _int8_scale(value: float, with_crc: bool = True) -> Callable:
    """An int8 checkpoint whose first stored tensor has `value` as the scale of its row 1; written with a
    CRC-32 of the edited data (so the CRC vouches for the bytes, not for the values) or without one."""

    def feed(material, tmp):
        folder = _copy(material, "int8", tmp)
        path = folder / "model.safetensors"
        tensors = {k: v.clone() for k, v in load_file(path).items()}  # not the memory-mapped file being rewritten
        key = min(k for k in tensors if k.endswith(".int8_scale"))
        tensors[key][1] = value
        if with_crc:
            write_safetensors(path, tensors)
        else:
            save_file(tensors, path, metadata={"format": "pt"})
        _without_binding(folder)
        return _load(folder)

    return feed


def _nonfinite_float(value: float) -> Callable:
    """A float32 checkpoint without a CRC-32 (another tool's save) holding `value` in the classifier bias."""

    def feed(material, tmp):
        folder = _copy(material, "model", tmp)
        tensors = {k: v.clone() for k, v in load_file(folder / "model.safetensors").items()}
        tensors["timm_model.fc.bias"][3] = value
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
        _without_binding(folder)
        return _load(folder)

    return feed


def _eval_limit(value: str) -> Callable:
    """`eval.py --limit <value>`; argparse's message (printed to stderr) becomes the SystemExit's."""

    def feed(material, tmp):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            try:
                return _eval_args(material, "--dataset", "x", "--limit", value)
            except SystemExit as exit_:
                raise SystemExit(stderr.getvalue()) from exit_

    return feed


def _dataset_limit(material, tmp):
    _dataset([0, 1], class_label=True).save_to_disk(str(tmp / "data"))
    return load_image_dataset(str(tmp / "data"), "train", limit=0)


def _manifest_edit(edit: Callable[[dict], None]) -> Callable:
    def feed(material, tmp):
        folder = _vae_copy(material, tmp)
        path = folder / "latents/manifest.json"
        manifest = json.loads(path.read_text())
        edit(manifest)
        path.write_text(json.dumps(manifest))
        return _pull(folder / "latents")

    return feed


def _drop_entry_field(key: str) -> Callable:
    return _manifest_edit(lambda manifest: manifest["tensors"][0].pop(key))


VALUE_CASES = {
    "int8 scale NaN": (_int8_scale(float("nan")), ERR, r"not finite positive.*int8_scale.*row 1: nan"),
    "int8 scale inf": (_int8_scale(float("inf")), ERR, r"not finite positive.*int8_scale.*row 1: inf"),
    "int8 scale zero": (_int8_scale(0.0), ERR, r"not finite positive.*int8_scale.*row 1: 0\)"),
    "int8 scale negative": (_int8_scale(-0.01), ERR, r"not finite positive.*int8_scale.*row 1: -0\.01"),
    "int8 scale NaN, no CRC": (_int8_scale(float("nan"), with_crc=False), ERR, r"not finite positive.*int8_scale"),
    "float checkpoint without CRC holding NaN": (_nonfinite_float(float("nan")), ERR,
                                                 r"no CRC-32.*non-finite.*timm_model\.fc\.bias \(1 NaN, 0 inf\)"),
    "float checkpoint without CRC holding inf": (_nonfinite_float(float("-inf")), ERR,
                                                 r"no CRC-32.*timm_model\.fc\.bias \(0 NaN, 1 inf\).*allow_nonfinite"),
    "eval --limit 0": (_eval_limit("0"), SystemExit, r"--limit: must be at least 1.*got 0"),
    "eval --limit negative": (_eval_limit("-5"), SystemExit, r"--limit: must be at least 1.*got -5"),
    "eval --limit not a number": (_eval_limit("all"), SystemExit, r"--limit: expected a positive whole number.*'all'"),
    "dataset limit 0": (_dataset_limit, ValueError, "limit must be a positive number of rows.*got 0"),
    "manifest entry without offset": (_drop_entry_field("offset"), ERR,
                                      r"manifest\.json of the latents at .* Manifest entry 0 .*lacks.*\['offset'\]"),
    "manifest entry without numel": (_drop_entry_field("numel"), ERR, r"Manifest entry 0 .*lacks.*\['numel'\]"),
    "manifest entry without shape": (_drop_entry_field("shape"), ERR, r"Manifest entry 0 .*lacks.*\['shape'\]"),
    "manifest entry without name": (_drop_entry_field("name"), ERR, r"Manifest entry 0 \(None\) lacks.*\['name'\]"),
    "manifest entry without dtype": (_drop_entry_field("dtype"), ERR, r"Manifest entry 0 .*lacks.*\['dtype'\]"),
    "manifest offset as text": (_manifest_edit(lambda m: m["tensors"][0].update(offset="0")), ERR,
                                r"Manifest entry 0 .*'offset' must be a non-negative integer, got '0'"),
    "manifest without chunk_size": (_manifest_edit(lambda m: m.pop("chunk_size")), ERR,
                                    r"manifest lacks its 'chunk_size' field"),
    "manifest tensors not a list": (_manifest_edit(lambda m: m.update(tensors={})), ERR,
                                    r"'tensors' must be a list of entries, got dict"),
}  # fmt: skip


# --- one source of truth (issue 31, part 4) -------------------------------------------------------


def _processor_edit(source: str = "auto", **changes) -> Callable:
    """A model folder whose preprocessor_config.json says `changes` while its config.json says otherwise,
    loaded by AutoImageProcessor or by the image-classification pipeline."""

    def feed(material, tmp):
        folder = _copy(material, "model", tmp)
        _edit_json(folder / "preprocessor_config.json", **changes)
        if source == "pipeline":
            return pipeline("image-classification", model=str(folder))
        return AutoImageProcessor.from_pretrained(folder)

    return feed


_DISAGREES = r"preprocessor_config\.json of .* disagrees with its config\.json"
SOURCE_CASES = {
    "processor file with another mean": (_processor_edit(mean=[0.75]), ValueError,
                                         _DISAGREES + r".*mean \[0\.75\] vs image_mean \[0\.5\]"),
    "processor file with another std": (_processor_edit(std=[0.25]), ValueError,
                                        _DISAGREES + r".*std \[0\.25\] vs image_std"),
    "processor file with another size": (_processor_edit(input_size=[1, 64, 64]), ValueError,
                                         _DISAGREES + r".*input_size \[1, 64, 64\] vs in_chans/image_size \[1, 32, 32\]"),
    "processor file with other channels": (_processor_edit(input_size=[3, 32, 32], mean=[0.5] * 3, std=[0.5] * 3),
                                           ValueError, _DISAGREES + r".*input_size \[3, 32, 32\] vs"),
    "processor file with another interpolation": (_processor_edit(interpolation="bicubic"), ValueError,
                                                  _DISAGREES + r".*interpolation bicubic vs interpolation bilinear"),
    "pipeline on a processor file with another mean": (_processor_edit("pipeline", mean=[0.75]), ValueError,
                                                       _DISAGREES + r".*mean \[0\.75\]"),
}  # fmt: skip


MATRIX = {
    "config": CONFIG_CASES,
    "loading": LOADING_CASES,
    "hub": HUB_CASES,
    "weight-vae": VAE_CASES,
    "data": DATA_CASES,
    "values": VALUE_CASES,
    "one source": SOURCE_CASES,
    "server": SERVER_CASES,
}
# the cases that are Hub-protocol round trips (the test server, pushes and downloads) are in the slow tier
CASES = [
    pytest.param(family, name, id=f"{family}: {name}",
                 marks=pytest.mark.slow if family in ("hub", "server") or "on the Hub" in name else ())
    for family, cases in MATRIX.items() for name in cases
]  # fmt: skip


@pytest.mark.parametrize(("family", "name"), CASES)
def test_bad_input_gets_a_clear_error(material, tmp_path, family, name):
    feed, error, phrase = MATRIX[family][name]
    with pytest.raises(error, match=phrase):
        feed(material, tmp_path)


def test_matrix_size():
    assert len(CASES) >= 60


# --- the right result where the input is fine -----------------------------------------------------


@pytest.mark.slow
def test_commit_sha_wins_over_a_legacy_ref_of_that_name(material, tmp_path):
    """A ref named like a sha (left by an older server) must not hijack `revision=<sha>`."""
    server = material["server"]
    repo_id = material["repo_id"]
    api = HfApi()
    first = api.model_info(repo_id).sha
    model = csg_hub.CSGForImageClassification(make_config(code_dim=64))
    second = model.push_to_hub(repo_id).oid
    refs_path = server.root / "repos" / "models" / repo_id / "refs.json"
    refs = json.loads(refs_path.read_text())
    refs["tags"][first] = second  # what the old server let a client create
    refs_path.write_text(json.dumps(refs))
    loaded = AutoModelForImageClassification.from_pretrained(repo_id, revision=first)
    assert loaded.config.code_dim == 72


@pytest.mark.slow
def test_upload_urls_ignore_a_spoofed_host(material):
    body = json.dumps({"operation": "upload", "objects": [{"oid": "1" * 64, "size": 3}]}).encode()
    request = _post(f"/{material['repo_id']}.git/info/lfs/objects/batch", body, extra="X-Ignored: 1\r\n")
    request = request.replace(b"Host: 127.0.0.1", b"Host: evil.example")
    answer = _raw(material["server"], request)
    payload = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert payload["objects"][0]["actions"]["upload"]["href"].startswith(material["server"].url)


def test_backbone_from_a_classifier_checkpoint_is_not_strict_about_the_head(material):
    backbone = csg_hub.CSGModel.from_pretrained(material["root"] / "model")
    assert backbone.config.architecture == "resnet18"


def test_strict_false_drops_extra_tensors_on_purpose(material, tmp_path):
    folder = tmp_path / "resnet34"
    csg_hub.CSGForImageClassification(make_config("resnet34")).save_pretrained(folder)
    _edit_json(folder / "config.json", architecture="resnet18")
    model = csg_hub.CSGForImageClassification.from_pretrained(folder, strict=False)
    assert model.config.architecture == "resnet18"


# --- values checked, one source of truth: the right result where the input is fine (issue 31) -------


def test_allow_nonfinite_loads_a_checkpoint_without_crc_on_purpose(material, tmp_path):
    folder = _copy(material, "model", tmp_path)
    tensors = {k: v.clone() for k, v in load_file(folder / "model.safetensors").items()}
    tensors["timm_model.fc.bias"][3] = float("nan")
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    _without_binding(folder)
    model = AutoModelForImageClassification.from_pretrained(folder, allow_nonfinite=True)
    assert torch.isnan(model.timm_model.fc.bias[3]) and not hasattr(model.config, "allow_nonfinite")
    # the same values written by csg-hub (with their CRC-32) are the model as saved: they load without the opt-in
    write_safetensors(folder / "model.safetensors", tensors)
    assert torch.isnan(_load(folder).timm_model.fc.bias[3])


def test_int8_checkpoint_with_valid_scales_loads(material):
    loaded = _load(material["root"] / "int8")
    assert loaded.config.storage_dtype == "int8"
    assert all(torch.isfinite(p).all() for p in loaded.parameters())


def test_eval_limit_of_one_takes_one_row(material, tmp_path):
    _dataset([0, 1, 2], class_label=True).save_to_disk(str(tmp_path / "data"))
    assert len(load_image_dataset(str(tmp_path / "data"), "train", limit=1)) == 1
    assert len(load_image_dataset(str(tmp_path / "data"), "train", limit=None)) == 3


def test_a_matching_processor_file_loads(material):
    processor = AutoImageProcessor.from_pretrained(material["root"] / "model")
    assert processor.data_config == material["model"].config.data_config


def _sixteen_bit(seed: int = 0) -> Image.Image:
    values = np.random.default_rng(seed).integers(0, 65536, (28, 28)).astype(np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    return image


@pytest.mark.slow
def test_16_bit_image_gives_the_same_pixels_and_prediction_in_pipeline_and_eval(material):
    """eval.py (the dataset loader, `to_mode`) scales 16-bit greyscale to 8 bits; the pipeline's `load_image`
    would clip it at 255 (white) before the processor runs, so `pipeline_predictions` (eval.py --pipeline)
    hands it the scaled image, and the processor scales uint16 arrays the same way."""
    folder = str(material["root"] / "model")
    images = [_sixteen_bit(seed) for seed in range(4)]
    config = material["model"].config
    dataset = _dataset([0] * len(images), images)
    assert dataset[0]["image"].mode.startswith("I;16")  # datasets keeps the 16 bits
    batches = list(classification_loader(dataset, config.data_config, len(images), num_classes=10))
    eval_pixels = batches[0][0]
    assert torch.equal(eval_pixels[0], image_transform(config.data_config)(images[0]))
    classifier = pipeline("image-classification", model=folder)
    for i, image in enumerate(images):
        for given in (to_mode(image, "L"), np.asarray(image)):  # what pipeline_predictions hands over; an array
            assert torch.equal(classifier.preprocess(given)["pixel_values"][0], eval_pixels[i])
        assert not torch.equal(classifier.preprocess(image)["pixel_values"][0], eval_pixels[i])  # load_image clips
    with torch.no_grad():
        expected = material["model"](pixel_values=eval_pixels).logits.argmax(-1).tolist()
    assert pipeline_predictions(folder, images, batch_size=2, progress=False) == expected


def test_card_tags_hold(material, tmp_path):
    """A CSG card is not tagged `timm` (timm's `hf-hub:` loader cannot build a CSG repo); it says so and points
    at the dense export, whose card keeps the tag."""
    from csg_hub.hub.timm_export import TimmExport

    card = model_card(material["model"], "csg-bad/tags")
    assert "timm" not in card.data.tags and {"csg", "csg-hub", "resnet18"} <= set(card.data.tags)
    assert "push_timm" in card.text and 'timm.create_model("hf-hub:csg-bad/tags")` cannot build it' in card.text
    TimmExport(material["model"])._save_pretrained(tmp_path, "csg-bad/tags-timm")
    assert "- timm\n" in (tmp_path / "README.md").read_text()
