"""`CSGConfig`: the timm architecture and every CSG hyper-parameter of a model."""

import difflib
from typing import Any

import timm
from huggingface_hub.dataclasses import strict
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import get_act_layer
from transformers import PreTrainedConfig

STORAGE_DTYPES = ("float32", "float16", "bfloat16", "int8", "int4", "int2")
DEFAULT_GROUP_SIZE = 64
STORAGE_SCOPES = ("csg", "all")
# The CSG hyper-parameters (what `scripts/train.py` and `scripts/convert.py` take as flags), and the values
# those that are choices may take.
CSG_FIELDS = ("slice_size", "code_dim", "generator_hidden_dim", "generator_activation", "generate_pointwise",
              "pointwise_slice_size", "generate_grouped", "generate_stem", "include", "exclude", "fan_in_scaling",
              "storage_dtype", "storage_scope", "storage_group_size")  # fmt: skip
FIELD_CHOICES = {"storage_dtype": STORAGE_DTYPES, "storage_scope": STORAGE_SCOPES}


# No `from __future__ import annotations` here: @strict checks each field against its annotation, which
# needs real types, not strings (a string for `include` would otherwise be matched letter by letter).
@strict
class CSGConfig(PreTrainedConfig):
    r"""
    Configuration of a timm CNN whose convolution filters come from a Convolutional Slice Generator.

    architecture (`str`, defaults to `"resnet18"`):
        Any timm model name (`timm.list_models()`).
    in_chans (`int`, defaults to 3):
        Number of input image channels.
    image_size (`int`, defaults to 224):
        Square input size the model was trained at.
    image_mean, image_std (`list[float]`, *optional*):
        Input normalization, one value per channel. Defaults to ImageNet's for 3 channels, 0.5 otherwise.
    model_args (`dict`, *optional*):
        Extra keyword arguments for `timm.create_model` (e.g. `{"drop_rate": 0.1}`).
    slice_size (`int`, defaults to 12):
        Slices are `slice_size x slice_size x k x k` blocks of a `k x k` convolution's weight.
    code_dim (`int`, defaults to 72):
        Length of each slice's code vector.
    generator_hidden_dim (`int`, defaults to 0):
        Width of the generator's hidden layer; 0 is the paper's single bias-free linear map.
    generator_activation (`str`, defaults to `"relu"`):
        Activation after the hidden layer (any name `timm.layers.get_act_layer` knows).
    generate_pointwise (`bool`, defaults to `False`):
        Also generate 1x1 convolutions (the paper leaves them dense).
    pointwise_slice_size (`int`, defaults to 36):
        Slice size for 1x1 convolutions; 36x36 holds as many weights as a 12x12x3x3 slice.
    generate_grouped (`bool`, defaults to `False`):
        Also generate grouped and depthwise convolutions.
    generate_stem (`bool`, defaults to `False`):
        Also generate the first convolution (timm's `first_conv`).
    include, exclude (`list[str]`, *optional*):
        fnmatch patterns on module names (`["layer4.*"]`): only convs matching `include` are generated,
        and none matching `exclude`. A bare string is refused, not wrapped.
    fan_in_scaling (`bool`, defaults to `True`):
        Multiply each generated filter by `sqrt(2 / fan_in)` so one shared generator yields
        He-initialised filters for layers of any width.
    storage_dtype (`str`, defaults to `"float32"`):
        How `save_pretrained` stores the codes and generators: `"float32"`, `"float16"`, `"bfloat16"`, `"int8"`
        (symmetric, one float32 scale per row), or `"int4"` / `"int2"` (16 / 4 levels symmetric about zero, one
        float16 scale per `storage_group_size` values, packed 2 / 4 to a byte). Loading dequantizes to float32;
        compute is float32.
    storage_group_size (`int`, defaults to 64):
        Values that share one scale in `"int4"` / `"int2"` storage (a positive multiple of 4): smaller groups
        follow the weights more closely and cost 2 bytes of scale per group.
    base_model (`str`, *optional*):
        Hub id or folder of the dense model this one was converted from (`from_dense`); cards name it.
    storage_scope (`str`, defaults to `"csg"`):
        `"csg"`: only codes and generators take `storage_dtype`; `"all"`: every weight matrix (convs, classifier)
        too. Biases, norms and their statistics always stay float32.
    """

    model_type = "csg"

    architecture: str = "resnet18"
    in_chans: int = 3
    image_size: int = 224
    image_mean: list[float] | None = None
    image_std: list[float] | None = None
    model_args: dict[str, Any] | None = None
    slice_size: int = 12
    code_dim: int = 72
    generator_hidden_dim: int = 0
    generator_activation: str = "relu"
    generate_pointwise: bool = False
    pointwise_slice_size: int = 36
    generate_grouped: bool = False
    generate_stem: bool = False
    include: list[str] | None = None
    exclude: list[str] | None = None
    fan_in_scaling: bool = True
    storage_dtype: str = "float32"
    storage_scope: str = "csg"
    storage_group_size: int = DEFAULT_GROUP_SIZE
    base_model: str | None = None

    def __post_init__(self, **kwargs) -> None:
        super().__post_init__(**kwargs)
        # transformers fills label2id only when it invents the labels; pipelines and Trainer read both maps
        if self.id2label is not None and not self.label2id:
            self.label2id = {name: int(index) for index, name in self.id2label.items()}

    def validate_architecture(self) -> None:
        super().validate_architecture()
        if not timm.is_model(self.architecture):
            close = difflib.get_close_matches(self.architecture, timm.list_models(), n=5)
            hint = f" Did you mean: {', '.join(close)}?" if close else " See timm.list_models()."
            raise ValueError(f"Unknown timm architecture {self.architecture!r} (timm {timm.__version__}).{hint}")

    def validate_csg(self) -> None:
        for name in ("in_chans", "image_size", "slice_size", "code_dim", "pointwise_slice_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"CSGConfig.{name} must be a positive integer, got {getattr(self, name)}.")
        if self.generator_hidden_dim < 0:
            raise ValueError(f"CSGConfig.generator_hidden_dim must be >= 0, got {self.generator_hidden_dim}.")
        try:
            get_act_layer(self.generator_activation)
        except Exception as err:
            raise ValueError(
                f"CSGConfig.generator_activation {self.generator_activation!r} is unknown to timm."
            ) from err
        for name in ("image_mean", "image_std"):
            values = getattr(self, name)
            if values is not None and len(values) != self.in_chans:
                raise ValueError(f"CSGConfig.{name} has {len(values)} values but in_chans is {self.in_chans}.")
        if self.storage_dtype not in STORAGE_DTYPES:
            raise ValueError(f"CSGConfig.storage_dtype must be one of {STORAGE_DTYPES}, got {self.storage_dtype!r}.")
        if self.storage_scope not in STORAGE_SCOPES:
            raise ValueError(f"CSGConfig.storage_scope must be one of {STORAGE_SCOPES}, got {self.storage_scope!r}.")
        if self.storage_group_size <= 0 or self.storage_group_size % 4:
            raise ValueError(
                f"CSGConfig.storage_group_size must be a positive multiple of 4 (int2 packs 4 values to a byte), "
                f"got {self.storage_group_size}."
            )
        if self.image_std is not None and any(s <= 0 for s in self.image_std):
            raise ValueError(f"CSGConfig.image_std must be positive, got {self.image_std}.")

    @property
    def data_config(self) -> dict[str, Any]:
        """timm-style data config (`timm.data.create_transform(**config.data_config)`)."""
        rgb = self.in_chans == 3
        return {
            "input_size": (self.in_chans, self.image_size, self.image_size),
            "interpolation": "bilinear",
            "mean": tuple(self.image_mean or (IMAGENET_DEFAULT_MEAN if rgb else (0.5,) * self.in_chans)),
            "std": tuple(self.image_std or (IMAGENET_DEFAULT_STD if rgb else (0.5,) * self.in_chans)),
            "crop_pct": 1.0,
            "crop_mode": "center",
        }
