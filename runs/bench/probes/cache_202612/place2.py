import gc, random, statistics, sys, time, copy, importlib
import torch, timm
sys.path.insert(0, '/work/main')
import csg_hub
R = importlib.import_module("csg_hub.layers.reparameterize")
torch.set_num_threads(2)
arch, batch, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
x = torch.randn(batch, 1, 28, 28)
csg = csg_hub.CSGForImageClassification(csg_hub.CSGConfig(architecture=arch, in_chans=1, image_size=28, id2label={i: str(i) for i in range(10)})).eval()
v = {}
orig = R.GeneratedConv.weight
fast = property(lambda self: self.__dict__["_csg_cache"][1])
def run_fast():
    R.GeneratedConv.weight = fast
    try: return csg.timm_model(x)
    finally: R.GeneratedConv.weight = orig
with torch.inference_mode():
    csg(x)
    sh = csg.to_timm().eval()
    mods = dict(sh.named_modules())
    for n, c in R.generated_convs(csg.timm_model):
        mods[n].weight = torch.nn.Parameter(c.weight, requires_grad=False)
    # the other way round: CSG timm model whose non-generated tensors share memory with sh
    for n, p in sh.named_parameters():
        pass
    v["shared_w"] = lambda: sh(x)
    v["csg_timm"] = lambda: csg.timm_model(x)
    v["csg_fastprop"] = run_fast
s = {k: [] for k in v}
rng = random.Random(0)
with torch.inference_mode():
    for f in v.values():
        for _ in range(3): f()
    gc.collect(); gc.disable()
    for _ in range(rounds):
        for k in rng.sample(list(v), len(v)):
            a = time.perf_counter(); v[k](); s[k].append(time.perf_counter() - a)
    gc.enable()
def boot(vals, base):
    r = [a/b for a, b in zip(vals, base)]
    g = random.Random(1); meds = sorted(statistics.median(g.choices(r, k=len(r))) for _ in range(300))
    return statistics.median(r), meds[7], meds[292]
print(arch, batch, rounds)
for k in v:
    m, lo, hi = boot(s[k], s["shared_w"])
    print(f"  {k:12s} median {1e3*statistics.median(s[k]):8.3f} ms  paired vs shared_w {m:.4f} [{lo:.4f},{hi:.4f}]")
