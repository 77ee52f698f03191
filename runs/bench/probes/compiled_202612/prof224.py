"""Where a compiled 224x224 resnet18 training step spends its time: compiled dense vs compiled CSG,
inductor's C++ kernels profiled one by one (config.cpp.enable_kernel_profile). Usage: prof224.py [arch]"""
import sys, time, torch, timm, csg_hub
import torch.nn.functional as F
import torch._inductor.config as ic
from torch.profiler import profile, ProfilerActivity
ic.cpp.enable_kernel_profile = True
torch.set_num_threads(2); torch.manual_seed(0)
arch = sys.argv[1] if len(sys.argv) > 1 else "resnet18"
B, R = 16, 224
cfg = csg_hub.CSGConfig(architecture=arch, in_chans=1, image_size=R, id2label={i: str(i) for i in range(10)})
csg = csg_hub.CSGForImageClassification(cfg)
dense = timm.create_model(arch, num_classes=10, in_chans=1)
x = torch.randn(B, 1, R, R); y = torch.randint(0, 10, (B,))
def step_fn(model):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    def step():
        out = model(x); out = out if isinstance(out, torch.Tensor) else out.logits
        loss = F.cross_entropy(out, y); opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return step
V = {"dense_c": step_fn(torch.compile(dense)), "csg_c": step_fn(torch.compile(csg, fullgraph=True))}
for n, f in V.items():
    t = time.time(); f(); f(); print(n, "warm", round(time.time() - t, 1), flush=True)
for r in range(3):
    for n, f in V.items():
        t = time.perf_counter(); f(); print(n, "step ms", round(1e3 * (time.perf_counter() - t), 1), flush=True)
for n, f in V.items():
    with profile(activities=[ProfilerActivity.CPU]) as p:
        for _ in range(3): f()
    print("=====", n)
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=60))
