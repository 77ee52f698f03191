"""Would a custom op (opaque to inductor, eager strided copies) assemble the filters of a compiled training step
faster than inductor's own fused permute/crop kernels? Compiled resnet18 CSG training step, 224x224 batch 16,
2 threads, three variants compiled side by side and timed in interleaved rounds:
  inductor  - the package's compile path (permute/reshape/crop traced into the graph)
  op        - a custom op writing contiguous filters (inductor then converts them to its channels-last layout)
  op_cl     - the same op writing channels-last filters directly
  op_kept   - `op` writing into tensors kept per layer and reused when nothing holds them (as eager training does)
  reorder   - no op: the generator's output columns reordered (its weight's rows permuted, a 93k-float copy) to
              (kh, kw, S, S), so that the channels-last filters inductor wants take runs of S floats from the slices
  package   - the compile path of the csg_hub checked out: at c242b35 (reverted in 8a16b67) its own operator, as `op`
Usage: customop.py [arch] [rounds] [variant,variant,...]"""
import functools, random, statistics, sys, time
import torch, csg_hub
import torch.nn.functional as F
from torch.library import custom_op
import csg_hub.layers.reparameterize  # noqa: F401
rp = sys.modules["csg_hub.layers.reparameterize"]

torch.set_num_threads(2); torch.manual_seed(0)
arch = sys.argv[1] if len(sys.argv) > 1 else "resnet18"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 10


@functools.lru_cache(maxsize=None)
def plan(slices_shape, c_out, c_in, filter_strides):
    n_out, n_in, s, _, kh, kw = slices_shape
    slices = torch.empty(slices_shape, device="meta")
    filters = torch.empty_strided((n_out * s, c_in, kh, kw), filter_strides, device="meta")
    fwd, bwd = [], []
    for c0, nc, cols in rp._block_spans(c_in, s):
        block = slices[:, c0 : c0 + nc, :, :cols].permute(0, 2, 1, 3, 4, 5)
        region = filters[:, c0 * s : c0 * s + nc * cols].unflatten(0, (n_out, s)).unflatten(2, (nc, cols))
        fwd.append((rp._geometry(block), rp._geometry(region)))
    for b0, nb, rows in rp._block_spans(c_out, s):
        for c0, nc, cols in rp._block_spans(c_in, s):
            block = slices[b0 : b0 + nb, c0 : c0 + nc, :rows, :cols].permute(0, 2, 1, 3, 4, 5)
            region = filters[b0 * s : b0 * s + nb * rows, c0 * s : c0 * s + nc * cols]
            bwd.append((rp._geometry(block), rp._geometry(region.unflatten(0, (nb, rows)).unflatten(2, (nc, cols)))))
    return fwd, bwd


def strides(shape, cl):
    t = torch.empty(shape, device="meta")
    return (t.to(memory_format=torch.channels_last) if cl else t).stride()


KEPT: dict[int, dict] = {}


@custom_op("csgprobe::assemble", mutates_args=())
def assemble(slices: torch.Tensor, c_out: int, c_in: int, cl: bool, key: int) -> torch.Tensor:
    n_out, n_in, s, _, kh, kw = slices.shape
    shape = (c_out, c_in, kh, kw)
    if key >= 0:
        filters, _ = rp._reusable(KEPT.setdefault(key, {}), "filters", shape, slices)
    else:
        filters = torch.empty_strided(shape, strides(shape, cl), dtype=slices.dtype)
    # exact-size filters: full and cropped block rows copied separately (the backward plan's regions)
    for block, region in plan(tuple(slices.shape), c_out, c_in, tuple(filters.stride()))[1]:
        rp._at(filters, region).copy_(rp._at(slices, block))
    return filters


@assemble.register_fake
def _(slices, c_out, c_in, cl, key):
    n_out, n_in, s, _, kh, kw = slices.shape
    shape = (c_out, c_in, kh, kw)
    return slices.new_empty_strided(shape, strides(shape, cl))


@custom_op("csgprobe::assemble_backward", mutates_args=())
def assemble_backward(grad: torch.Tensor, n_out: int, n_in: int, s: int, key: int) -> torch.Tensor:
    c_out, c_in, kh, kw = grad.shape
    if key >= 0:
        out, new = rp._reusable(KEPT.setdefault(key, {}), "grad", (n_out, n_in, s, s, kh, kw), grad)
        if new:
            out.zero_()
    else:
        out = grad.new_zeros(n_out, n_in, s, s, kh, kw)
    padded_strides = grad.stride()
    for block, region in plan(tuple(out.shape), c_out, c_in, tuple(padded_strides))[1]:
        rp._at(out, block).copy_(rp._at(grad, region))
    return out


@assemble_backward.register_fake
def _(grad, n_out, n_in, s, key):
    c_out, c_in, kh, kw = grad.shape
    return grad.new_empty(n_out, n_in, s, s, kh, kw)


def setup(ctx, inputs, output):
    slices = inputs[0]
    ctx.dims = (slices.shape[0], slices.shape[1], slices.shape[2], inputs[4])


assemble.register_autograd(lambda ctx, g: (assemble_backward(g, *ctx.dims), None, None, None, None),
                           setup_context=setup)

original = rp.GeneratedConv._generate_weight


def patched(self, buffers):
    variant = self.__dict__.get("_probe_variant", "inductor")
    if not torch.compiler.is_compiling() or variant == "package":
        return original(self, buffers)
    generator = self.__dict__["_csg_generator"]
    n_out, n_in = self.__dict__["_csg_grid"]
    s, (kh, kw) = generator.slice_size, generator.kernel_size
    slices = generator(self.codes, self.__dict__["_csg_scale"]).view(n_out, n_in, s, s, kh, kw)
    if variant == "reorder":
        proj = generator.proj.weight
        x = self.codes if generator.hidden is None else generator.act(generator.hidden(self.codes))
        reordered = proj.view(s, s, kh, kw, -1).permute(2, 3, 0, 1, 4).reshape(proj.shape)
        slices = F.linear(x * self.__dict__["_csg_scale"], reordered).view(n_out, n_in, kh, kw, s, s)
        filters = slices.permute(0, 4, 2, 3, 1, 5).reshape(n_out * s, kh, kw, n_in * s)
        return filters[: self.out_channels, :, :, : self.in_channels // self.groups].permute(0, 3, 1, 2)
    if variant == "inductor":  # the package's compile path at 7b8e719 and again since 8a16b67
        filters = slices.permute(0, 2, 1, 3, 4, 5).reshape(n_out * s, n_in * s, kh, kw)
        return filters[: self.out_channels, : self.in_channels // self.groups]
    key = id(self) if variant == "op_kept" else -1
    return torch.ops.csgprobe.assemble(slices, self.out_channels, self.in_channels // self.groups, variant == "op_cl", key)


rp.GeneratedConv._generate_weight = patched

B, R = 16, 224
cfg = csg_hub.CSGConfig(architecture=arch, in_chans=1, image_size=R, id2label={i: str(i) for i in range(10)})
base = csg_hub.CSGForImageClassification(cfg)
x = torch.randn(B, 1, R, R); y = torch.randint(0, 10, (B,))
import copy


def make(variant):
    model = copy.deepcopy(base)
    for _, conv in rp.generated_convs(model):
        conv.__dict__["_probe_variant"] = variant
    return model


def grads(model):
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x).logits, y).backward()
    return [p.grad.clone() for p in model.parameters()]


eager = grads(make("inductor"))
steps = {}
chosen = sys.argv[3].split(",") if len(sys.argv) > 3 else ["inductor", "op", "op_cl", "op_kept"]
for variant in chosen:
    model = make(variant)
    compiled = torch.compile(model, fullgraph=True)
    t = time.time(); g = grads(compiled)
    err = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item() for a, b in zip(g, eager))
    print(variant, "compiled in", round(time.time() - t, 1), "s; max rel grad diff vs eager", f"{err:.2e}", flush=True)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step(compiled=compiled, opt=opt):
        loss = F.cross_entropy(compiled(x).logits, y); opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    step(); step()
    steps[variant] = step
times = {v: [] for v in steps}
rng = random.Random(0)
for r in range(rounds):
    order = list(steps); rng.shuffle(order)
    for v in order:
        t = time.perf_counter(); steps[v](); times[v].append(1e3 * (time.perf_counter() - t))
for v, ts in times.items():
    paired = statistics.median(a / b for a, b in zip(ts, times["inductor"]))
    print(f"{v:9s} median {statistics.median(ts):8.1f} ms  min {min(ts):8.1f}  paired vs inductor {paired:.3f}x", flush=True)
