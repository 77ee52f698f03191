"""Where resnet18's 28x28 CSG training step spends the time its floor does not: torch.profiler self CPU time per
op over 5 steps each of dense, the floor (dense step + the generator's GEMMs alone, as bench.py's row) and CSG
(paper policy), batch 128 fp32, 2 threads, after 3 warm-up steps. Usage: python runs/bench/probes/prof_28px.py"""

import runpy

import timm
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import csg_hub

ns = runpy.run_path("scripts/bench.py", run_name="bench")  # bench.py is a script: borrow its helpers
torch.set_num_threads(2)
torch.manual_seed(0)

x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
dense = timm.create_model("resnet18", num_classes=10, in_chans=1)
csg = csg_hub.CSGForImageClassification(ns["csg_config"]("resnet18", 28))


def step_fn(model):
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        out = model(x)
        loss = F.cross_entropy(out if isinstance(out, torch.Tensor) else out.logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


dense_step, csg_step = step_fn(dense), step_fn(csg)
work = ns["generator_work"](csg, "fp32")
variants = {"dense": dense_step, "floor": lambda: (dense_step(), work()), "csg": csg_step}
for fn in variants.values():
    for _ in range(3):
        fn()
totals = {}
for name, fn in variants.items():
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            fn()
    averages = prof.key_averages()
    totals[name] = {e.key: e.self_cpu_time_total / 5e3 for e in averages}  # ms per step
    print(f"===== {name}: {sum(totals[name].values()):.1f} ms self CPU per step")
keys = sorted(set().union(*totals.values()), key=lambda k: -abs(totals["csg"].get(k, 0) - totals["floor"].get(k, 0)))
print(f"{'op':45s} {'dense':>8s} {'floor':>8s} {'csg':>8s} {'csg-floor':>10s}  (ms per step)")
for k in keys[:25]:
    d, f, c = (totals[n].get(k, 0.0) for n in ("dense", "floor", "csg"))
    print(f"{k[:45]:45s} {d:8.2f} {f:8.2f} {c:8.2f} {c - f:10.2f}")
