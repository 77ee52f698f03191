"""Push CSG and dense (to_timm) versions of timm architectures and report the bytes each repo holds.

Uses the offline Hub-protocol server unless HF_ENDPOINT/HF_TOKEN configure a Hub. Untrained weights:
sizes depend only on the architecture and CSG setting, not on training.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("architectures", nargs="*", default=["resnet18", "resnet50"])
    parser.add_argument("--in-chans", type=int, default=1)
    parser.add_argument("--num-labels", type=int, default=10)
    parser.add_argument("--namespace", default="csg-hub-bytes")
    parser.add_argument("--output", default=None, help="write the JSON here too")
    args = parser.parse_args(argv)

    if not (os.environ.get("HF_ENDPOINT") or os.environ.get("HF_TOKEN")):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HUB_DISABLE_XET="1", HF_TOKEN="local",
                          HF_HOME=tempfile.mkdtemp())  # fmt: skip
    from pathlib import Path

    from huggingface_hub import HfApi

    import csg_hub
    from csg_hub.testing.hub_server import HubServer

    server = None
    if os.environ["HF_TOKEN"] == "local":
        server = HubServer(Path(tempfile.mkdtemp()), port=int(os.environ["HF_ENDPOINT"].rsplit(":", 1)[1])).start()
    api = HfApi()
    rows = []
    for arch in args.architectures:
        for policy, extra in (("default", {}), ("all-convs", {"generate_pointwise": True, "generate_grouped": True})):
            config = csg_hub.CSGConfig(architecture=arch, in_chans=args.in_chans, num_labels=args.num_labels, **extra)
            model = csg_hub.CSGForImageClassification(config)
            csg_repo, dense_repo = f"{args.namespace}/{arch}-{policy}-csg", f"{args.namespace}/{arch}-dense"
            model.push_to_hub(csg_repo)
            csg_hub.push_timm(model, dense_repo)
            sizes = {}
            for name, repo in (("csg", csg_repo), ("dense", dense_repo)):
                files = [f for f in api.list_repo_tree(repo, recursive=True) if hasattr(f, "size")]
                sizes[name] = {f.path: f.size for f in files}
            row = {
                "architecture": arch,
                "policy": policy,
                "csg_bytes": sum(sizes["csg"].values()),
                "csg_weights_bytes": sizes["csg"]["model.safetensors"],
                "dense_bytes": sum(sizes["dense"].values()),
                "dense_weights_bytes": sizes["dense"]["model.safetensors"],
            }
            row["weights_ratio"] = round(row["dense_weights_bytes"] / row["csg_weights_bytes"], 2)
            rows.append(row)
            print(json.dumps(row))
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2) + "\n")
    if server is not None:
        server.stop()


if __name__ == "__main__":
    main()
