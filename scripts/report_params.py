"""Print the parameter report of CSG timm models as a markdown table (or JSON)."""

from __future__ import annotations

import argparse
import json

import csg_hub

POLICIES = {
    "default": {},
    "all-convs": {"generate_pointwise": True, "generate_grouped": True},
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("architectures", nargs="+", help="timm architectures, e.g. resnet18 resnet50")
    parser.add_argument("--in-chans", type=int, default=1)
    parser.add_argument("--num-labels", type=int, default=10)
    parser.add_argument("--policy", choices=sorted(POLICIES), nargs="+", default=["default", "all-convs"])
    parser.add_argument("--json", action="store_true", help="print the full reports as JSON")
    args = parser.parse_args(argv)

    rows = []
    for arch in args.architectures:
        for policy in args.policy:
            config = csg_hub.CSGConfig(
                architecture=arch, in_chans=args.in_chans, num_labels=args.num_labels, **POLICIES[policy]
            )
            report = csg_hub.parameter_report(csg_hub.CSGForImageClassification(config))
            report.pop("dense_layer_reasons")
            rows.append({"policy": policy, **report})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        "| architecture | policy | dense params | stored params | ratio | generator | codes | dense convs "
        "| norms | classifier | other | generated / dense convs |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        b = r["breakdown"]
        print(
            f"| {r['architecture']} | {r['policy']} | {r['dense_params']:,} | {r['stored_params']:,} | "
            f"{r['ratio']:.2f}x | {b['generator']:,} | {b['codes']:,} | {b['dense_convs']:,} | {b['norms']:,} | "
            f"{b['classifier']:,} | {b['other']:,} | {r['generated_layers']} / {r['dense_layers']} |"
        )


if __name__ == "__main__":
    main()
