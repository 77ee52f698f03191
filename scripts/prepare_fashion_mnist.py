"""Convert Debian's Fashion-MNIST IDX files into a `datasets.DatasetDict` with the schema of the Hub's
`zalando-datasets/fashion_mnist` (`image`, `label` ClassLabel), saved to disk and/or pushed as parquet."""

from __future__ import annotations

import argparse

from csg_hub.data import FASHION_MNIST_DIR, fashion_mnist_dataset_dict


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--idx-dir", default=str(FASHION_MNIST_DIR), help="folder with the *-ubyte.gz IDX files")
    parser.add_argument("--save-to-disk", metavar="DIR", help="write the DatasetDict here (load_from_disk)")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="push as a parquet dataset repo")
    parser.add_argument("--private", action="store_true", help="create the dataset repo as private")
    parser.add_argument("--limit", type=int, default=None, help="keep only the first N images of each split")
    args = parser.parse_args(argv)
    if not (args.save_to_disk or args.push_to_hub):
        parser.error("nothing to do: give --save-to-disk DIR and/or --push-to-hub REPO_ID")

    dataset = fashion_mnist_dataset_dict(args.idx_dir, limit=args.limit)
    print(dataset)
    if args.save_to_disk:
        dataset.save_to_disk(args.save_to_disk)
        print(f"saved to {args.save_to_disk}")
    if args.push_to_hub:
        dataset.push_to_hub(args.push_to_hub, private=args.private)
        print(f"pushed to {args.push_to_hub}")


if __name__ == "__main__":
    main()
