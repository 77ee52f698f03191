"""Is a compiled CSG resnet50 step's convolution backward slower than compiled dense's (prof224_r50.log: +9% over
3 steps)? Self CPU time of the convolution kernels per step, profiled in alternating rounds of 2 steps.
Usage: convbwd.py [arch] [rounds]"""
import sys, statistics, torch, timm, csg_hub
import torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity
torch.set_num_threads(2); torch.manual_seed(0)
arch = sys.argv[1] if len(sys.argv) > 1 else "resnet50"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 6
B, R = 16, 224
cfg = csg_hub.CSGConfig(architecture=arch, in_chans=1, image_size=R, id2label={i: str(i) for i in range(10)})
models = {"dense_c": timm.create_model(arch, num_classes=10, in_chans=1),
          "csg_c": csg_hub.CSGForImageClassification(cfg)}
x = torch.randn(B, 1, R, R); y = torch.randint(0, 10, (B,))
def step_fn(model):
    compiled = torch.compile(model, fullgraph=isinstance(model, csg_hub.CSGForImageClassification))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    def step():
        out = compiled(x); out = out if isinstance(out, torch.Tensor) else out.logits
        loss = F.cross_entropy(out, y); opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return step
V = {n: step_fn(m) for n, m in models.items()}
for f in V.values():
    f(); f()
ops = ("aten::convolution_backward", "aten::mkldnn_convolution")
per = {n: {o: [] for o in ops + ("total",)} for n in V}
import collections, re
by_key = {n: collections.defaultdict(float) for n in V}  # self CPU ms summed over all profiled steps, by op or kernel kind


def kind(key):  # inductor kernel names without the graph prefix and the kernel's index
    return re.sub(r"_\d+$", "", re.sub(r"^graph_\d+_", "", key))
for r in range(rounds):
    for n in (list(V) if r % 2 == 0 else list(V)[::-1]):
        with profile(activities=[ProfilerActivity.CPU]) as p:
            V[n](); V[n]()
        ka = {e.key: e.self_cpu_time_total for e in p.key_averages()}
        for o in ops:
            per[n][o].append(ka.get(o, 0) / 2e3)
        per[n]["total"].append(sum(ka.values()) / 2e3)
        for k, v in ka.items():
            by_key[n][kind(k)] += v / 1e3
for n, d in per.items():
    print(n, "  ".join(f"{o}: median {statistics.median(v):.1f} ms/step ({min(v):.1f}-{max(v):.1f})" for o, v in d.items()))
steps = 2 * rounds
diff = {k: (by_key["csg_c"].get(k, 0) - by_key["dense_c"].get(k, 0)) / steps for k in set(by_key["csg_c"]) | set(by_key["dense_c"])}
print("largest differences, csg_c minus dense_c, ms per step (self CPU, all profiled steps):")
for k, v in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:25]:
    print(f"{v:+8.1f}  {k[:110]}")
