"""transformers models around a CSG-reparameterized timm backbone."""

from __future__ import annotations

import os

import timm
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPoolingAndNoAttention, ImageClassifierOutput

from .checkpoint_io import load_checkpoint, save_checkpoint
from .configuration import CSGConfig
from .hub.model_repo import push_model
from .layers.generator import SliceGenerator
from .layers.reparameterize import GeneratedConv, generated_convs, materialize, reparameterize


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
        # where forward reads the device and dtype inputs are moved to: PreTrainedModel.device/.dtype walk
        # the module tree (~20 us a call, ~0.3% of a batch-1 28x28 forward); any parameter says the same
        name = next(n for n, _ in model.named_parameters())
        owner, _, attr = name.rpartition(".")
        self.__dict__["_input_reference"] = (model.get_submodule(owner), attr)
        # timm has already initialised every tensor its own way (He convs, zero-init last norms...);
        # flag them so post_init() leaves them alone. Meta tensors (from_pretrained) stay unflagged.
        for tensor in (*model.parameters(), *model.buffers()):
            if not tensor.is_meta:
                tensor._is_hf_initialized = True
        return model

    def _as_input(self, pixel_values: torch.Tensor) -> torch.Tensor:
        owner, attr = self.__dict__["_input_reference"]
        reference = owner._parameters[attr]
        return pixel_values.to(reference.device, reference.dtype)

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

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """As `PreTrainedModel.save_pretrained`, written in one pass: codes and generators in the config's
        `storage_dtype`, a CRC-32 of the tensor data in the safetensors metadata (checked by `from_pretrained`),
        the data laid out for aligned loading, and the model's image processor (`preprocessor_config.json`, for
        `pipeline` and `AutoImageProcessor`)."""
        save_checkpoint(self, save_directory, *args, **kwargs)

    @classmethod
    def from_dense(
        cls,
        source,
        *,
        fit: str = "least_squares",
        calibration: torch.Tensor | None = None,
        revision: str | None = None,
        fit_iterations: int = 12,
        output_fit_report: bool = False,
        **csg_options,
    ):
        """A CSG model converted from a trained dense timm model: `source` is a timm model object, a local
        folder or a Hub repo id (timm `hf-hub:` format, TimmWrapper repos, `push_timm` exports).

        The config comes from the source (architecture, channels, size, normalization, labels) and
        `csg_options` (slice_size, code_dim, policy...). Every tensor that is not generated (stem, dense
        convs, norms with their running statistics, classifier) is copied; codes and generators are fitted
        by least squares (`fit="activations"`: weighted by each input channel's mean square on the
        `calibration` batch; `fit_iterations` rounds of alternating least squares). Trained filters are far from low rank in slice space, so the fit is an
        initialisation: train against the parent afterwards (`scripts/convert.py`). With
        `output_fit_report=True` returns `(model, report)`: relative filter error per layer, energy kept.
        """
        from .conversion import copy_dense_tensors, fit_codes_and_generators, load_dense

        dense, kwargs, name = load_dense(source, revision)
        if name is not None:
            csg_options.setdefault("base_model", name)
        config = cls.config_class(**{**kwargs, **csg_options})
        model = cls(config)
        if not any(True for _ in generated_convs(model)):
            raise ValueError(
                f"Nothing to generate in {config.architecture} under this CSG policy (every conv stays dense: "
                f"{sorted(set(getattr(model.timm_model, 'csg_skipped', {}).values()))}); widen it, e.g. "
                "generate_pointwise=True."
            )
        dense = dense.float().eval()
        copy_dense_tensors(dense, model.timm_model)
        report = fit_codes_and_generators(dense, model.timm_model, fit, calibration, fit_iterations)
        model.eval()
        return (model, report) if output_fit_report else model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args, **kwargs):
        """As `PreTrainedModel.from_pretrained`, safetensors only, strict and verified.

        Raises `CheckpointError` instead of returning a silently wrong model when the checkpoint lacks tensors
        the config needs, holds tensors it does not (another architecture or CSG setting), holds them with
        other shapes or kinds (integer for float), or fails its integrity checks (see `csg_hub.integrity`); also
        when an int8 scale is not a finite positive number, or a checkpoint without a recorded CRC-32 holds NaN
        or inf (`allow_nonfinite=True` loads that one on purpose).
        Opt-ins for a different head: `ignore_mismatched_sizes=True` re-initialises tensors of another shape
        (a classifier for other labels), `strict=False` also drops tensors the model has no place for.
        """
        return load_checkpoint(cls, super().from_pretrained, pretrained_model_name_or_path, *args, **kwargs)


class _LossTask:
    """The two config fields transformers' classification loss reads (and writes)."""

    def __init__(self, problem_type: str | None, num_labels: int) -> None:
        self.problem_type = problem_type
        self.num_labels = num_labels


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
        features = self.timm_model.forward_features(self._as_input(pixel_values))
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
        logits = self.timm_model(self._as_input(pixel_values))
        loss = None
        if labels is not None:
            # transformers' loss infers problem_type and writes it into the config on the first call; a
            # stand-in keeps the config unchanged, so torch.compile does not recompile on the second step
            task = _LossTask(self.config.problem_type, self.config.num_labels)
            loss = self.loss_function(labels, logits, task)
        if not return_dict:
            return (loss, logits) if loss is not None else (logits,)
        return ImageClassifierOutput(loss=loss, logits=logits)
