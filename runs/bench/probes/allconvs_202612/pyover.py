"""Python and dispatch cost of one AssembleFilters forward and backward on layers small enough that the copies cost
nothing (a 64x64 1x1 conv with 36x36 slices; one 12x12 3x3 block), with kept buffers, 2 threads; median of 7 runs of
500 calls (each includes launching autograd's engine for its own backward call)."""
import time, torch, statistics
from csg_hub.layers.reparameterize import AssembleFilters
torch.set_num_threads(2)
for shape, c_out, c_in in [((2, 2, 36, 36, 1, 1), 64, 64), ((1, 1, 12, 12, 3, 3), 12, 12)]:
    slices = torch.randn(shape, requires_grad=True)
    g = torch.randn(c_out, c_in, *shape[4:])
    buffers = {}
    def fb():
        f = AssembleFilters.apply(slices, c_out, c_in, buffers)
        f.backward(g)
    def gemm_only():
        (slices * 1.0).backward(torch.ones_like(slices))
    for name, fn in (("assemble fwd+bwd", fb),):
        for _ in range(50): fn()
        ts = []
        for _ in range(7):
            t = time.perf_counter()
            for _ in range(500): fn()
            ts.append((time.perf_counter() - t) / 500 * 1e6)
        print(shape, name, f"{statistics.median(ts):.1f} us per call")
