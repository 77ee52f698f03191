"""Dump inductor's generated code for a compiled CSG resnet18 training step (to read the filter-assembly kernels)."""
import sys, torch, csg_hub
import torch.nn.functional as F
torch.set_num_threads(2); torch.manual_seed(0)
R = int(sys.argv[1]) if len(sys.argv) > 1 else 224
cfg = csg_hub.CSGConfig(architecture="resnet18", in_chans=1, image_size=R, id2label={i: str(i) for i in range(10)})
csg = torch.compile(csg_hub.CSGForImageClassification(cfg), fullgraph=True)
x = torch.randn(16, 1, R, R); y = torch.randint(0, 10, (16,))
F.cross_entropy(csg(x).logits, y).backward()
