"""Publish the zoo: every `model_cards/<name>/` folder to `ORG/<name>` through the one push path, then check it.

For each folder (or the ones named by --only):

1. compare every local file with the repo's (the Hub's sha256 for LFS files, the git blob sha1 otherwise) and
   push the folder as one commit only when something differs (files the folder no longer has are deleted);
   an unchanged repo gets no commit, so a second run commits nothing;
2. download the commit by id into a fresh, empty cache and compare every file's bytes with the folder's: any
   difference (or a file missing on either side) is CORRUPT and the run exits non-zero;
3. with --eval-samples, evaluate the commit by id the way `scripts/eval.py --pipeline` does (the model's
   forward pass and transformers' pipeline("image-classification")). A sample cannot reproduce a card's
   top-1, so on a sample (N < the card's number of samples) the check is that eval.py and the pipeline
   agree on every image, and the sample's top-1 is reported beside the card's; with `--eval-samples all`
   (the card's whole split) the top-1 must equal the card's to 2 decimals. A failed check is MISMATCH.

Then it creates (or updates) the collection "<ORG>/csg-hub-zoo..." ("csg-hub zoo") holding every repo, and
prints a table: repo, commit, bytes, card top-1, evaluated top-1, status (published / unchanged / CORRUPT /
MISMATCH / skipped / error; verified with --verify-only). The weight-VAE decoder/latents folders the docs cite (runs/vae/*/) are listed
too: a decoder whose safetensors is not in the checkout is skipped, and so is a latents folder whose
config.json names a local decoder path (it would not load from the Hub; push it with push_latents).

    HF_ENDPOINT=... python scripts/publish_zoo.py --org csg-hub [--only resnet18-csg ...] [--dry-run]
        [--eval-samples 200 --dataset data/fashion_mnist] [--output runs/publish/summary.json]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from csg_hub.hub.folder_repo import FolderRepo, file_sha256, folder_files, git_blob_sha1
from csg_hub.hub.hub_mixin import push_to_hub

CARD_DATASET = "zalando-datasets/fashion_mnist"
COLLECTION_TITLE = "csg-hub zoo"
FAILED = ("CORRUPT", "MISMATCH", "missing", "error")


@dataclass
class Entry:
    """One repo of the zoo and what happened to it."""

    name: str
    folder: str
    kind: str  # "model", "vae-decoder", "vae-latents"
    repo_id: str = ""
    status: str = ""
    detail: str = ""
    commit: str | None = None
    bytes: int = 0
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    card_top1: float | None = None
    card_samples: int | None = None
    eval_top1: float | None = None
    pipeline_top1: float | None = None
    pipeline_disagreements: int | None = None
    eval_samples: int | None = None


def _eval_samples(text: str) -> int | str:
    if text == "all":
        return "all"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of images or 'all', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (skip), a positive number or 'all', got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Evaluation check: on a sample (--eval-samples N below the card's sample count) eval.py's "
        "top-1 must equal the pipeline's (no image classified differently) and the sample's top-1 is shown "
        "beside the card's; with --eval-samples all the top-1 must equal the card's to 2 decimals.",
    )
    p.add_argument("--org", required=True, help="namespace to publish into: ORG/<name>")
    p.add_argument("--only", nargs="+", action="extend", default=None, metavar="NAME", help="publish these only")
    p.add_argument("--dry-run", action="store_true", help="show which files would be pushed; push nothing")
    p.add_argument("--verify-only", action="store_true", help="push nothing; verify (and evaluate) the repos' heads")
    p.add_argument(
        "--eval-samples",
        type=_eval_samples,
        default=0,
        help="evaluate each model repo on N images (0: skip, the default; 'all': the whole split)",
    )
    p.add_argument("--dataset", default=CARD_DATASET, help=f"Hub dataset id or local folder (default: {CARD_DATASET})")
    p.add_argument("--split", default=None, help="default: the split the card records")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--model-cards", type=Path, default=ROOT / "model_cards")
    p.add_argument("--vae-runs", type=Path, default=ROOT / "runs" / "vae", help="weight-VAE run folders")
    p.add_argument("--no-collection", action="store_true", help="do not create or update the collection")
    p.add_argument("--collection-title", default=COLLECTION_TITLE)
    p.add_argument("--output", type=Path, default=None, help="write the summary JSON here")
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------------------------------
# What to publish


def zoo_entries(model_cards: Path, vae_runs: Path) -> list[Entry]:
    entries = [
        Entry(d.name, str(d), "model")
        for d in sorted(Path(model_cards).iterdir())
        if d.is_dir() and (d / "config.json").is_file()
    ]
    for run in sorted(Path(vae_runs).glob("*/")) if Path(vae_runs).is_dir() else []:
        decoder, latents = run / "decoder", run / "latents"
        if decoder.is_dir():
            entry = Entry(f"{run.name}-vae-decoder", str(decoder), "vae-decoder")
            if not list(decoder.glob("*.safetensors")):
                entry.status, entry.detail = "skipped", "weights not in the checkout (decoder safetensors gitignored)"
            entries.append(entry)
        if latents.is_dir():
            entry = Entry(f"{run.name}-latents", str(latents), "vae-latents")
            config = json.loads((latents / "config.json").read_text()) if (latents / "config.json").is_file() else {}
            if "path" in (config.get("decoder") or {}):
                entry.status = "skipped"
                entry.detail = (
                    f"config.json names a local decoder ({config['decoder']['path']}) whose weights are not in the "
                    "checkout; push with csg_hub.push_latents to pin a published decoder"
                )
            entries.append(entry)
    return entries


def card_result(folder: Path) -> tuple[float | None, str | None, str | None, int | None]:
    """The card's top-1 (model-index accuracy), its dataset, split and number of samples."""
    from huggingface_hub import ModelCard

    readme = Path(folder) / "README.md"
    if not readme.is_file():
        return None, None, None, None
    data = ModelCard.load(readme).data
    samples = ((data.to_dict().get("csg_hub") or {}).get("result_samples") or [None])[0]
    for result in data.eval_results or []:
        if result.metric_type == "accuracy":
            return float(result.metric_value), result.dataset_type, result.dataset_split, samples
    return None, None, None, samples


# --------------------------------------------------------------------------------------------------------------------
# Comparing with the Hub


def remote_state(api, repo_id: str) -> tuple[str | None, dict[str, tuple[str | None, str]]]:
    """The repo's head commit and {path: (LFS sha256 or None, git blob id)}; (None, {}) when it does not exist."""
    from huggingface_hub.errors import RepositoryNotFoundError
    from huggingface_hub.hf_api import RepoFile

    try:
        head = api.repo_info(repo_id).sha
    except RepositoryNotFoundError:
        return None, {}
    files = {
        f.path: (f.lfs.sha256 if f.lfs else None, f.blob_id)
        for f in api.list_repo_tree(repo_id, revision=head, recursive=True)
        if isinstance(f, RepoFile)
    }
    return head, files


def differences(local: dict[str, Path], remote: dict[str, tuple[str | None, str]]) -> tuple[list[str], list[str]]:
    """Local files that are new or differ from the repo's, and repo files the folder no longer has."""
    changed = []
    for rel, path in local.items():
        if rel not in remote:
            changed.append(rel)
            continue
        sha256, blob_id = remote[rel]
        if (file_sha256(path) != sha256) if sha256 else (git_blob_sha1(path) != blob_id):
            changed.append(rel)
    deleted = sorted(set(remote) - set(local) - {".gitattributes"})
    return changed, deleted


def verify_download(repo_id: str, revision: str, local: dict[str, Path]) -> list[str]:
    """Download `revision` into a fresh cache and compare bytes with `local`; returns the problems found."""
    from huggingface_hub import snapshot_download

    with tempfile.TemporaryDirectory(prefix="publish-verify-") as cache:
        try:
            snapshot = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache))
        except Exception as e:  # noqa: BLE001 -- a download that fails its own checks is a corrupt repo too
            return [f"download failed: {type(e).__name__}: {e}"]
        downloaded = {k: v for k, v in folder_files(snapshot, follow_symlinks=True).items() if k != ".gitattributes"}
        problems = [f"missing on the Hub: {p}" for p in sorted(set(local) - set(downloaded))]
        problems += [f"not in the folder: {p}" for p in sorted(set(downloaded) - set(local))]
        problems += [
            f"bytes differ: {p}"
            for p in sorted(set(local) & set(downloaded))
            if file_sha256(downloaded[p]) != file_sha256(local[p])
        ]
        return problems


def _load_eval_script():
    spec = importlib.util.spec_from_file_location("csg_hub_eval_script", ROOT / "scripts" / "eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evaluate_entry(entry: Entry, args: argparse.Namespace, eval_script) -> None:
    """Run eval.py --pipeline on the published commit and set MISMATCH when the check fails (see --help)."""
    top1, card_dataset, card_split, card_samples = card_result(Path(entry.folder))
    entry.card_top1, entry.card_samples = top1, card_samples
    split = args.split or card_split or "test"
    full = args.eval_samples == "all" or (card_samples is not None and args.eval_samples >= card_samples)
    argv = ["--model", entry.repo_id, "--revision", entry.commit, "--dataset", args.dataset, "--split", split,
            "--batch-size", str(args.batch_size), "--pipeline"]  # fmt: skip
    if not full:
        argv += ["--limit", str(args.eval_samples)]
    with contextlib.redirect_stdout(io.StringIO()):
        result = eval_script.main(argv)
    entry.eval_top1, entry.pipeline_top1 = result["top1"], result.get("pipeline_top1")
    entry.pipeline_disagreements = result.get("pipeline_disagreements")
    entry.eval_samples = result.get("num_samples") or (None if full else args.eval_samples)
    problems = []
    if entry.pipeline_disagreements or entry.pipeline_top1 != entry.eval_top1:
        problems.append(
            f"eval.py top-1 {entry.eval_top1:.2f} vs pipeline {entry.pipeline_top1:.2f} "
            f"({entry.pipeline_disagreements} images classified differently)"
        )
    if full:
        if top1 is None:
            problems.append("the card records no top-1")
        elif card_dataset not in (None, CARD_DATASET) and args.dataset == CARD_DATASET:
            problems.append(f"the card's dataset is {card_dataset}; pass --dataset")
        elif round(entry.eval_top1, 2) != round(top1, 2):
            problems.append(f"top-1 {entry.eval_top1:.2f} on the whole split, the card says {top1:.2f}")
    if problems:
        entry.status, entry.detail = "MISMATCH", "; ".join(problems)


# --------------------------------------------------------------------------------------------------------------------
# The run


def publish(entry: Entry, args: argparse.Namespace, api) -> None:
    folder = Path(entry.folder)
    local = folder_files(folder)
    entry.bytes = sum(p.stat().st_size for p in local.values())
    head, remote = remote_state(api, entry.repo_id)
    if args.verify_only:
        if head is None:
            entry.status, entry.detail = "missing", "no such repo"
            return
        entry.commit, entry.status = head, "verified"
    else:
        entry.changed, entry.deleted = differences(local, remote)
        if head is not None and not entry.changed and not entry.deleted:
            entry.commit, entry.status = head, "unchanged"
        elif args.dry_run:
            entry.commit, entry.status = head, "would push"
            entry.detail = f"changed: {entry.changed or '-'}; deleted: {entry.deleted or '-'}"
            return
        else:
            artifact = FolderRepo(folder, default_commit_message=f"Publish {entry.name} ({folder.name}/)")
            info = push_to_hub(artifact, entry.repo_id, delete_patterns=["*"])  # .gitattributes is always kept
            entry.commit, entry.status = info.oid, "published"
    if args.dry_run:
        return
    problems = verify_download(entry.repo_id, entry.commit, local)
    if problems:
        entry.status, entry.detail = "CORRUPT", "; ".join(problems)


def update_collection(api, org: str, title: str, entries: list[Entry]) -> dict:
    """Create (or find) the org's zoo collection and add every repo on the Hub to it; idempotent."""
    from huggingface_hub.errors import HfHubHTTPError

    repos = [e.repo_id for e in entries if e.commit and e.status not in ("would push", "missing")]
    try:
        collection = api.create_collection(
            title, namespace=org, exists_ok=True,
            description="csg-hub's parameter-efficient timm CNNs (Convolutional Slice Generator)",
        )  # fmt: skip
        present = {item.item_id for item in collection.items}
        for repo_id in repos:
            if repo_id not in present:
                collection = api.add_collection_item(collection.slug, repo_id, "model", exists_ok=True)
        return {"slug": collection.slug, "items": [item.item_id for item in collection.items]}
    except HfHubHTTPError as e:
        return {"slug": None, "error": f"collections not available here: {e}"}


def format_table(entries: list[Entry]) -> str:
    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    rows = [("repo", "commit", "bytes", "card top-1", "eval top-1 (n)", "status")]
    for e in entries:
        evaluated = "-" if e.eval_top1 is None else f"{e.eval_top1:.2f} ({e.eval_samples or 'all'})"
        rows.append((e.repo_id, (e.commit or "-")[:10], f"{e.bytes:,}", num(e.card_top1), evaluated, e.status))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) if i in (0, 1, 5) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]  # fmt: skip
    lines.insert(1, "-+-".join("-" * w for w in widths))
    details = [f"  {e.repo_id}: {e.status}: {e.detail}" for e in entries if e.detail]
    return "\n".join(lines + ([""] + details if details else []))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from huggingface_hub import HfApi
    from tqdm.auto import tqdm

    entries = zoo_entries(args.model_cards, args.vae_runs)
    if args.only:
        unknown = sorted(set(args.only) - {e.name for e in entries})
        if unknown:
            raise SystemExit(f"--only: no zoo folder named {unknown}; known: {[e.name for e in entries]}")
        entries = [e for e in entries if e.name in args.only]
    api = HfApi()
    eval_script = _load_eval_script() if args.eval_samples and not args.dry_run else None
    for entry in tqdm(entries, desc="repos", unit="repo"):
        entry.repo_id = f"{args.org}/{entry.name}"
        if entry.status == "skipped":
            entry.bytes = sum(p.stat().st_size for p in folder_files(Path(entry.folder)).values())
            continue
        try:
            publish(entry, args, api)
            if (
                eval_script is not None
                and entry.kind == "model"
                and entry.status in ("published", "unchanged", "verified")
            ):
                evaluate_entry(entry, args, eval_script)
            elif entry.kind == "model":
                entry.card_top1, *_, entry.card_samples = card_result(Path(entry.folder))
        except Exception as e:  # noqa: BLE001 -- one repo failing is reported in the table; the others run
            entry.status, entry.detail = "error", f"{type(e).__name__}: {e}"
        tqdm.write(f"{entry.repo_id}: {entry.status} {(entry.commit or '')[:10]} {entry.detail}".rstrip())
    collection = None
    if not (args.dry_run or args.verify_only or args.no_collection):
        collection = update_collection(api, args.org, args.collection_title, entries)
    print(format_table(entries))
    if collection is not None:
        where = collection["slug"] or collection["error"]
        print(f"collection: {where} ({len(collection.get('items', []))} repos)")
    failed = [e.repo_id for e in entries if e.status in FAILED]
    summary = {
        "org": args.org,
        "eval_samples": args.eval_samples,
        "dataset": args.dataset if args.eval_samples else None,
        "dry_run": args.dry_run,
        "verify_only": args.verify_only,
        "collection": collection,
        "failed": failed,
        "repos": [asdict(e) for e in entries],
    }
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(summary, indent=2) + "\n")
    if failed:
        print(f"NOT published as described: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
