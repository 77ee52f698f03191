import time, torch, timm, csg_hub
import torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity
torch.set_num_threads(1); torch.manual_seed(0)
B, R = 8, 224
cfg = csg_hub.CSGConfig(architecture="resnet50", in_chans=1, image_size=R, id2label={i: str(i) for i in range(10)})
models = {"dense": timm.create_model("resnet50", num_classes=10, in_chans=1), "csg": csg_hub.CSGForImageClassification(cfg)}
x = torch.randn(B, 1, R, R); y = torch.randint(0, 10, (B,))
def step_fn(model):
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    def step():
        out = model(x); out = out if isinstance(out, torch.Tensor) else out.logits
        loss = F.cross_entropy(out, y); opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return step
V = {n: step_fn(m) for n, m in models.items()}
for n, f in V.items(): f()
for n, f in V.items():
    with profile(activities=[ProfilerActivity.CPU]) as p:
        for _ in range(2): f()
    print("=====", n)
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=40))
