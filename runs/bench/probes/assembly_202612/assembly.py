"""The CSG-only work of a training step in isolation: for every generated conv, the generator GEMM, the filter
assembly and their backward (gradient: a fixed random filters-shaped tensor), against the generator GEMMs alone
(bench.py's floor work). `before`: the assembly as of 0befed4 (views built by slicing on every call, 2-4 copies a
layer); `now`: the package's (as_strided geometry worked out once per shape, rows padded in forward, plain copies: the fan-in
scale moved onto the generator input) allocating its tensors afresh (`generate_weight()`); `reused`: the same
writing into the layer's kept tensors, as a training step's `conv.weight` does; `copy_only`:
one contiguous scaled copy of the generator output each way (the same bytes, no layout change); `copy_kept`: one
contiguous copy each way into tensors kept between rounds (what the copies alone cost, without the layout change). Interleaved
rounds, 2 threads. Usage: python runs/bench/probes/assembly_202612/assembly.py [architecture] [all-convs]"""

import resource
import statistics
import sys
import time

import torch

import csg_hub
from csg_hub.layers.reparameterize import generated_convs

arch = sys.argv[1] if len(sys.argv) > 1 else "resnet18"
policy = {"generate_pointwise": True} if sys.argv[2:] == ["all-convs"] else {}
torch.set_num_threads(2)
torch.manual_seed(0)
config = csg_hub.CSGConfig(architecture=arch, in_chans=1, image_size=28, id2label={i: str(i) for i in range(10)},
                           **policy)
convs = [c for _, c in generated_convs(csg_hub.CSGForImageClassification(config))]
grads = [torch.randn(c.out_channels, c.in_channels // c.groups, *c.kernel_size) for c in convs]
floor_grads = [torch.randn_like(c._csg_generator(c.codes)) for c in convs]


def _block_spans(channels, slice_size):
    full, rest = divmod(channels, slice_size)
    return ([(0, full, slice_size)] if full else []) + ([(full, 1, rest)] if rest else [])


class BeforeAssemble(torch.autograd.Function):  # verbatim from 0befed4
    @staticmethod
    def _pairs(slices, filters):
        s = slices.shape[2]
        for b0, nb, rows in _block_spans(filters.shape[0], s):
            for c0, nc, cols in _block_spans(filters.shape[1], s):
                block = slices[b0 : b0 + nb, c0 : c0 + nc, :rows, :cols].permute(0, 2, 1, 3, 4, 5)
                region = filters[b0 * s : b0 * s + nb * rows, c0 * s : c0 * s + nc * cols]
                yield block, region.view(nb, rows, nc, cols, *filters.shape[2:])

    @staticmethod
    def forward(ctx, slices, c_out, c_in, scale):
        ctx.slices_shape, ctx.scale = slices.shape, scale
        filters = slices.new_empty(c_out, c_in, *slices.shape[4:])
        for block, region in BeforeAssemble._pairs(slices, filters):
            torch.mul(block, scale, out=region)
        return filters

    @staticmethod
    def backward(ctx, grad_filters):
        s = ctx.slices_shape[2]
        c_out, c_in = grad_filters.shape[:2]
        grad = grad_filters.new_empty(ctx.slices_shape)
        grad[c_out // s :, :, c_out % s or s :].zero_()
        grad[:, c_in // s :, :, c_in % s or s :].zero_()
        for block, region in BeforeAssemble._pairs(grad, grad_filters.contiguous()):
            torch.mul(region, ctx.scale, out=block)
        return grad, None, None, None


def before_weight(c):
    gen = c._csg_generator
    n_out, n_in = c._csg_grid
    slices = gen(c.codes).view(n_out, n_in, gen.slice_size, gen.slice_size, *gen.kernel_size)
    return BeforeAssemble.apply(slices, c.out_channels, c.in_channels // c.groups, c._csg_scale)


class Contiguous(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x * scale

    @staticmethod
    def backward(ctx, g):
        return g * ctx.scale, None


class ContiguousKept(torch.autograd.Function):  # the same contiguous copies into tensors kept between rounds
    @staticmethod
    def forward(ctx, x, kept):
        ctx.kept = kept
        if "out" not in kept:
            kept["out"], kept["grad"] = torch.empty_like(x), torch.empty_like(x)
        return kept["out"].copy_(x).view_as(x)

    @staticmethod
    def backward(ctx, g):
        return ctx.kept["grad"].copy_(g), None


KEPT = [{} for _ in convs]


def floor():
    torch.autograd.backward([c._csg_generator(c.codes) for c in convs], floor_grads)


def before():
    torch.autograd.backward([before_weight(c) for c in convs], grads)


def now():
    torch.autograd.backward([c.generate_weight() for c in convs], grads)


def reused():
    torch.autograd.backward([c._generate_weight(c.__dict__.setdefault("_csg_buffers", {})) for c in convs], grads)


def copy_only():
    torch.autograd.backward([Contiguous.apply(c._csg_generator(c.codes), c._csg_scale) for c in convs], floor_grads)


for c, g in zip(convs, grads):  # before and now agree, values and codes gradients
    results = []
    for fn in (before_weight, lambda c: c.generate_weight()):
        c.codes.grad = None
        w = fn(c)
        (w * g).sum().backward()
        results.append((w.detach(), c.codes.grad.clone()))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-6) and torch.allclose(results[0][1], results[1][1], atol=1e-6)
    c.codes.grad = None

def copy_kept():
    outs = [ContiguousKept.apply(c._csg_generator(c.codes, c._csg_scale), k) for c, k in zip(convs, KEPT)]
    torch.autograd.backward(outs, floor_grads)


variants = {"floor": floor, "before": before, "now": now, "reused": reused, "copy_only": copy_only,
            "copy_kept": copy_kept}
for fn in variants.values():
    for _ in range(3):
        fn()
times = {k: [] for k in variants}
faults = {k: 0 for k in variants}
for _ in range(60):
    for k, fn in variants.items():
        f = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter()
        fn()
        times[k].append(time.perf_counter() - t)
        faults[k] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f
base = statistics.median(times["floor"])
print(f"{arch}{' all convs' if policy else ''}: {len(convs)} generated convs, 60 interleaved rounds")
for k, v in times.items():
    m = statistics.median(v)
    print(f"{k:10s} median {m * 1e3:7.2f} ms  min {min(v) * 1e3:7.2f} ms  median minus floor {(m - base) * 1e3:6.2f} ms"
          f"  minor faults/round {faults[k] / 60:7.0f}")
