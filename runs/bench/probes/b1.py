import time, statistics, torch, timm, csg_hub
torch.set_num_threads(1); torch.manual_seed(0)
cfg = csg_hub.CSGConfig(architecture="resnet18", in_chans=1, image_size=28, id2label={i: str(i) for i in range(10)})
csg = csg_hub.CSGForImageClassification(cfg).eval()
dense = timm.create_model("resnet18", num_classes=10, in_chans=1).eval()
exp = csg.to_timm().eval()
x = torch.randn(1, 1, 28, 28)
V = {"dense": lambda: dense(x), "backbone": lambda: csg.timm_model(x), "csg": lambda: csg(x), "to_timm": lambda: exp(x)}
from csg_hub.layers.reparameterize import generated_convs
convs = [c for _, c in generated_convs(csg)]
V["weights_only"] = lambda: [c.weight for c in convs]
S = {k: [] for k in V}
with torch.inference_mode():
    for f in V.values(): f(); f()
    names = list(V)
    for r in range(60):
        names = names[1:] + names[:1]
        for n in names:
            t = time.perf_counter()
            for _ in range(20): V[n]()
            S[n].append((time.perf_counter() - t) / 20)
for n, s in S.items():
    print(f"{n:12s} min {1e6*min(s):8.1f} us  med {1e6*statistics.median(s):8.1f} us  ratio(min) {min(s)/min(S['dense']):.3f}")
