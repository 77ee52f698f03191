"""transformers models around a CSG-reparameterized timm backbone."""

from __future__ import annotations

import os

import timm
import torch
from safetensors import SafetensorError
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPoolingAndNoAttention, ImageClassifierOutput

from .configuration import CSGConfig
from .errors import CheckpointError
from .hub.push import push_model
from .layers.generator import SliceGenerator
from .layers.reparameterize import GeneratedConv, materialize, reparameterize


class CSGPreTrainedModel(PreTrainedModel):
    config: CSGConfig
    config_class = CSGConfig
    base_model_prefix = "timm_model"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    accepts_loss_kwargs = False

    def _build_backbone(self, num_classes: int) -> nn.Module:
        config = self.config
        model = timm.create_model(
            config.architecture,
            pretrained=False,
            in_chans=config.in_chans,
            num_classes=num_classes,
            **(config.model_args or {}),
        )
        reparameterize(model, config)
        # timm has already initialised every tensor its own way (He convs, zero-init last norms...);
        # flag them so post_init() leaves them alone. Meta tensors (from_pretrained) stay unflagged.
        for tensor in (*model.parameters(), *model.buffers()):
            if not tensor.is_meta:
                tensor._is_hf_initialized = True
        return model

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, SliceGenerator):
            module.reset_parameters()
        elif isinstance(module, GeneratedConv):
            init.normal_(module.codes)
            if module.bias is not None:
                init.zeros_(module.bias)
        else:
            super()._init_weights(module)

    def to_timm(self) -> nn.Module:
        """A plain timm model with the generated filters materialized (dense speed, no CSG overhead)."""
        dense = materialize(self.timm_model)
        dense.pretrained_cfg = {**dense.pretrained_cfg, **self.config.data_config}
        return dense

    def push_to_hub(self, repo_id: str, **kwargs):
        """Upload `config.json`, `model.safetensors` and a model card with the compression numbers.

        Takes `transformers`' arguments (commit_message, private, token, revision, create_pr, ...) and
        csg-hub's: `include_code=True` also uploads the modeling code for `trust_remote_code=True`;
        `results` (`[csg_hub.accuracy_result(...)]`), `training_command` and `dense_baseline` fill the card.
        """
        kwargs.pop("max_shard_size", None)  # CSG checkpoints are small: never sharded
        return push_model(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args, **kwargs):
        """As `PreTrainedModel.from_pretrained`, safetensors only, and strict: a checkpoint whose tensors
        are missing, unreadable or shaped for another config raises `CheckpointError` instead of
        yielding re-initialised weights (pass `ignore_mismatched_sizes=True` to re-initialise a
        classifier of another size on purpose)."""
        want_info = kwargs.pop("output_loading_info", False)
        allow_mismatch = kwargs.pop("ignore_mismatched_sizes", False)
        kwargs.setdefault("use_safetensors", True)
        source = str(pretrained_model_name_or_path)
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *args, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
            )
        except CheckpointError:
            raise
        except OSError as err:
            if "file named" not in str(err):
                raise
            raise CheckpointError(
                f"{source} has no model.safetensors (csg-hub loads safetensors checkpoints only, never pickles): {err}"
            ) from err
        except SafetensorError as err:
            raise CheckpointError(
                f"Could not read the safetensors checkpoint of {source}: {err}. "
                "The file is truncated or corrupt; download or save it again."
            ) from err
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
                f"The checkpoint at {source} lacks {len(missing)} tensor(s) that {cls.__name__} with this "
                f"config needs (e.g. {missing[:3]}); it was saved for another architecture or CSG setting."
            )
        _realign(model)
        return (model, info) if want_info else model


def _realign(model: nn.Module, alignment: int = 64) -> None:
    # safetensors returns tensors at arbitrary offsets, and CPU GEMM kernels choose their code path by
    # alignment: fresh storage for the matrices (codes, generator, classifier) makes the generated
    # filters and logits bit-identical to the saved model's. Vectors (norms, biases) go through
    # elementwise kernels, and dense conv weights are copied by oneDNN into its own layout anyway:
    # cloning them would only make loading slower than a dense model's.
    for tensor in model.parameters():
        if tensor.ndim != 2 or tensor.device.type != "cpu" or not tensor.data_ptr() % alignment:
            continue
        tensor.data = tensor.data.clone()


class CSGModel(CSGPreTrainedModel):
    """The CSG backbone without its classifier: pooled features and the last feature map."""

    def __init__(self, config: CSGConfig) -> None:
        super().__init__(config)
        self.timm_model = self._build_backbone(num_classes=0)
        self.post_init()

    def forward(
        self, pixel_values: torch.Tensor, return_dict: bool | None = None, **kwargs
    ) -> BaseModelOutputWithPoolingAndNoAttention | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        features = self.timm_model.forward_features(pixel_values.to(self.device, self.dtype))
        pooled = self.timm_model.forward_head(features)
        if not return_dict:
            return features, pooled
        return BaseModelOutputWithPoolingAndNoAttention(last_hidden_state=features, pooler_output=pooled)


class CSGForImageClassification(CSGPreTrainedModel):
    """A CSG timm classifier: `forward(pixel_values, labels=None)` -> `ImageClassifierOutput`."""

    def __init__(self, config: CSGConfig) -> None:
        super().__init__(config)
        if config.num_labels < 1:
            raise ValueError("CSGForImageClassification needs num_labels >= 1; use CSGModel for features.")
        self.num_labels = config.num_labels
        self.timm_model = self._build_backbone(num_classes=config.num_labels)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.LongTensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        logits = self.timm_model(pixel_values.to(self.device, self.dtype))
        loss = self.loss_function(labels, logits, self.config) if labels is not None else None
        if not return_dict:
            return (loss, logits) if loss is not None else (logits,)
        return ImageClassifierOutput(loss=loss, logits=logits)
