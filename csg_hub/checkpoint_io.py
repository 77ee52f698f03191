"""CSG checkpoints on disk: `save_pretrained`'s one-pass write and `from_pretrained`'s strict, verified load.

A folder holds `config.json`, `model.safetensors` (codes and generators, and with `storage_scope="all"` every
weight matrix, in the config's `storage_dtype`; a CRC-32 of the tensor data in the metadata; data 64-byte
aligned) and `preprocessor_config.json`. Loading refuses, with a `CheckpointError` naming the problem, every
checkpoint that would otherwise load as a silently wrong model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn
from transformers.utils import cached_file

from .atomic_write import atomic_folder, recover
from .configuration import CSGConfig
from .errors import CheckpointError
from .image_processing import CSGImageProcessor, check_processor_agrees
from .integrity import DIGEST_KEY, verify_safetensors, write_safetensors
from .storage import decode, encode, stored_keys
from .timm_utils import classifier_names

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
# config.json's record of the CRC-32 of the weights saved with it
BINDING_KEY = "weights_crc32"
_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")
# transformers' save_pretrained arguments that do not apply to a small single-file checkpoint
_IGNORED_SAVE_KWARGS = ("max_shard_size", "save_peft_format", "save_original_format", "distributed_checkpoint")


def save_checkpoint(
    model,
    save_directory: str | os.PathLike,
    is_main_process: bool = True,
    state_dict: dict[str, torch.Tensor] | None = None,
    push_to_hub: bool = False,
    **kwargs: Any,
) -> None:
    """Write `model`'s folder: config, weights in their stored dtype (written once, CRC included), image processor.
    Takes `PreTrainedModel.save_pretrained`'s arguments; `push_to_hub=True` then pushes with the card."""
    if kwargs.pop("safe_serialization", True) is False or kwargs.get("variant"):
        raise ValueError("csg-hub writes one safetensors file per model (no pickles, no variants).")
    kwargs.pop("variant", None)
    for name in _IGNORED_SAVE_KWARGS:
        kwargs.pop(name, None)
    repo_id, token = kwargs.pop("repo_id", None), kwargs.pop("token", None)
    if kwargs:
        raise TypeError(f"save_pretrained got unexpected arguments {sorted(kwargs)}.")
    if not is_main_process:
        return
    folder = Path(save_directory)
    if folder.is_file():
        raise ValueError(f"save_pretrained needs a folder, but {folder} is a file.")
    config = model.config
    # what transformers' save_pretrained records (so that Auto classes and pipelines pick the right class),
    # written into the file only: saving (and pushing) leaves the model's config as it was
    recorded = {"architectures": [type(model).__name__], "dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}
    tensors = {k: v.detach() for k, v in (state_dict if state_dict is not None else model.state_dict()).items()}
    if config.storage_dtype != "float32":
        keys = [k for k in stored_keys(model, config.storage_scope) if k in tensors]
        tensors = encode(tensors, keys, config.storage_dtype, config.storage_group_size)
    # the whole set lands at once (a kill or a full disk leaves the old folder), and config.json names the weights
    # it belongs to, so that no older writer's mix can load either
    with atomic_folder(folder, carry=_carried) as tmp:
        digest = write_safetensors(tmp / WEIGHTS_NAME, tensors)
        bound = {**json.loads(config.to_json_string()), **recorded, BINDING_KEY: digest}
        (tmp / CONFIG_NAME).write_text(json.dumps(bound, indent=2, sort_keys=True) + "\n")
        CSGImageProcessor.from_config(config).save_pretrained(tmp)
    if push_to_hub:
        model.push_to_hub(repo_id or folder.name, token=token)


def _carried(name: str) -> bool:
    # what an earlier save of another model left in the folder: weights of other shapes or formats
    return not (name.startswith(("model-", "pytorch_model")) or name == "model.safetensors.index.json")


def load_checkpoint(cls, load: Callable[..., Any], pretrained_model_name_or_path, *args, **kwargs):
    """`cls.from_pretrained`: `load` is `PreTrainedModel.from_pretrained` bound to `cls`, called with the decoded
    state dict when the checkpoint stores a reduced dtype; every check of the docstring there, then realignment."""
    want_info = kwargs.pop("output_loading_info", False)
    allow_mismatch = kwargs.pop("ignore_mismatched_sizes", False)
    strict = kwargs.pop("strict", True)
    allow_nonfinite = kwargs.pop("allow_nonfinite", False)
    kwargs.setdefault("use_safetensors", True)
    source = str(pretrained_model_name_or_path)
    if not os.path.exists(source):
        recover(source)  # a folder swap a kill interrupted (where renames cannot exchange): put the old one back
    header, path = _verified_header(pretrained_model_name_or_path, kwargs)
    config = kwargs.get("config")
    if not isinstance(config, CSGConfig) and path is not None:
        config = cls.config_class.from_pretrained(
            pretrained_model_name_or_path, **{k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
        )
        check_binding(config, header, source)
        processor_file = Path(source) / "preprocessor_config.json"
        if processor_file.is_file():  # a local folder: its processor must describe the model's preprocessing
            try:
                processor = json.loads(processor_file.read_text())
            except json.JSONDecodeError as err:
                raise CheckpointError(f"{processor_file} is not valid JSON ({err}): delete it (it is rebuilt from "
                                      "config.json) or save the model again.") from err  # fmt: skip
            check_processor_agrees(processor, config.data_config, source)
    stored: dict[str, tuple[int, ...]] = {}
    load_from = pretrained_model_name_or_path
    reduced = isinstance(config, CSGConfig) and config.storage_dtype != "float32"
    if path is not None and not reduced and not allow_nonfinite and not _has_crc(header):
        check_finite(_file_tensors(path), source)
    if reduced and path is not None:
        stored = _stored_keys(cls, config)
        try:
            state = decode(safetensors.torch.load_file(path), stored, config.storage_dtype, source,
                           config.storage_group_size)  # fmt: skip
        except ValueError as err:
            raise CheckpointError(str(err)) from err
        if not allow_nonfinite and not _has_crc(header):
            check_finite(state.items(), source)
        kwargs = {k: v for k, v in kwargs.items() if k not in _HUB_KWARGS and k != "use_safetensors"}
        load_from, kwargs = None, {**kwargs, "config": config, "state_dict": state}
    try:
        model, info = load(load_from, *args, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs)
    except CheckpointError:
        raise
    except OSError as err:
        if "file named" not in str(err):
            raise
        raise CheckpointError(
            f"{source} has no {WEIGHTS_NAME} (csg-hub loads safetensors checkpoints only, never pickles): {err}"
        ) from err
    except SafetensorError as err:
        raise CheckpointError(
            f"Could not read the safetensors checkpoint of {source}: {err}. "
            "The file is truncated or corrupt; download or save it again."
        ) from err
    check_keys(model, info, source, allow_mismatch=allow_mismatch, strict=strict)
    if header is not None:
        check_kinds(model, {k: v for k, v in header.items() if k not in stored}, source)
    realign(model)
    # the binding describes the files, not the model in memory (which may be trained and saved again)
    model.config.__dict__.pop(BINDING_KEY, None)
    return (model, info) if want_info else model


def check_binding(config: CSGConfig, header: dict | None, source: str) -> None:
    """Refuse a folder whose config.json records the CRC of other weights than its model.safetensors holds: a
    mix of two saves (csg-hub writes folders in one step; an interrupted copy or another writer does not)."""
    expected = getattr(config, BINDING_KEY, None)
    recorded = ((header or {}).get("__metadata__") or {}).get(DIGEST_KEY)
    if expected is not None and expected != recorded:
        raise CheckpointError(
            f"{source}: config.json belongs to weights with CRC-32 {expected}, but model.safetensors holds weights "
            f"with {recorded or 'no recorded CRC'}: the folder mixes two saves. Save or download it again."
        )


def _verified_header(pretrained_model_name_or_path, kwargs: dict) -> tuple[dict | None, str | None]:
    # Resolve (download) the file transformers is about to read, and verify it first; a missing file is
    # left to transformers, whose error names what it looked for.
    try:
        path = cached_file(
            pretrained_model_name_or_path,
            WEIGHTS_NAME,
            _raise_exceptions_for_missing_entries=False,
            **{k: kwargs[k] for k in _HUB_KWARGS if k in kwargs},
        )
    except OSError:
        return None, None
    return (None, None) if path is None else (verify_safetensors(path), path)


def _has_crc(header: dict | None) -> bool:
    return header is not None and DIGEST_KEY in (header.get("__metadata__") or {})


def _file_tensors(path: str):
    # the tensors of a safetensors file, one at a time (memory-mapped); an unreadable file is left to the load
    try:
        with safetensors.safe_open(path, framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (a safe_open handle, not a dict)
                yield key, f.get_tensor(key)
    except SafetensorError:
        return


def check_finite(tensors, source: str) -> None:
    """Refuse NaN or inf in the floating-point tensors of a checkpoint that records no CRC-32 (saved by another
    tool or an older csg-hub; nothing vouches that its values are the ones saved): they would load and give NaN
    logits without a word. `from_pretrained(..., allow_nonfinite=True)` loads such a checkpoint on purpose."""
    bad = []
    for key, tensor in tensors:
        if tensor.is_floating_point():
            nan, inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
            if nan or inf:
                bad.append(f"{key} ({nan} NaN, {inf} inf)")
    if bad:
        raise CheckpointError(
            f"The checkpoint at {source} records no CRC-32 and holds non-finite values in {len(bad)} tensor(s): "
            f"{bad[:3]}. It would give NaN logits: it is corrupt or was saved from a diverged model. Pass "
            "allow_nonfinite=True to from_pretrained to load it anyway."
        )


def _stored_keys(cls, config: CSGConfig) -> dict[str, tuple[int, ...]]:
    # the keys this config stores in its reduced dtype and their shapes, from a model built on the meta device
    with torch.device("meta"):
        skeleton = cls(config)
    state = skeleton.state_dict()
    return {key: tuple(state[key].shape) for key in stored_keys(skeleton, config.storage_scope)}


def check_keys(model: nn.Module, info: dict, source: str, allow_mismatch: bool = False, strict: bool = True) -> None:
    """Refuse what transformers' loading info reports: tensors of other shapes (unless `allow_mismatch`), tensors
    the model needs and the checkpoint lacks, tensors it has no place for (unless `strict=False`)."""
    name = type(model).__name__
    if info["mismatched_keys"] and not allow_mismatch:
        shown = "; ".join(
            f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in sorted(info["mismatched_keys"])[:3]
        )
        raise CheckpointError(
            f"The checkpoint at {source} does not fit this config: {len(info['mismatched_keys'])} tensor(s) "
            f"have other shapes ({shown}). Its config.json disagrees with its weights (e.g. another "
            "code_dim or slice_size)."
        )
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise CheckpointError(
            f"The checkpoint at {source} lacks {len(missing)} tensor(s) that {name} with this "
            f"config needs (e.g. {missing[:3]}); it was saved for another architecture or CSG setting."
        )
    unexpected = sorted(k for k in info["unexpected_keys"] if not _is_dropped_head(model, k))
    if unexpected and strict:
        raise CheckpointError(
            f"The checkpoint at {source} holds {len(unexpected)} tensor(s) that {name} with this config "
            f"has no place for (e.g. {unexpected[:3]}): it was saved for another architecture or CSG setting. "
            "Pass strict=False to drop them on purpose."
        )


_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}


def check_kinds(model: nn.Module, header: dict, source: str) -> None:
    """Refuse integer tensors where float ones belong, or the reverse: transformers casts what it loads to the
    model's dtype, so they would load as garbage without a word."""
    state = model.state_dict()
    wrong = sorted(
        f"{k} ({v['dtype']} for {state[k].dtype})"
        for k, v in header.items()
        if k in state and isinstance(v, dict) and (v.get("dtype") in _FLOAT_DTYPES) != state[k].is_floating_point()
    )
    if wrong:
        raise CheckpointError(
            f"The checkpoint at {source} stores {len(wrong)} tensor(s) with the wrong kind of number: {wrong[:3]}."
        )


def _is_dropped_head(model: nn.Module, key: str) -> bool:
    # a backbone-only model (no classifier of its own) loading a classifier checkpoint: the head's tensors are
    # expected, and unused
    if getattr(model.timm_model, "num_classes", 0):
        return False
    return any(key.startswith(f"{model.base_model_prefix}.{h}.") for h in classifier_names(model.timm_model))


def realign(model: nn.Module, alignment: int = 64) -> None:
    """Give every CPU tensor at an unaligned address storage of its own.

    safetensors returns tensors at arbitrary offsets, and CPU kernels choose their code path by alignment (a
    vectorised body with FMA, a scalar head and tail without; oneDNN's conv reorders): fresh storage for every
    misaligned tensor makes the outputs bit-identical to the saved model's, which is what lets eval.py reproduce
    a card's accuracy exactly. csg-hub files start their data on a 64-byte boundary
    (`integrity.write_safetensors`), so only tensors at unaligned offsets are copied."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.device.type != "cpu" or not tensor.data_ptr() % alignment:
            continue
        tensor.data = tensor.data.clone()
