"""Weight-VAE artifacts on disk and on the Hub: save, load, push and pull.

Two kinds of repo:

- a **decoder repo** (`decoder.safetensors` + `config.json`): the VAE's decoder, shareable by many models;
- a **latents repo** per model: `latents.safetensors` (one latent vector per chunk, plus the normalisation
  statistics), `kept.safetensors` (tensors left out of the selection), `manifest.json` (how the chunks map
  back to tensors), `model_config.json` (what to rebuild: a CSG config, a timm config or one of
  `csg_hub.vae.small_models`), `config.json` (the decoder's repo id and exact commit, and the VAE config)
  and a card with the accounting table.

Everything is read from safetensors and JSON; nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import CommitInfo, HfApi, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..atomic_write import atomic_folder
from ..errors import CheckpointError
from ..hub.hub_mixin import push_to_hub
from ..integrity import file_sha256, verify_safetensors, write_safetensors
from .accounting import compression_report
from .cards import decoder_card, latents_card
from .chunks import validate_manifest
from .compressed import CompressedModel
from .model import WeightVAE, WeightVAEConfig
from .model_config import model_kind

LATENTS_FORMAT = "csg-hub-weight-vae-latents"
DECODER_FORMAT = "csg-hub-weight-vae-decoder"
FORMAT_VERSION = 2  # 2: per-tensor digests in the manifest, decoder pinned by commit sha and weights digest
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def entry_digest(entry: dict[str, Any], latents: torch.Tensor, stats: torch.Tensor | None, chunk_size: int) -> str:
    """sha256 binding a manifest entry (name, shape, dtype, offset) to the latent rows (and normalisation
    statistics) its values decode from: renaming, reordering or swapping entries changes it."""
    first = entry["offset"] // chunk_size
    stop = max(first, (entry["offset"] + entry["numel"] - 1) // chunk_size + 1)
    fields = {k: entry[k] for k in ("name", "shape", "dtype", "offset", "numel")}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    digest.update(_tensor_bytes(latents[first:stop]))
    if stats is not None:
        digest.update(_tensor_bytes(stats[first:stop] if len(stats) > 1 else stats))
    return digest.hexdigest()


def kept_digest(name: str, tensor: torch.Tensor) -> str:
    """sha256 of a kept tensor's name, shape, dtype and bytes."""
    fields = {"name": name, "shape": list(tensor.shape), "dtype": str(tensor.dtype)}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode() + _tensor_bytes(tensor)).hexdigest()


def _manifest_with_digests(artifact: CompressedModel) -> dict[str, Any]:
    chunk = artifact.manifest["chunk_size"]
    tensors = [
        {**e, "sha256": entry_digest(e, artifact.latents, artifact.stats, chunk)} for e in artifact.manifest["tensors"]
    ]
    kept = {k: kept_digest(k, v) for k, v in sorted(artifact.kept.items())}
    return {**artifact.manifest, "tensors": tensors, "kept_sha256": kept}


def _check_digests(manifest, latents, stats, kept, folder: Path) -> None:
    chunk = manifest["chunk_size"]
    for entry in manifest["tensors"]:
        if entry.get("sha256") != entry_digest(entry, latents, stats, chunk):
            raise CheckpointError(
                f"manifest.json of the latents at {folder}: entry {entry['name']!r} does not match the latents it "
                "points at (a tensor was renamed, moved or swapped, or latents.safetensors belongs to another model)."
            )
    recorded = manifest.get("kept_sha256")
    if not isinstance(recorded, dict) or set(recorded) != set(kept):
        raise CheckpointError(
            f"manifest.json of the latents at {folder} lists other kept tensors than kept.safetensors holds."
        )
    bad = sorted(k for k, v in kept.items() if recorded[k] != kept_digest(k, v))
    if bad:
        raise CheckpointError(f"Kept tensors {bad[:3]} at {folder} do not match their digests in manifest.json.")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_decoder(vae: WeightVAE, folder: str | os.PathLike) -> Path:
    """Write `decoder.safetensors`, `config.json` and a card for `vae`'s decoder into `folder`."""
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        _write_decoder(vae, tmp)
    return folder


def _write_decoder(vae: WeightVAE, folder: Path) -> None:
    write_safetensors(folder / "decoder.safetensors", vae.decoder_tensors())
    _write_json(
        folder / "config.json",
        {
            "format": DECODER_FORMAT,
            "version": FORMAT_VERSION,
            "vae_config": vae.config.to_dict(),
            "decoder_params": vae.num_decoder_params(),
        },
    )
    decoder_card(vae).save(folder / "README.md")


def save_latents(
    artifact: CompressedModel,
    folder: str | os.PathLike,
    decoder: dict[str, str],
    report: dict[str, Any] | None = None,
    repo_id: str | None = None,
) -> Path:
    """Write a latents folder. `decoder` pins the decoder: `{"repo_id": ..., "revision": <commit sha>, "sha256":
    <weights digest>}` (what `push_latents` writes), or `{"path": ...}` (relative to `folder`) for a decoder
    folder saved there by `save_decoder`. `report` (from `compression_report`) fills the card."""
    folder = Path(folder)
    decoder = _pin(decoder, folder)
    report = report or compression_report(artifact, print_report=False)
    with atomic_folder(folder) as tmp:
        write_safetensors(tmp / "latents.safetensors", artifact.latent_tensors())
        write_safetensors(tmp / "kept.safetensors", artifact.kept)
        _write_json(tmp / "manifest.json", _manifest_with_digests(artifact))
        _write_json(tmp / "model_config.json", artifact.model_config)
        _write_json(
            tmp / "config.json",
            {
                "format": LATENTS_FORMAT,
                "version": FORMAT_VERSION,
                "decoder": decoder,
                "vae_config": artifact.vae.config.to_dict(),
                "latent_dtype": str(artifact.latents.dtype).removeprefix("torch."),
                "model_kind": model_kind(artifact.model_config),
            },
        )
        latents_card(artifact, repo_id or folder.name, decoder, report).save(tmp / "README.md")
    return folder


def _pin(decoder: dict[str, str], folder: Path) -> dict[str, str]:
    if "path" in decoder:
        # resolved lexically: the latents folder may not exist yet ("../decoder" needs no "latents" to pass through)
        digest = decoder.get("sha256") or file_sha256(Path(os.path.normpath(folder / decoder["path"])) / "decoder.safetensors")
        return {"path": decoder["path"], "sha256": digest}
    revision = str(decoder.get("revision"))
    if not _COMMIT_SHA.fullmatch(revision) or not decoder.get("sha256"):
        raise ValueError(
            f"A decoder pin needs a full 40-hex commit sha and the weights' sha256, got {decoder}: branch and tag "
            "names can move. push_latents resolves both."
        )
    return {"repo_id": decoder["repo_id"], "revision": revision, "sha256": decoder["sha256"]}


def _snapshot(repo_or_dir: str | os.PathLike, revision: str | None, what: str) -> Path:
    local = Path(repo_or_dir)
    if local.is_dir():
        return local
    try:
        # one consistent commit of the repo; JSON and safetensors only, never pickles
        return Path(snapshot_download(str(repo_or_dir), revision=revision, allow_patterns=["*.json", "*.safetensors"]))
    except RevisionNotFoundError as err:
        raise CheckpointError(
            f"Revision {revision!r} of the {what} repo {repo_or_dir} does not exist. Check the revision, or push the "
            "decoder again (push_decoder) and re-push the latents (push_latents) so they name an existing commit."
        ) from err
    except RepositoryNotFoundError as err:
        raise CheckpointError(f"The {what} repo {repo_or_dir} does not exist or is not accessible: {err}") from err


def _read_json(folder: Path, name: str, what: str) -> dict[str, Any]:
    path = folder / name
    if not path.exists():
        raise CheckpointError(f"The {what} at {folder} has no {name}; is it a csg-hub weight-VAE {what} repo?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{name} of the {what} at {folder} is not valid JSON: {err}") from err


def _read_safetensors(folder: Path, name: str, what: str) -> dict[str, torch.Tensor]:
    path = folder / name
    if not path.exists():
        raise CheckpointError(f"The {what} at {folder} has no {name}.")
    verify_safetensors(path, f"{name} of the {what}")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"Could not read {name} of the {what} at {folder}: {err}. The file is truncated or corrupt; "
            "download or push it again."
        ) from err


def _check_format(config: dict[str, Any], expected: str, folder: Path) -> None:
    if config.get("format") != expected or config.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{folder}/config.json is not a {expected} v{FORMAT_VERSION} config "
            f"(format {config.get('format')!r}, version {config.get('version')!r})."
        )


def load_decoder(repo_or_dir: str | os.PathLike, revision: str | None = None) -> WeightVAE:
    """A decoder-only `WeightVAE` from a decoder repo (Hub id, optionally at `revision`) or folder."""
    return _load_decoder(repo_or_dir, revision)[0]


def _load_decoder(repo_or_dir: str | os.PathLike, revision: str | None) -> tuple[WeightVAE, str]:
    """The decoder and the sha256 of its weights file (what latents pin)."""
    folder = _snapshot(repo_or_dir, revision, "decoder")
    config = _read_json(folder, "config.json", "decoder")
    _check_format(config, DECODER_FORMAT, folder)
    vae = WeightVAE(WeightVAEConfig.from_dict(config["vae_config"]), with_encoder=False)
    tensors = _read_safetensors(folder, "decoder.safetensors", "decoder")
    try:
        vae.decoder.load_state_dict({k.removeprefix("decoder."): v for k, v in tensors.items()})
    except RuntimeError as err:
        raise CheckpointError(f"decoder.safetensors at {folder} does not fit its config.json: {err}") from err
    return vae.eval(), file_sha256(folder / "decoder.safetensors")


def load_latents(repo_or_dir: str | os.PathLike, revision: str | None = None) -> CompressedModel:
    """A `CompressedModel` from a latents repo (Hub id, optionally at `revision`) or folder, with the decoder
    its `config.json` names (at the pinned commit). Raises `CheckpointError` for missing or corrupt files
    and revisions, ValueError when the decoder, the manifest and the latents disagree."""
    folder = _snapshot(repo_or_dir, revision, "latents")
    config = _read_json(folder, "config.json", "latents")
    _check_format(config, LATENTS_FORMAT, folder)
    manifest = _read_json(folder, "manifest.json", "latents")
    try:
        validate_manifest(manifest)
    except ValueError as err:
        raise CheckpointError(f"manifest.json of the latents at {folder} is malformed: {err}") from err
    model_config = _read_json(folder, "model_config.json", "latents")
    vae = _decoder_for(config["decoder"], folder, Path(repo_or_dir).is_dir())
    if vae.config.to_dict() != config["vae_config"]:
        raise ValueError(
            f"The decoder {config['decoder']} has VAE config {vae.config.to_dict()} but the latents at {repo_or_dir} "
            f"were made with {config['vae_config']}: re-push the latents against the decoder they were made with."
        )
    if manifest["chunk_size"] != vae.config.chunk_size:
        raise ValueError(
            f"manifest.json has chunk_size {manifest['chunk_size']} but the decoder {vae.config.chunk_size}."
        )
    tensors = _read_safetensors(folder, "latents.safetensors", "latents")
    latents, stats = tensors.get("latents"), tensors.get("stats")
    expected = (manifest["num_chunks"], vae.config.latent_dim)
    if latents is None or tuple(latents.shape) != expected:
        shape = None if latents is None else tuple(latents.shape)
        raise CheckpointError(f"latents.safetensors at {folder} holds latents of shape {shape}, expected {expected}.")
    if (stats is None) != (vae.config.normalize == "none"):
        raise CheckpointError(
            f"latents.safetensors at {folder} {'lacks' if stats is None else 'has'} normalisation statistics but the "
            f"VAE config says normalize={vae.config.normalize!r}."
        )
    kept = _read_safetensors(folder, "kept.safetensors", "latents")
    _check_digests(manifest, latents, stats, kept, folder)
    return CompressedModel(
        latents=latents,
        stats=stats,
        kept=kept,
        manifest=manifest,
        model_config=model_config,
        vae=vae,
    )


def _decoder_for(decoder: dict[str, str], folder: Path, local: bool) -> WeightVAE:
    if "path" in decoder:
        if not local:
            raise CheckpointError(
                "This latents repo refers to a decoder folder on someone's disk; re-push it with push_latents, "
                "which records the decoder's repo id and commit."
            )
        vae, digest = _load_decoder(folder / decoder["path"], None)
    else:
        revision = str(decoder.get("revision"))
        if not _COMMIT_SHA.fullmatch(revision):
            raise CheckpointError(
                f"The latents at {folder} pin their decoder {decoder.get('repo_id')} by {revision!r}, which is not a "
                "commit sha: a branch or tag can move to another decoder. Re-push them with push_latents."
            )
        try:
            vae, digest = _load_decoder(decoder["repo_id"], revision)
        except EntryNotFoundError as err:
            raise CheckpointError(f"The decoder {decoder} lacks a file: {err}") from err
    if digest != decoder.get("sha256"):
        raise CheckpointError(
            f"The decoder {decoder} has weights with sha256 {digest}, not the pinned {decoder.get('sha256')}: it is "
            f"not the decoder the latents at {folder} were made with."
        )
    return vae


def pull_latents(repo_or_dir: str | os.PathLike, revision: str | None = None) -> nn.Module:
    """Download a latents repo and its pinned decoder and rebuild the model (eval mode): a
    `CSGForImageClassification`, a timm model or a `csg_hub.vae.small_models` model."""
    return load_latents(repo_or_dir, revision).to_model()


@dataclass
class DecoderRepo:
    """What `push_decoder` uploads: `save_decoder`'s folder."""

    vae: WeightVAE
    default_commit_message: str = "Upload weight-VAE decoder"

    def _save_pretrained(self, save_directory: Path, repo_id: str) -> None:
        save_decoder(self.vae, save_directory)


@dataclass
class LatentsRepo:
    """What `push_latents` uploads: `save_latents`' folder, pinned to a decoder commit."""

    artifact: CompressedModel
    decoder: dict[str, str]
    report: dict[str, Any] | None = None
    default_commit_message: str = "Upload weight-VAE latents"

    def _save_pretrained(self, save_directory: Path, repo_id: str) -> None:
        save_latents(self.artifact, save_directory, self.decoder, report=self.report, repo_id=repo_id)


def push_decoder(
    vae: WeightVAE,
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
) -> CommitInfo:
    """Upload `vae`'s decoder (`decoder.safetensors`, `config.json`, card); the commit's `oid` is the revision
    latents repos pin."""
    return push_to_hub(DecoderRepo(vae), repo_id, commit_message=commit_message, private=private, token=token)


def push_latents(
    artifact: CompressedModel,
    repo_id: str,
    decoder_repo_id: str,
    decoder_revision: str | None = None,
    *,
    report: dict[str, Any] | None = None,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
) -> CommitInfo:
    """Upload a latents repo that names `decoder_repo_id` at the exact commit `decoder_revision` resolves to
    (the latest when None). The decoder there must have the artifact's VAE config."""
    api = HfApi(token=token)
    try:
        sha = api.model_info(decoder_repo_id, revision=decoder_revision).sha
    except (RevisionNotFoundError, RepositoryNotFoundError) as err:
        raise CheckpointError(
            f"Decoder {decoder_repo_id} at revision {decoder_revision!r} does not exist; push it with push_decoder first."
        ) from err
    remote, digest = _load_decoder(decoder_repo_id, sha)
    ours = artifact.vae.decoder.state_dict()
    same = remote.config == artifact.vae.config and all(
        torch.equal(v, ours[k]) for k, v in remote.decoder.state_dict().items()
    )
    if not same:
        raise ValueError(
            f"The decoder {decoder_repo_id}@{sha} is not the one these latents were made with (VAE config "
            f"{remote.config.to_dict()} vs {artifact.vae.config.to_dict()}, or other weights): push this "
            "artifact's decoder (push_decoder) and name that commit."
        )
    pin = {"repo_id": decoder_repo_id, "revision": sha, "sha256": digest}
    return push_to_hub(LatentsRepo(artifact, pin, report), repo_id, commit_message=commit_message, private=private,
                       token=token)  # fmt: skip
