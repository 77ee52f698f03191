"""The generator's GEMMs on this CPU: torch's matmul (MKL here) against the same product run as a 1x1 convolution
(oneDNN), forward and the two backward products, for the largest generated layer of resnet18 (512x512 3x3: 1849
codes of 72 -> slices of 12x12x3x3) and resnet50's largest 1x1 layer with every conv generated (2048x512: 855 codes
-> 36x36 slices). Usage: gemm.py [threads]"""
import statistics, sys, time
import torch
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)


def bench(f, n=30):
    f(); f()
    times = []
    for _ in range(n):
        t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
    return statistics.median(times)


def as_conv_input(codes):  # (N, D) viewed as a 1 x D x N x 1 channels-last image: no copy
    return codes.view(1, codes.shape[0], 1, codes.shape[1]).permute(0, 3, 1, 2)


def as_slices(out):  # the channels-last 1 x M x N x 1 output viewed back as (N, M): no copy
    return out.permute(0, 2, 3, 1).reshape(out.shape[2], out.shape[1])


for label, (N, D, M) in {"resnet18 512x512 3x3": (1849, 72, 1296), "resnet50 2048x512 1x1": (855, 72, 1296)}.items():
    codes = torch.randn(N, D, requires_grad=True); weight = torch.randn(M, D, requires_grad=True)
    grad = torch.randn(N, M)
    out_conv = F.conv2d(as_conv_input(codes), weight[:, :, None, None])
    assert out_conv.data_ptr() == as_slices(out_conv).data_ptr()
    assert torch.allclose(as_slices(out_conv), codes @ weight.t(), rtol=1e-4, atol=1e-3)
    flops = 2 * N * D * M
    rows = {
        "matmul forward": lambda: codes.detach() @ weight.detach().t(),
        "matmul grad codes": lambda: grad @ weight.detach(),
        "matmul grad weight": lambda: grad.t() @ codes.detach(),
        "conv forward": lambda: F.conv2d(as_conv_input(codes.detach()), weight.detach()[:, :, None, None]),
    }

    def conv_train():
        as_slices(F.conv2d(as_conv_input(codes), weight[:, :, None, None])).backward(grad)

    def mm_train():
        (codes @ weight.t()).backward(grad)

    for name, f in rows.items():
        dt = bench(f); print(f"{label:22s} {name:20s} {dt * 1e3:7.2f} ms  {flops / dt / 1e9:6.1f} GFLOPS", flush=True)
    for name, f in (("matmul fwd+bwd", mm_train), ("conv fwd+bwd", conv_train)):
        dt = bench(f); print(f"{label:22s} {name:20s} {dt * 1e3:7.2f} ms  {3 * flops / dt / 1e9:6.1f} GFLOPS", flush=True)
