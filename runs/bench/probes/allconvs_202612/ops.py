"""resnet50 with every conv generated, 28x28 batch 128 fp32 training step, 2 threads: where the CSG step's time over
its floor (dense step + generator GEMMs alone, as bench.py) goes, op by op. Self CPU time per step, summed over
profiled steps in alternating rounds; wall time per step alongside. Usage: ops.py [arch] [rounds]"""
import collections, statistics, sys, time, torch, timm, csg_hub
import torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity
from csg_hub.layers.reparameterize import generated_convs
torch.set_num_threads(2); torch.manual_seed(0)
arch = sys.argv[1] if len(sys.argv) > 1 else "resnet50"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 6
cfg = csg_hub.CSGConfig(architecture=arch, in_chans=1, image_size=28, id2label={i: str(i) for i in range(10)},
                        generate_pointwise=True)
csg = csg_hub.CSGForImageClassification(cfg).train()
dense = timm.create_model(arch, num_classes=10, in_chans=1).train()
x = torch.randn(128, 1, 28, 28); y = torch.randint(0, 10, (128,))
def step_fn(model):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    def step():
        out = model(x); out = out if isinstance(out, torch.Tensor) else out.logits
        loss = F.cross_entropy(out, y); opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return step
work = [(c.__dict__["_csg_generator"], c.codes) for _, c in generated_convs(csg)]
grads = [torch.randn_like(g(c)) for g, c in work]
dense_step = step_fn(dense)
def floor():
    dense_step()
    torch.autograd.backward([g(c) for g, c in work], grads)
V = {"floor": floor, "csg": step_fn(csg)}
for f in V.values():
    f(); f()
ops = {n: collections.defaultdict(float) for n in V}
wall = {n: [] for n in V}
for r in range(rounds):
    for n in (list(V) if r % 2 == 0 else list(V)[::-1]):
        with profile(activities=[ProfilerActivity.CPU]) as p:
            t = time.perf_counter(); V[n](); V[n](); wall[n].append((time.perf_counter() - t) / 2 * 1e3)
        for e in p.key_averages():
            ops[n][e.key] += e.self_cpu_time_total / 1e3
steps = 2 * rounds
for n in V:
    print(f"{n}: wall median {statistics.median(wall[n]):.1f} ms/step, self CPU {sum(ops[n].values()) / steps:.1f} ms/step")
diff = {k: (ops["csg"].get(k, 0) - ops["floor"].get(k, 0)) / steps for k in set(ops["csg"]) | set(ops["floor"])}
print("largest differences, csg minus floor, self CPU ms per step:")
for k, v in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:25]:
    print(f"{v:+8.2f}  {k[:100]}")
