"""What the cached eval path costs per forward: resnet18, 28x28, batch 1, 2 threads, the CSG timm model with
four versions of the `weight` property swapped in, interleaved call by call (shuffled order, GC off, N rounds),
paired ratios against `fast` (the cached tensor returned with no check at all; 95% bootstrap interval) and the
median of `same_memory` (the `to_timm()` export reading the same filter tensors) as the dense reference;
`copy_a`, `copy_b`: two more `to_timm()` exports, each with its own copy of the filters (same values, other
memory): how far memory placement alone moves a batch-1 forward.

- before: the property as of 7c9a1f7 (`_csg_cache_key()` and the generator's `state_key()` each a tuple with
  data pointer, version and dtype);
- now: the property in csg_hub (version and data pointer of the codes and of the generator's weight read
  inline, no key tuples);
- checks: only the grad / compile checks, then the cached tensor;
- fast: the cached tensor alone.

Usage: python runs/bench/probes/cache_check.py [rounds]
"""

import gc
import importlib
import random
import statistics
import sys
import time

import torch

import csg_hub

R = importlib.import_module("csg_hub.layers.reparameterize")
torch.set_num_threads(2)
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 500
torch.manual_seed(0)
x = torch.randn(1, 1, 28, 28)
config = csg_hub.CSGConfig(architecture="resnet18", in_chans=1, image_size=28, id2label={i: str(i) for i in range(10)})
csg = csg_hub.CSGForImageClassification(config).eval()
now = R.GeneratedConv.weight


def old_state_key(generator):
    weight = generator._modules["proj"]._parameters["weight"]
    return (weight.data_ptr(), weight._version, weight.dtype)


def before(self):
    if (torch.is_grad_enabled() and self._csg_needs_grad()) or torch.compiler.is_compiling():
        return self.generate_weight()
    codes = self._parameters["codes"]
    key = (codes.data_ptr(), codes._version, codes.dtype, *old_state_key(self.__dict__["_csg_generator"]))
    cached = self.__dict__.get("_csg_old")
    if cached is None or cached[0] != key:
        cached = (key, self.__dict__["_csg_cache"][5])
        self.__dict__["_csg_old"] = cached
    return cached[1]


def checks(self):
    if (torch.is_grad_enabled() and self._csg_needs_grad()) or torch.compiler.is_compiling():
        return self.generate_weight()
    return self.__dict__["_csg_cache"][5]


def fast(self):
    return self.__dict__["_csg_cache"][5]


def with_property(prop):
    def run():
        R.GeneratedConv.weight = prop
        try:
            return csg.timm_model(x)
        finally:
            R.GeneratedConv.weight = now

    return run


with torch.inference_mode():
    csg(x)
    same_memory = csg.to_timm().eval()
    exported = dict(same_memory.named_modules())
    for name, conv in R.generated_convs(csg.timm_model):
        exported[name].weight = torch.nn.Parameter(conv.weight, requires_grad=False)
    copy_a, copy_b = csg.to_timm().eval(), csg.to_timm().eval()
variants = {"before": with_property(property(before)), "now": with_property(now),
            "checks": with_property(property(checks)), "fast": with_property(property(fast)),
            "same_memory": lambda: same_memory(x), "copy_a": lambda: copy_a(x), "copy_b": lambda: copy_b(x)}  # fmt: skip
samples = {k: [] for k in variants}
order = random.Random(0)
with torch.inference_mode():
    for fn in variants.values():
        for _ in range(3):
            fn()
    gc.collect()
    gc.disable()
    for _ in range(rounds):
        for k in order.sample(list(variants), len(variants)):
            start = time.perf_counter()
            variants[k]()
            samples[k].append(time.perf_counter() - start)
    gc.enable()


def paired(values, base):
    ratios = [a / b for a, b in zip(values, base)]
    boot = random.Random(1)
    medians = sorted(statistics.median(boot.choices(ratios, k=len(ratios))) for _ in range(400))
    return statistics.median(ratios), medians[10], medians[389]


print(f"resnet18 28x28 b1, 2 threads, {rounds} rounds, torch {torch.__version__}")
for k, v in samples.items():
    m, lo, hi = paired(v, samples["fast"])
    m2, lo2, hi2 = paired(v, samples["same_memory"])
    print(f"  {k:12s} median {1e3 * statistics.median(v):6.3f} ms  paired vs fast {m:.4f} [{lo:.4f}, {hi:.4f}]"
          f"  vs same_memory {m2:.4f} [{lo2:.4f}, {hi2:.4f}]")
