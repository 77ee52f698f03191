"""Compiled dense vs compiled CSG training step alone (no eager variants in the process), 224x224 batch 16,
2 threads, interleaved rounds in a new random order each round; paired ratio with a 95% bootstrap interval.
Usage: compiled_pair.py [arch] [rounds]"""
import random, statistics, sys, time, torch, timm, csg_hub
import torch.nn.functional as F
torch.set_num_threads(2); torch.manual_seed(0)
arch = sys.argv[1] if len(sys.argv) > 1 else "resnet50"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 40
B, R = 16, 224
cfg = csg_hub.CSGConfig(architecture=arch, in_chans=1, image_size=R, id2label={i: str(i) for i in range(10)})
models = {"dense_compiled": timm.create_model(arch, num_classes=10, in_chans=1),
          "csg_compiled": csg_hub.CSGForImageClassification(cfg)}
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
times = {n: [] for n in V}
rng = random.Random(0)
for _ in range(rounds):
    order = list(V); rng.shuffle(order)
    for n in order:
        t = time.perf_counter(); V[n](); times[n].append(1e3 * (time.perf_counter() - t))
ratios = [a / b for a, b in zip(times["csg_compiled"], times["dense_compiled"])]
boot = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(1000))
for n, t in times.items():
    print(f"{arch} {n:15s} median {statistics.median(t):8.1f} ms  spread {min(t):.1f}-{max(t):.1f}")
print(f"{arch} csg_compiled vs dense_compiled: ratio of medians "
      f"{statistics.median(times['csg_compiled']) / statistics.median(times['dense_compiled']):.3f}x, paired "
      f"{statistics.median(ratios):.3f}x [{boot[25]:.3f}, {boot[974]:.3f}] over {rounds} rounds")
