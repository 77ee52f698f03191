"""Speed and size of CSG models against their dense twins, measured side by side in one process.

Every comparison runs its variants interleaved (each round in a new, seeded random order) for several
repeats, so that machine load drifts and cache effects hit all of them alike; each row gives the median,
the spread (min-max) and three ratios to the dense variant: of medians (the headline), of minimums and
paired (median of the within-round ratios, with its 95% bootstrap interval), the last two less sensitive to
load on a shared machine. Latency rows use many rounds of one call each (`--inference-rounds`). Measured:

- training step (forward, backward, SGD step) at batch 128, 28x28 greyscale, 10 classes, and, as the
  floor any CSG implementation has, the dense step plus the generator's GEMMs alone (per policy);
- inference latency at batch 1 and 64: dense timm model and transformers' TimmWrapper of it, CSG generating
  its filters on every forward, CSG in eval mode with cached filters (the transformers classifier against
  transformers' dense classifier; the timm model inside it against its `to_timm()` export reading the same
  filter tensors, so that only the CSG path's per-forward work differs), and the `to_timm()` export itself;
- `from_pretrained` wall time (transformers, local folder) and checkpoint bytes, dense (TimmWrapper
  folder written by `csg_hub.save_timm`) vs CSG; and the cost of csg-hub's strict, verified loading
  against transformers' plain `PreTrainedModel.from_pretrained` of the same CSG folder, for a local file
  (digest of the tensor data) and a Hub-cache file (also the whole-file hash the Hub published);
- with `--compile`, the same training steps and inference of `torch.compile`d dense and CSG models
  (compilation happens in the warm-up calls, outside the timings);
- weight-VAE encode and decode time per million parameters;
- an entropy-coding layer over packed int4 / int2 checkpoints (`--sections entropy`, the folders of
  `--entropy-models`): bytes of the safetensors file as saved, compressed by lzma and zlib, and the order-0
  entropy bound of its packed codes (what an arithmetic coder of the codes alone would reach), and
  `from_pretrained` of the plain folder against decompressing the lzma file and loading that;
- `model.push_to_hub` (folder, card with the storage table and MACs, one commit) against `create_repo` +
  `save_pretrained` + `HfApi.upload_folder` of the same model, to a local Hub-protocol server, a fresh repo
  each call.

Writes JSON and a markdown table. Timings depend on the machine: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SECTIONS = ("training", "inference", "loading", "push", "entropy")  # the sections with comparison rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--architectures", nargs="*", default=["resnet18", "resnet50"])
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--train-batch", type=int, default=128)
    p.add_argument("--inference-batches", type=int, nargs="*", default=[1, 64])
    p.add_argument("--precisions", nargs="*", default=["fp32", "bf16"], choices=["fp32", "bf16"],
                   help="training-step precisions (bf16: autocast, as train.py --bf16)")  # fmt: skip
    p.add_argument("--repeats", type=int, default=7, help="interleaved rounds per comparison (training, loading)")
    p.add_argument("--steps", type=int, default=3, help="timed calls per variant and round (training, loading)")
    p.add_argument("--inference-rounds", type=int, default=200,
                   help="interleaved rounds of one call per variant for the latency rows: calls are cheap, and many "
                        "short rounds pair the variants closely in time")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument(
        "--sections",
        nargs="*",
        default=["training", "inference", "loading", "vae", "push"],
        choices=["training", "inference", "loading", "vae", "push", "entropy"],
        help="what to measure",
    )
    p.add_argument("--entropy-models", nargs="*", default=None,
                   help="int4/int2 model folders for --sections entropy (default: runs/quant/csg/*/model)")
    p.add_argument("--compile", action="store_true", help="add torch.compile'd dense and CSG variants")
    p.add_argument("--quick", action="store_true", help="resnet18 only, fp32, 3 rounds of 1 call: a smoke run")
    p.add_argument("--output", default="runs/bench/bench.json", help="JSON path; the table goes next to it (.md)")
    args = p.parse_args(argv)
    if args.quick:
        args.architectures, args.precisions, args.repeats, args.steps = ["resnet18"], ["fp32"], 3, 1
        args.inference_rounds = 5
    return args


def interleaved(variants: dict[str, Callable[[], object]], repeats: int, steps: int) -> dict[str, list[float]]:
    """Seconds per call of each variant, one sample per round; variants alternate within each round, in a
    shuffled (seeded) order."""
    for fn in variants.values():  # warm-up: allocator, oneDNN primitive caches, filter caches
        fn()
        fn()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    order = random.Random(0)
    # as timeit does: a collection would land in whichever variant happens to allocate the triggering object
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            # a new order every round: a variant run right after a cache-thrashing one (or first after a pause)
            # runs slower, and a fixed (or merely rotated) order charges that to the same variant every time
            for name in order.sample(list(variants), len(variants)):
                fn = variants[name]
                start = time.perf_counter()
                for _ in range(steps):
                    fn()
                samples[name].append((time.perf_counter() - start) / steps)
    finally:
        gc.enable()
    return samples


def median_interval(values: list[float], resamples: int = 1000) -> tuple[float, float]:
    """95% bootstrap interval of the median of `values` (seeded): whether a ratio is above or below a target
    shows only when the whole interval is."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def summarize(samples: dict[str, list[float]], baseline: str) -> dict[str, dict[str, float]]:
    """Per variant: median, min and max ms, and three ratios to `baseline`. `ratio` (of medians) is the
    headline; on a shared machine, where load only ever adds time, `min_ratio` (of the fastest calls) and
    `paired_ratio` (median over rounds of the ratio within a round, whose calls ran seconds apart at most,
    with its 95% bootstrap interval) are less sensitive to load that comes and goes."""
    base = samples[baseline]
    summary = {}
    for name, values in samples.items():
        ratios = [v / b for v, b in zip(values, base)]
        summary[name] = {
            "median_ms": 1e3 * statistics.median(values),
            "min_ms": 1e3 * min(values),
            "max_ms": 1e3 * max(values),
            "ratio": statistics.median(values) / statistics.median(base),
            "min_ratio": min(values) / min(base),
            "paired_ratio": statistics.median(ratios),
            "paired_interval": median_interval(ratios),
            "samples": len(values),
        }
    return summary


def csg_config(architecture: str, image_size: int, **policy):
    import csg_hub

    return csg_hub.CSGConfig(
        architecture=architecture, in_chans=1, image_size=image_size,
        id2label={i: str(i) for i in range(10)}, **policy,
    )  # fmt: skip


def bench_training(args, architecture: str, precision: str) -> dict:
    import timm
    import torch
    import torch.nn.functional as F

    import csg_hub
    from csg_hub.timm_utils import logits

    torch.manual_seed(0)
    x = torch.randn(args.train_batch, 1, args.image_size, args.image_size)
    y = torch.randint(0, 10, (args.train_batch,))
    models = {
        "dense": timm.create_model(architecture, num_classes=10, in_chans=1),
        "csg": csg_hub.CSGForImageClassification(csg_config(architecture, args.image_size)),
        "csg_all_convs": csg_hub.CSGForImageClassification(
            csg_config(architecture, args.image_size, generate_pointwise=True)
        ),
    }

    def step_fn(model):
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                out = model(x)
                loss = F.cross_entropy(logits(out), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    variants = {name: step_fn(m) for name, m in models.items()}
    if args.compile:
        variants["dense_compiled"] = step_fn(torch.compile(models["dense"]))
        variants["csg_compiled"] = step_fn(torch.compile(models["csg"], fullgraph=True))
    # The part of a CSG step no implementation can avoid: the generator's GEMMs, forward and the two
    # of backward (codes and generator gradients). "dense + generator GEMMs" bounds the CSG step from below
    # (one floor per policy: all-convs generates the 1x1 filters too).
    dense_step = variants["dense"]
    for name, suffix in (("csg", ""), ("csg_all_convs", "_all_convs")):
        work = generator_work(models[name], precision)
        variants[f"dense+generator_gemms{suffix}"] = lambda work=work: (dense_step(), work())
    samples = interleaved(variants, args.repeats, args.steps)
    summary = summarize(samples, "dense")
    # the targets: each CSG step against its floor, and compiled against compiled
    twins = {"csg": "dense+generator_gemms", "csg_all_convs": "dense+generator_gemms_all_convs",
             "csg_compiled": "dense_compiled"}  # fmt: skip
    _add_twins(summary, samples, {name: twin for name, twin in twins.items() if name in samples})
    return summary


def _add_twins(summary: dict, samples: dict[str, list[float]], twins: dict[str, str]) -> None:
    for name, twin in twins.items():
        against = summarize({name: samples[name], twin: samples[twin]}, twin)[name]
        summary[name].update(vs_twin=against["ratio"], vs_twin_min=against["min_ratio"],
                             vs_twin_paired=against["paired_ratio"], vs_twin_paired_interval=against["paired_interval"],
                             twin=twin)  # fmt: skip


def generator_work(model, precision: str) -> Callable[[], None]:
    """Forward and backward of the generator's GEMMs alone, for every generated conv of `model`."""
    import torch

    from csg_hub.layers.reparameterize import generated_convs

    work = [(conv.generator, conv.codes) for _, conv in generated_convs(model)]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        grads = [torch.randn_like(generator(codes)) for generator, codes in work]

    def run() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            outputs = [generator(codes) for generator, codes in work]
        torch.autograd.backward(outputs, grads)

    return run


def bench_inference(args, architecture: str, batch: int) -> dict:
    import timm
    import torch
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    import csg_hub
    from csg_hub.layers.reparameterize import clear_filter_cache, generated_convs

    torch.manual_seed(0)
    x = torch.randn(batch, 1, args.image_size, args.image_size)
    csg = csg_hub.CSGForImageClassification(csg_config(architecture, args.image_size)).eval()
    dense = timm.create_model(architecture, num_classes=10, in_chans=1).eval()
    # transformers' own model for a dense timm network: what a transformers user's dense twin costs, including
    # the ModelOutput every transformers classifier builds (~20 us a call here, 0.4% of a batch-1 28x28 forward)
    dense_transformers = TimmWrapperForImageClassification(
        TimmWrapperConfig(architecture=architecture, num_labels=10, model_args={"in_chans": 1})
    ).eval()
    exported = csg.to_timm().eval()
    # Where a tensor lands in memory moves a batch-1 forward by up to ~5% (two copies of one dense model
    # differ that much here), which hides a 1% overhead. So the cached CSG timm model is also compared with
    # its export reading the very filter tensors the cache holds: the only difference left is the per-forward
    # work of the CSG path. Regenerating runs on a copy, so that the cached model's filters stay where they are.
    with torch.inference_mode():
        csg(x)
    same_memory = csg.to_timm().eval()
    exported_convs = dict(same_memory.named_modules())
    for name, conv in generated_convs(csg.timm_model):
        exported_convs[name].weight = torch.nn.Parameter(conv.weight, requires_grad=False)
    regenerating = copy.deepcopy(csg)

    def regenerate():
        clear_filter_cache(regenerating)
        return regenerating(x)

    variants = {"dense": lambda: dense(x), "dense_transformers": lambda: dense_transformers(x),
                "csg_generate": regenerate, "csg_cached": lambda: csg(x),
                "csg_timm_model_cached": lambda: csg.timm_model(x), "csg_to_timm": lambda: exported(x),
                "csg_to_timm_same_memory": lambda: same_memory(x)}  # fmt: skip
    if args.compile:
        dense_compiled = torch.compile(dense)
        # compiled, the filters are part of the graph (no cache): `to_timm()` is the compiled-inference path
        csg_compiled, timm_compiled = torch.compile(csg, fullgraph=True), torch.compile(exported)
        variants.update(dense_compiled=lambda: dense_compiled(x), csg_compiled=lambda: csg_compiled(x),
                        csg_to_timm_compiled=lambda: timm_compiled(x))  # fmt: skip
    with torch.inference_mode():
        samples = interleaved(variants, args.inference_rounds, 1)
    summary = summarize(samples, "dense")
    # like for like: the CSG classifier against transformers' dense classifier, the CSG timm model (inside it)
    # against its export on the same filter memory
    _add_twins(summary, samples, {"csg_cached": "dense_transformers", "csg_timm_model_cached": "csg_to_timm_same_memory"})
    return summary


def _as_hub_cache(folder: Path, cache: Path) -> Path:
    """`folder` laid out like a huggingface_hub cache snapshot: files link to blobs named by their hash."""
    import hashlib

    snapshot = cache / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (cache / "blobs").mkdir()
    for file in folder.iterdir():
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        (cache / "blobs" / digest).write_bytes(file.read_bytes())
        (snapshot / file.name).symlink_to(Path("../../blobs") / digest)
    return snapshot


def bench_loading(args, architecture: str) -> dict:
    import torch
    from transformers import AutoModelForImageClassification, PreTrainedModel

    import csg_hub

    csg = csg_hub.CSGForImageClassification(csg_config(architecture, args.image_size))
    with tempfile.TemporaryDirectory() as tmp:
        csg_dir, dense_dir = Path(tmp, "csg"), Path(tmp, "dense")
        csg.save_pretrained(csg_dir)
        csg_hub.save_timm(csg, dense_dir)
        cached_dir = _as_hub_cache(csg_dir, Path(tmp, "cache"))
        plain = PreTrainedModel.from_pretrained.__func__  # transformers' own loader, no csg-hub checks
        variants = {
            "dense": lambda: AutoModelForImageClassification.from_pretrained(dense_dir),
            "csg": lambda: AutoModelForImageClassification.from_pretrained(csg_dir),
            "csg_plain_transformers": lambda: plain(csg_hub.CSGForImageClassification, csg_dir),
            "csg_hub_cache_file": lambda: AutoModelForImageClassification.from_pretrained(cached_dir),
        }
        with torch.no_grad():
            samples = interleaved(variants, args.repeats, 1)
        sizes = {
            "dense": (dense_dir / "model.safetensors").stat().st_size,
            "csg": (csg_dir / "model.safetensors").stat().st_size,
        }
    summary = summarize(samples, "dense")
    plain_ms = summary["csg_plain_transformers"]["median_ms"]
    for name in ("csg", "csg_hub_cache_file"):
        summary[name]["vs_plain"] = summary[name]["median_ms"] / plain_ms
    for name, size in sizes.items():
        summary[name]["checkpoint_bytes"] = size
    return summary


def bench_entropy(args, folder: str) -> dict:
    import lzma
    import zlib

    import safetensors.torch
    import torch

    import csg_hub
    from csg_hub.storage import PACKED_BITS, unpack_codes

    config = json.loads(Path(folder, "config.json").read_text())
    bits = PACKED_BITS.get(config.get("storage_dtype"))
    if bits is None:
        raise SystemExit(f"{folder} is not stored as int4 or int2 (storage_dtype {config.get('storage_dtype')!r}).")
    raw = Path(folder, "model.safetensors").read_bytes()
    packed, bound = 0, 0.0
    for tensor in safetensors.torch.load(raw).values():
        if tensor.dtype == torch.uint8:
            codes = unpack_codes(tensor, bits).flatten()
            p = torch.bincount(codes.long()).float()
            p = p[p > 0] / codes.numel()
            packed, bound = packed + tensor.numel(), bound - float((p * p.log2()).sum()) * codes.numel() / 8
    compressed = lzma.compress(raw, preset=9)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("config.json", "preprocessor_config.json"):
            (Path(tmp) / name).write_bytes(Path(folder, name).read_bytes())

        def coded():
            (Path(tmp) / "model.safetensors").write_bytes(lzma.decompress(compressed))
            return csg_hub.CSGForImageClassification.from_pretrained(tmp)

        variants = {"plain": lambda: csg_hub.CSGForImageClassification.from_pretrained(folder), "lzma": coded}
        samples = interleaved(variants, args.repeats, 1)
    summary = summarize(samples, "plain")
    summary["plain"]["bytes"] = {"file": len(raw), "lzma": len(compressed), "zlib": len(zlib.compress(raw, 9)),
                                 "packed_codes": packed, "codes_order0_bound": round(bound)}  # fmt: skip
    return summary


def start_hub_server():
    """A Hub-protocol server on 127.0.0.1 that every huggingface_hub call of this process goes to (set before
    huggingface_hub is imported, which reads the endpoint once)."""
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=tempfile.mkdtemp(prefix="bench-hf-home-"),
                      HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", HF_TOKEN="bench-token")  # fmt: skip
    from csg_hub.testing.hub_server import HubServer

    server = HubServer(root=Path(tempfile.mkdtemp(prefix="bench-hub-")), port=port)
    server.start()
    return server


def bench_push(args, architecture: str) -> dict:
    from huggingface_hub import HfApi

    import csg_hub

    model = csg_hub.CSGForImageClassification(csg_config(architecture, args.image_size)).eval()
    api = HfApi()
    count = iter(range(1_000_000))

    def save_and_upload() -> None:
        repo = api.create_repo(f"bench/{architecture}-upload-{next(count)}").repo_id
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            api.upload_folder(repo_id=repo, folder_path=tmp)

    def push() -> None:
        model.push_to_hub(f"bench/{architecture}-push-{next(count)}")

    samples = interleaved({"save_pretrained+upload_folder": save_and_upload, "push_to_hub": push}, args.repeats, 1)
    return summarize(samples, "save_pretrained+upload_folder")


def bench_vae(args) -> dict:
    import torch

    from csg_hub import WeightVAE, WeightVAEConfig

    config = WeightVAEConfig()
    vae = WeightVAE(config).eval()
    n_chunks = -(-1_000_000 // config.chunk_size)
    chunks = torch.randn(n_chunks, config.chunk_size) * 0.05
    latents, stats = vae.compress_chunks(chunks)
    with torch.no_grad():
        samples = interleaved(
            {"encode": lambda: vae.compress_chunks(chunks), "decode": lambda: vae.decompress_chunks(latents, stats)},
            args.repeats,
            args.steps,
        )
    scale = 1e6 / (n_chunks * config.chunk_size)  # per million parameters
    return {
        name: {
            "ms_per_million_params": 1e3 * statistics.median(v) * scale,
            "min_ms": 1e3 * min(v) * scale,
            "max_ms": 1e3 * max(v) * scale,
        }
        for name, v in samples.items()
    }


def _interval(row: dict, key: str) -> str:
    return f" [{row[key][0]:.3f}, {row[key][1]:.3f}]" if key in row else ""


def markdown(results: dict) -> str:
    header = (
        f"Machine: {results['machine']}, torch {results['torch']}, {results['threads']} threads; "
        f"interleaved rounds, each variant's calls in a new random order: training and loading {results['repeats']} "
        f"rounds x {results['steps']} calls, latency {results['inference_rounds']} rounds x 1 call; median (min-max); "
        "ratios to dense: of medians, of minimums, and paired (median over rounds of the within-round ratio, with "
        "its 95% bootstrap interval)."
    )
    lines = [header, ""]
    lines += ["| what | model | variant | median ms | spread ms | ratio | min ratio | paired ratio |",
              "|---|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for section in SECTIONS:
        for key, rows in results.get(section, {}).items():
            for variant, r in rows.items():
                against = f" ({r['vs_plain']:.3f}x plain transformers)" if "vs_plain" in r else ""
                twin = {k: f" ({r[f'vs_twin{k}']:.3f}x{_interval(r, f'vs_twin{k}_interval')} {r['twin']})"
                        if "twin" in r else "" for k in ("", "_min", "_paired")}  # fmt: skip
                lines.append(
                    f"| {section} {key.split('/', 1)[1]} | {key.split('/')[0]} | {variant} | {r['median_ms']:.1f} "
                    f"| {r['min_ms']:.1f}-{r['max_ms']:.1f} | {r['ratio']:.3f}x{against}{twin['']} "
                    f"| {r['min_ratio']:.3f}x{twin['_min']} | {r['paired_ratio']:.3f}x{_interval(r, 'paired_interval')}"
                    f"{twin['_paired']} |"
                )
    if results.get("loading"):
        lines += ["", "| checkpoint | dense bytes | CSG bytes | ratio |", "|---|---:|---:|---:|"]
        for key, rows in results["loading"].items():
            d, c = rows["dense"]["checkpoint_bytes"], rows["csg"]["checkpoint_bytes"]
            lines.append(f"| {key.split('/')[0]} | {d:,} | {c:,} | {d / c:.2f}x smaller |")
    if results.get("entropy"):
        lines += ["", "| int4/int2 checkpoint | file bytes | lzma | zlib | packed codes | their order-0 entropy bound |",
                  "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for key, rows in results["entropy"].items():
            b = rows["plain"]["bytes"]
            lines.append(f"| {key.split('/')[0]} | {b['file']:,} | {b['lzma']:,} ({b['lzma'] / b['file']:.3f}) "
                         f"| {b['zlib']:,} ({b['zlib'] / b['file']:.3f}) | {b['packed_codes']:,} "
                         f"| {b['codes_order0_bound']:,} (saves {b['packed_codes'] - b['codes_order0_bound']:,}) |")  # fmt: skip
    if "vae" in results:
        vae = results["vae"]
        vae_line = (
            f"Weight VAE (default config): encode {vae['encode']['ms_per_million_params']:.1f} ms, "
            f"decode {vae['decode']['ms_per_million_params']:.1f} ms per million parameters."
        )
        lines += ["", vae_line]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch
    from tqdm.auto import tqdm

    if args.threads:
        torch.set_num_threads(args.threads)
    entropy_models = args.entropy_models
    if entropy_models is None:
        entropy_models = [str(p.parent) for p in sorted(Path("runs/quant/csg").glob("*/model/config.json"))]
    jobs = (
        [("training", f"{a}/step b{args.train_batch} {p}", bench_training, (a, p)) for a in args.architectures
         for p in args.precisions]
        + [("inference", f"{a}/latency b{b}", bench_inference, (a, b)) for a in args.architectures
           for b in args.inference_batches]
        + [("loading", f"{a}/from_pretrained", bench_loading, (a,)) for a in args.architectures]
        + [("push", f"{a}/push_to_hub", bench_push, (a,)) for a in args.architectures]
        + [("entropy", f"{Path(f).parent.name}/from_pretrained", bench_entropy, (f,)) for f in entropy_models]
    )  # fmt: skip
    jobs = [job for job in jobs if job[0] in args.sections]
    server = start_hub_server() if "push" in args.sections else None
    results: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "image_size": args.image_size,
        "repeats": args.repeats,
        "steps": args.steps,
        "inference_rounds": args.inference_rounds,
        **{section: {} for section in SECTIONS if section in args.sections},
    }
    for section, key, fn, fn_args in tqdm(jobs, desc="bench", unit="comparison"):
        results[section][key] = fn(args, *fn_args)
        tqdm.write(f"{key}: " + ", ".join(f"{k} {v['ratio']:.3f}x" for k, v in results[section][key].items()))
    if "vae" in args.sections:
        results["vae"] = bench_vae(args)
    if server is not None:
        server.stop()
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    output.with_suffix(".md").write_text(table)
    print(table)
    return results


if __name__ == "__main__":
    main()
