import gc, random, statistics, sys, time, copy
import torch, timm
sys.path.insert(0, '/work/main/scripts'); sys.path.insert(0, '/work/main')
import csg_hub
torch.set_num_threads(2)
arch, batch, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
gcoff = len(sys.argv) > 4
torch.manual_seed(0)
x = torch.randn(batch, 1, 28, 28)
csg = csg_hub.CSGForImageClassification(csg_hub.CSGConfig(architecture=arch, in_chans=1, image_size=28, id2label={i: str(i) for i in range(10)})).eval()
dense = timm.create_model(arch, num_classes=10, in_chans=1).eval()
dense2 = copy.deepcopy(dense)
exp = csg.to_timm().eval()
v = {"dense": lambda: dense(x), "dense2": lambda: dense2(x), "csg_timm": lambda: csg.timm_model(x), "to_timm": lambda: exp(x)}
s = {k: [] for k in v}
rng = random.Random(0)
with torch.inference_mode():
    for f in v.values():
        for _ in range(3): f()
    if gcoff: gc.collect(); gc.disable()
    t0 = time.time()
    for _ in range(rounds):
        for k in rng.sample(list(v), len(v)):
            a = time.perf_counter(); v[k](); s[k].append(time.perf_counter() - a)
    gc.enable()
print(f"{arch} b{batch} rounds={rounds} gcoff={gcoff} wall={time.time()-t0:.1f}s")
def boot(vals, base):
    r = [a/b for a, b in zip(vals, base)]
    meds = []
    g = random.Random(1)
    for _ in range(300):
        meds.append(statistics.median(g.choices(r, k=len(r))))
    meds.sort()
    return statistics.median(r), meds[7], meds[292]
for k in v:
    m, lo, hi = boot(s[k], s["dense"])
    print(f"  {k:10s} median {1e3*statistics.median(s[k]):7.2f} ms  medratio {statistics.median(s[k])/statistics.median(s['dense']):.4f}  paired {m:.4f} [{lo:.4f},{hi:.4f}]  vs to_timm paired {boot(s[k], s['to_timm'])[0]:.4f}")
