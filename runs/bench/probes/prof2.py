import sys, time, torch, timm, csg_hub
import torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity
torch.set_num_threads(1); torch.manual_seed(0)
B, R = 8, 160
cfg = csg_hub.CSGConfig(architecture="resnet18", in_chans=1, image_size=R, id2label={i: str(i) for i in range(10)})
csg = csg_hub.CSGForImageClassification(cfg)
x = torch.randn(B, 1, R, R); y = torch.randint(0, 10, (B,))
def step_fn(model):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    def step():
        out = model(x); out = out if isinstance(out, torch.Tensor) else out.logits
        loss = F.cross_entropy(out, y); opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return step
V = {"csg_eager": step_fn(csg), "csg_c": step_fn(torch.compile(csg, fullgraph=True))}
for n, f in V.items():
    t = time.time(); f(); f(); print(n, "warm", time.time() - t, flush=True)
for n, f in V.items():
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as p:
        for _ in range(3): f()
    print("=====", n)
    print(p.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=30, max_shapes_column_width=90))
