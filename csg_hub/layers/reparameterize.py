"""Turn any timm CNN into its CSG form, and back into a plain timm model.

A generated convolution keeps its own class (so `Conv2dSame`, `StdConv2d`, ... keep their forward),
loses its `weight` Parameter and gains a `codes` Parameter; `weight` becomes a property that asks the
shared generator of its kernel size for the slices and assembles them into the filter bank.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import math
import sys
from collections.abc import Iterator

import torch
from torch import nn

from ..configuration import CSGConfig
from ..timm_utils import classifier_names, stem_names
from .generator import SliceGenerator

GENERATORS_ATTR = "csg_generators"
SKIPPED_ATTR = "csg_skipped"


class GeneratedConv:
    """Mixin placed in front of a conv's class: `weight` is generated from `codes`."""

    _csg_base: type[nn.Module]
    codes: nn.Parameter

    @property
    def weight(self) -> torch.Tensor:
        # Under torch.compile / torch.export the filters are part of the graph: the cache and the kept buffers
        # below compare data pointers and mutate the module, which would break the graph and force recompiles.
        if torch.compiler.is_compiling():
            return self._generate_weight(None)
        if torch.is_grad_enabled() and self._csg_needs_grad():
            return self._generate_weight(self.__dict__.setdefault("_csg_buffers", {}))
        # Without autograd the filters only change when a parameter is written or replaced: the cache holds
        # the version counter (optimizer steps, load_state_dict, in-place edits) and data pointer (`.to()`,
        # `param.data = ...`, a new Parameter) of each tensor it was built from, and keeps those tensors'
        # storage alive, so that no new data can land at a remembered address. Read inline, without helper
        # calls or key tuples: this runs for every generated conv on every cached forward, between convolution
        # kernels, where each extra Python call costs several times what a microbenchmark shows.
        d = self.__dict__
        codes = self._parameters["codes"]
        generator = d["_csg_generator"]
        proj = generator._modules["proj"]._parameters["weight"]
        hidden = generator._modules.get("hidden")
        cached = d.get("_csg_cache")
        if (
            cached is None
            or cached[0] != codes._version
            or cached[1] != codes.data_ptr()
            or cached[2] != proj._version
            or cached[3] != proj.data_ptr()
            or (hidden is not None and cached[4] != _parameters_key(hidden))
        ):
            key = (codes._version, codes.data_ptr(), proj._version, proj.data_ptr())
            hidden_key = None if hidden is None else _parameters_key(hidden)
            sources = [codes, proj, *(() if hidden is None else hidden._parameters.values())]
            storages = tuple(t.untyped_storage() for t in sources if t is not None)
            with torch.no_grad():
                cached = (*key, hidden_key, self.generate_weight(), storages)
            d["_csg_cache"] = cached
        return cached[5]

    # Public views of the layer's CSG state. Not `scale`: timm's ScaledStdConv2d has a `scale` attribute of its own.
    @property
    def generator(self) -> SliceGenerator:
        """The shared `SliceGenerator` of this layer's kernel size (registered under the model's `csg_generators`)."""
        return self.__dict__["_csg_generator"]

    @property
    def grid(self) -> tuple[int, int]:
        """`(output blocks, input blocks)`: the slice grid that covers the filters (edge blocks are cropped)."""
        return self.__dict__["_csg_grid"]

    @property
    def fan_in_scale(self) -> float:
        """The factor on this layer's generated filters: `sqrt(2 / fan_in)` with `fan_in_scaling`, else 1."""
        return self.__dict__["_csg_scale"]

    def generate_weight(self) -> torch.Tensor:
        """Assemble this layer's filters, shape `(C_out, C_in // groups, kh, kw)`, from its codes."""
        return self._generate_weight(None)

    def _generate_weight(self, buffers: dict | None) -> torch.Tensor:
        generator = self.__dict__["_csg_generator"]
        n_out, n_in = self.__dict__["_csg_grid"]
        s, (kh, kw) = generator.slice_size, generator.kernel_size
        slices = generator(self.codes, self.__dict__["_csg_scale"]).view(n_out, n_in, s, s, kh, kw)
        c_in = self.in_channels // self.groups
        if torch.onnx.is_in_onnx_export() and not torch.compiler.is_compiling():
            raise RuntimeError(
                "The TorchScript ONNX exporter (torch.onnx.export(..., dynamo=False)) cannot trace the CSG filter "
                "assembly (shapes become tensors under its tracer). Use the default exporter, "
                "torch.onnx.export(model, args, dynamo=True) (needs the onnxscript package), or export the dense "
                "equivalent, model.to_timm()."
            )
        if torch.compiler.is_compiling():
            # the compiler fuses these views and the crop into one kernel; AssembleFilters' strided copies
            # are what eager mode needs, and a graph break here
            filters = slices.permute(0, 2, 1, 3, 4, 5).reshape(n_out * s, n_in * s, kh, kw)
            return filters[: self.out_channels, :c_in]
        return AssembleFilters.apply(slices, self.out_channels, c_in, buffers)

    def train(self, mode: bool = True):
        self.__dict__.pop("_csg_cache", None)
        if not mode:
            self.__dict__.pop("_csg_buffers", None)
        return super().train(mode)

    def __reduce_ex__(self, protocol):
        # The class is made at run time (one per conv base class) and cannot be found by name: rebuild it
        # from its importable base. The filter cache and the training buffers are derived state: not pickled.
        state = {k: v for k, v in self.__dict__.items() if k not in ("_csg_cache", "_csg_buffers")}
        return _unpickle_generated, (self._csg_base,), state

    def _csg_tensors(self) -> list[torch.Tensor]:
        return [self.codes, *self.__dict__["_csg_generator"].parameters()]

    def _csg_needs_grad(self) -> bool:
        return self._parameters["codes"].requires_grad or any(t.requires_grad for t in self._csg_tensors())



def _parameters_key(module: nn.Module) -> tuple:
    return tuple((t._version, t.data_ptr()) for t in module._parameters.values() if t is not None)


def _block_spans(channels: int, slice_size: int) -> list[tuple[int, int, int]]:
    """`(first block, number of blocks, channels used per block)`: full blocks, then a cropped last one."""
    full, rest = divmod(channels, slice_size)
    return ([(0, full, slice_size)] if full else []) + ([(full, 1, rest)] if rest else [])


Geometry = tuple[tuple[int, ...], tuple[int, ...], int]


def _geometry(view: torch.Tensor) -> Geometry:
    return tuple(view.shape), view.stride(), view.storage_offset()


@functools.lru_cache(maxsize=1024)
def _assembly_plan(slices_shape: tuple[int, ...], c_out: int, c_in: int):
    """Where each block of slices lands in the filters, as `as_strided` geometries (element strides and offsets).

    Worked out once per layer shape on meta tensors: building these views with slicing and permutes on every
    training step cost as much Python time as the copies themselves. The forward writes into a buffer whose rows
    are padded to whole blocks (cropping rows is then a free view), so one copy per block column is enough.
    """
    n_out, s = slices_shape[0], slices_shape[2]
    kernel = tuple(slices_shape[4:])
    slices = torch.empty(slices_shape, device="meta")
    padded = torch.empty(n_out * s, c_in, *kernel, device="meta")
    forward = []
    for c0, nc, cols in _block_spans(c_in, s):
        block = slices[:, c0 : c0 + nc, :, :cols].permute(0, 2, 1, 3, 4, 5)
        region = padded[:, c0 * s : c0 * s + nc * cols].view(n_out, s, nc, cols, *kernel)
        forward.append((_geometry(block), _geometry(region)))
    # backward reads the conv's (c_out, c_in) gradient: rows cannot be padded there, so full and cropped rows
    # are separate copies; the cropped-away part of the last block row/column gets no gradient (zeros)
    filters = torch.empty(c_out, c_in, *kernel, device="meta")
    backward = []
    for b0, nb, rows in _block_spans(c_out, s):
        for c0, nc, cols in _block_spans(c_in, s):
            block = slices[b0 : b0 + nb, c0 : c0 + nc, :rows, :cols].permute(0, 2, 1, 3, 4, 5)
            region = filters[b0 * s : b0 * s + nb * rows, c0 * s : c0 * s + nc * cols]
            backward.append((_geometry(block), _geometry(region.view(nb, rows, nc, cols, *kernel))))
    zeros = [_geometry(slices[c_out // s :, :, c_out % s :])] if c_out % s else []
    zeros += [_geometry(slices[:, c_in // s :, :, c_in % s :])] if c_in % s else []
    return (n_out * s, c_in, *kernel), forward, backward, zeros


def _holders(tensor: torch.Tensor) -> tuple[int, int]:
    """How many tensors, and how many Python references, hold `tensor`'s storage."""
    storage = tensor.untyped_storage()
    return torch._C._storage_Use_Count(storage._cdata), sys.getrefcount(storage)


# what `_holders` reads for a tensor nothing else shares (None: this torch cannot tell, so nothing is reused)
_ALONE = _holders(torch.empty(1)) if hasattr(torch._C, "_storage_Use_Count") else None


def _reusable(buffers: dict | None, name: str, shape: tuple[int, ...], like: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """A tensor of `shape` like `like`, and whether it is new: the one kept under `name` in `buffers` when no
    other tensor or reference holds its storage (so writing into it cannot change anything anyone can see),
    otherwise a new one, kept for next time.

    Training steps assemble the filters, and their gradient, into the same few large tensors every step:
    allocating them afresh each time costs more than the copies (the allocator returns that memory to the
    system and the next step takes page faults to get it back).
    """
    kept = None if buffers is None else buffers.get(name)
    if (
        kept is not None
        and _ALONE is not None
        and kept.shape == shape
        and kept.dtype == like.dtype
        and kept.device == like.device
        and _holders(kept) == _ALONE
    ):
        return kept, False
    fresh = like.new_empty(shape)
    if buffers is not None:
        buffers[name] = fresh
    return fresh, True


def _at(tensor: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    size, stride, offset = geometry
    return tensor.as_strided(size, stride, tensor.storage_offset() + offset)


class AssembleFilters(torch.autograd.Function):
    """Slices `(n_out, n_in, S, S, kh, kw)` -> filters `(c_out, c_in, kh, kw)`, cropped.

    One strided copy each way, instead of autograd's permute, reshape and crop, each of which
    would make a full pass over the filters in forward and again in backward. With `buffers` (a dict the
    layer keeps), the filters and their gradient are written into tensors reused from earlier calls
    whenever nothing else holds them.
    """

    @staticmethod
    def forward(ctx, slices: torch.Tensor, c_out: int, c_in: int, buffers: dict | None = None) -> torch.Tensor:
        slices = slices.contiguous()
        plan = _assembly_plan(tuple(slices.shape), c_out, c_in)
        ctx.plan, ctx.slices_shape, ctx.buffers = plan, slices.shape, buffers
        padded, _ = _reusable(buffers, "filters", plan[0], slices)
        for block, region in plan[1]:
            _at(padded, region).copy_(_at(slices, block))
        # always a view: the kept tensor itself must not become this graph's output (it would hold the graph)
        return padded[:c_out]

    @staticmethod
    def backward(ctx, grad_filters: torch.Tensor):
        grad_filters = grad_filters.contiguous()
        grad, new = _reusable(ctx.buffers, "grad", ctx.slices_shape, grad_filters)
        if new:  # the cropped-away part of the last block row/column gets no gradient; copies never write it
            for zeros in ctx.plan[3]:
                _at(grad, zeros).zero_()
        for block, region in ctx.plan[2]:
            _at(grad, block).copy_(_at(grad_filters, region))
        return grad, None, None, None


_GENERATED_CLASSES: dict[type, type] = {}


def _generated_class(base: type[nn.Module]) -> type[nn.Module]:
    if base not in _GENERATED_CLASSES:
        _GENERATED_CLASSES[base] = type(f"Generated{base.__name__}", (GeneratedConv, base), {"_csg_base": base})
    return _GENERATED_CLASSES[base]


def _unpickle_generated(base: type[nn.Module]) -> nn.Module:
    cls = _generated_class(base)
    return cls.__new__(cls)


def kernel_key(kernel_size: tuple[int, int]) -> str:
    """Name of the shared generator for a kernel size, e.g. `"3x3"`."""
    return "x".join(str(k) for k in kernel_size)


def _skip_reason(name: str, conv: nn.Module, config: CSGConfig, stems: set[str], heads: set[str]) -> str | None:
    """Why `conv` stays dense under the config's policy, or None when it is generated."""
    if not isinstance(conv, nn.Conv2d):
        return f"unsupported layer type {type(conv).__name__} (only nn.Conv2d and subclasses are generated)"
    if not isinstance(conv._parameters.get("weight"), nn.Parameter):
        return "weight is not a plain Parameter"
    if name in heads:
        return "classifier"
    if name in stems and not config.generate_stem:
        return "stem (generate_stem=False)"
    if config.include and not any(fnmatch.fnmatchcase(name, p) for p in config.include):
        return "not matched by include"
    if config.exclude and any(fnmatch.fnmatchcase(name, p) for p in config.exclude):
        return "matched by exclude"
    if conv.groups > 1 and not config.generate_grouped:
        return "grouped conv (generate_grouped=False)"
    if tuple(conv.kernel_size) == (1, 1) and not config.generate_pointwise:
        return "1x1 conv (generate_pointwise=False)"
    return None


def _is_conv_like(module: nn.Module) -> bool:
    weight = module._parameters.get("weight")
    return isinstance(module, nn.modules.conv._ConvNd) or (weight is not None and weight.ndim >= 3)


def reparameterize(model: nn.Module, config: CSGConfig) -> nn.Module:
    """Convert `model`'s convolutions to CSG form in place, following `config`'s policy.

    Adds one `codes` Parameter per generated conv and one `SliceGenerator` per kernel size
    (under `model.csg_generators`); convs the policy leaves dense are listed with the reason
    in `model.csg_skipped`. Returns `model`.
    """
    if hasattr(model, GENERATORS_ATTR):
        raise ValueError("This model is already in CSG form.")
    convs = [(n, m) for n, m in model.named_modules() if _is_conv_like(m)]
    stems = stem_names(model) or ({convs[0][0]} if convs else set())
    heads = classifier_names(model)

    generators: dict[str, SliceGenerator] = {}
    skipped: dict[str, str] = {}
    for name, conv in convs:
        reason = _skip_reason(name, conv, config, stems, heads)
        if reason is not None:
            skipped[name] = reason
            continue
        key = kernel_key(conv.kernel_size)
        dense_weight = conv._parameters["weight"]
        if key not in generators:
            pointwise = tuple(conv.kernel_size) == (1, 1)
            generators[key] = SliceGenerator(
                code_dim=config.code_dim,
                slice_size=config.pointwise_slice_size if pointwise else config.slice_size,
                kernel_size=tuple(conv.kernel_size),
                hidden_dim=config.generator_hidden_dim,
                activation=config.generator_activation,
            ).to(device=dense_weight.device, dtype=dense_weight.dtype)
        _convert(conv, generators[key], config)

    model.add_module(GENERATORS_ATTR, nn.ModuleDict(generators))
    setattr(model, SKIPPED_ATTR, skipped)
    return model


def _convert(conv: nn.Conv2d, generator: SliceGenerator, config: CSGConfig) -> None:
    dense_weight = conv._parameters.pop("weight")
    s = generator.slice_size
    grid = (math.ceil(conv.out_channels / s), math.ceil(conv.in_channels // conv.groups / s))
    fan_in = conv.in_channels // conv.groups * math.prod(conv.kernel_size)
    conv.__class__ = _generated_class(type(conv))
    # Plain attributes, not submodules: the generator is registered once, under csg_generators.
    conv.__dict__.update(
        _csg_generator=generator,
        _csg_grid=grid,
        _csg_scale=math.sqrt(2.0 / fan_in) if config.fan_in_scaling else 1.0,
    )
    codes = torch.empty(grid[0] * grid[1], generator.code_dim, device=dense_weight.device, dtype=dense_weight.dtype)
    if not codes.is_meta:  # from_pretrained builds on the meta device, where init is slow and pointless
        nn.init.normal_(codes)
    conv.codes = nn.Parameter(codes)


def generated_convs(model: nn.Module) -> Iterator[tuple[str, GeneratedConv]]:
    """The `(name, module)` pairs of the generated convolutions in `model`."""
    for name, module in model.named_modules():
        if isinstance(module, GeneratedConv):
            yield name, module


def clear_filter_cache(model: nn.Module) -> None:
    """Drop the filters kept between forwards: the cache of no-grad forwards (rebuilt on the next one) and the
    tensors training steps assemble filters and gradients into (allocated again on the next step)."""
    for _, conv in generated_convs(model):
        conv.__dict__.pop("_csg_cache", None)
        conv.__dict__.pop("_csg_buffers", None)


def materialize(model: nn.Module) -> nn.Module:
    """A copy of a CSG-form `model` with generated filters written as ordinary weights.

    The copy has no generator or codes; its outputs equal the CSG model's.
    """
    dense = copy.deepcopy(model)
    for _, conv in list(generated_convs(dense)):
        with torch.no_grad():
            weight = conv.generate_weight().detach().clone()
        requires_grad = conv.codes.requires_grad
        del conv._parameters["codes"]
        for attr in ("_csg_generator", "_csg_grid", "_csg_scale", "_csg_cache", "_csg_buffers"):
            conv.__dict__.pop(attr, None)
        conv.__class__ = conv._csg_base
        conv.weight = nn.Parameter(weight, requires_grad=requires_grad)
    if hasattr(dense, GENERATORS_ATTR):
        delattr(dense, GENERATORS_ATTR)
    dense.__dict__.pop(SKIPPED_ATTR, None)
    return dense
