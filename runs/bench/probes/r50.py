import sys, time, torch, timm, csg_hub, torch.nn.functional as F
torch.set_num_threads(int(sys.argv[1])); torch.manual_seed(0)
R = 32
x = torch.randn(128, 1, R, R); y = torch.randint(0, 10, (128,))
ms = {"dense": timm.create_model("resnet50", num_classes=10, in_chans=1),
      "csg": csg_hub.CSGForImageClassification(csg_hub.CSGConfig(architecture="resnet50", in_chans=1, image_size=R, id2label={i: str(i) for i in range(10)}))}
for n, m in ms.items():
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    def step():
        out = m(x); out = out if isinstance(out, torch.Tensor) else out.logits
        loss = F.cross_entropy(out, y); opt.zero_grad(); loss.backward(); opt.step()
    step()
    t = time.perf_counter()
    for _ in range(4): step()
    s = (time.perf_counter() - t) / 4
    print(f"resnet50 {n} {R}x{R} b128 fp32 {sys.argv[1]} thread(s): {s:.2f} s/step -> {s*469/60:.0f} min/epoch", flush=True)
