import gc, random, statistics, sys, time, copy
import torch, timm
sys.path.insert(0, '/work/main')
import csg_hub
import importlib; R = importlib.import_module("csg_hub.layers.reparameterize")
torch.set_num_threads(2)
arch, batch, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
x = torch.randn(batch, 1, 28, 28)
csg = csg_hub.CSGForImageClassification(csg_hub.CSGConfig(architecture=arch, in_chans=1, image_size=28, id2label={i: str(i) for i in range(10)})).eval()
exp = csg.to_timm().eval()
exp_shared = csg.to_timm().eval()
with torch.inference_mode():
    csg(x)
    mods = dict(exp_shared.named_modules())
    for n, c in R.generated_convs(csg.timm_model):
        mods[n].weight = torch.nn.Parameter(c.weight, requires_grad=False)
csg2 = copy.deepcopy(csg)
class Fast: pass
orig = R.GeneratedConv.weight
def run_fast(): 
    R.GeneratedConv.weight = property(lambda self: self.__dict__["_csg_cache"][1])
    try: return csg2.timm_model(x)
    finally: R.GeneratedConv.weight = orig
v = {"exp": lambda: exp(x), "exp_shared_w": lambda: exp_shared(x), "csg_timm": lambda: csg.timm_model(x), "csg_fastprop": run_fast}
s = {k: [] for k in v}
rng = random.Random(0)
with torch.inference_mode():
    csg2(x)
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
    m, lo, hi = boot(s[k], s["exp"])
    print(f"  {k:14s} median {1e3*statistics.median(s[k]):7.3f} ms  paired vs exp {m:.4f} [{lo:.4f},{hi:.4f}]")
