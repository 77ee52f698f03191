import gc, random, statistics, sys, time, importlib
import torch
sys.path.insert(0, '/work/main')
import csg_hub
R = importlib.import_module("csg_hub.layers.reparameterize")
torch.set_num_threads(2)
arch, batch, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
x = torch.randn(batch, 1, 28, 28)
csg = csg_hub.CSGForImageClassification(csg_hub.CSGConfig(architecture=arch, in_chans=1, image_size=28, id2label={i: str(i) for i in range(10)})).eval()
orig = R.GeneratedConv.weight
def p_checks(self):
    if (torch.is_grad_enabled() and self._csg_needs_grad()) or torch.compiler.is_compiling():
        return None
    return self.__dict__["_csg_cache"][1]
def p_key(self):
    key = self._csg_cache_key()
    cached = self.__dict__.get("_csg_cache")
    if cached is None or cached[0] != key:
        raise RuntimeError
    return cached[1]
def p_fast(self):
    return self.__dict__["_csg_cache"][1]
props = {"real": orig, "checks": property(p_checks), "key": property(p_key), "fast": property(p_fast)}
def mk(p):
    def run():
        R.GeneratedConv.weight = p
        try: return csg.timm_model(x)
        finally: R.GeneratedConv.weight = orig
    return run
v = {k: mk(p) for k, p in props.items()}
s = {k: [] for k in v}
rng = random.Random(0)
with torch.inference_mode():
    csg(x)
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
    m, lo, hi = boot(s[k], s["fast"])
    print(f"  {k:8s} median {1e3*statistics.median(s[k]):8.3f} ms  paired vs fast {m:.4f} [{lo:.4f},{hi:.4f}]")
