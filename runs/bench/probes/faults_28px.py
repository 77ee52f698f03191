"""Minor page faults and wall time per training step, resnet18 28x28 b128 fp32, 2 threads: dense, the floor (dense +
generator GEMMs, as bench.py's row) and CSG (paper policy), 3 warm-up steps then 10 steps each, interleaved in 5
rounds of 2. A fault is the kernel handing the process a fresh page (allocator memory returned to the OS and asked for
again). Usage: python runs/bench/probes/faults_28px.py"""

import resource
import runpy
import statistics
import time

import timm
import torch
import torch.nn.functional as F

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
faults = {k: [] for k in variants}
times = {k: [] for k in variants}
for _ in range(5):
    for name, fn in variants.items():
        for _ in range(2):
            before, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
            faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
for name in variants:
    print(f"{name:6s} median {1e3 * statistics.median(times[name]):6.1f} ms/step, minor faults per step: median "
          f"{statistics.median(faults[name]):8.0f} (~{statistics.median(faults[name]) * 4 / 1024:.0f} MiB of 4 KiB pages)")
