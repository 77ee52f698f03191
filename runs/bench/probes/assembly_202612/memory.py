"""What keeping the assembly's tensors between training steps costs in memory: peak resident set of a process
that runs 5 resnet18 (or resnet50) 28x28 b128 fp32 training steps, and the resident set between steps, with the
kept tensors (`kept`), with nothing reused (`fresh`, the holder check disabled), and for the dense timm model.
One process per variant. Usage: python runs/bench/probes/assembly_202612/memory.py [architecture]"""

import subprocess
import sys

CHILD = r"""
import resource, sys
import timm, torch, torch.nn.functional as F
import csg_hub
variant, arch = sys.argv[1], sys.argv[2]
torch.set_num_threads(2); torch.manual_seed(0)
if variant == "fresh":
    sys.modules["csg_hub.layers.reparameterize"]._ALONE = None
config = csg_hub.CSGConfig(architecture=arch, in_chans=1, image_size=28, id2label={i: str(i) for i in range(10)})
model = timm.create_model(arch, num_classes=10, in_chans=1) if variant == "dense" else csg_hub.CSGForImageClassification(config)
model.train()
opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
for _ in range(5):
    out = model(x)
    loss = F.cross_entropy(out if isinstance(out, torch.Tensor) else out.logits, y)
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    del out, loss
print(f"{variant:6s} {arch}: resident between steps {rss():7.1f} MiB, peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:7.1f} MiB")
"""

arch = sys.argv[1] if len(sys.argv) > 1 else "resnet18"
for variant in ("dense", "fresh", "kept"):
    subprocess.run([sys.executable, "-c", CHILD, variant, arch], check=True)
