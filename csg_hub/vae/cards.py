"""Model cards of decoder and latents repos."""

from __future__ import annotations

from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from .accounting import format_compression_report
from .baselines import comparison_table
from .compressed import CompressedModel
from .model import WeightVAE
from .model_config import model_kind

VAE_CITATION = """@article{cheng2024vae,
  title   = {Variational Autoencoder-based Neural Network Model Compression},
  author  = {Cheng, Liang and Guan, Peiyuan and Taherkordi, Amir and Liu, Lei and Lan, Dapeng},
  journal = {arXiv preprint arXiv:2408.14513},
  year    = {2024}
}"""


def decoder_card(vae: WeightVAE) -> ModelCard:
    """The card of a decoder repo: what it decodes, its size, how latents repos pin it."""
    card_data = ModelCardData(
        library_name="csg-hub", license="apache-2.0", tags=["csg-hub", "weight-vae", "model-compression"]
    )
    return ModelCard(
        f"---\n{card_data.to_yaml()}\n---\n\n# Weight-VAE decoder\n\nDecodes weight-VAE latents "
        f"(chunks of {vae.config.chunk_size}, latent {vae.config.latent_dim}) back into model weights; "
        f"{vae.num_decoder_params():,} parameters. Latents repos name this repo and an exact commit in their "
        "`config.json`; load one with `csg_hub.pull_latents(repo_id)`.\n\n"
        f"```bibtex\n{VAE_CITATION}\n```\n"
    )


def latents_card(artifact: CompressedModel, repo_id: str, decoder: dict[str, str], report: dict[str, Any]) -> ModelCard:
    """The card of a latents repo: metadata, the decoder it needs, how to load, the accounting table."""
    kind = model_kind(artifact.model_config)
    card_data = ModelCardData(
        library_name="csg-hub",
        license="apache-2.0",
        tags=sorted({"csg-hub", "weight-vae", "model-compression", *kind.split("/")}),
        model_name=repo_id.split("/")[-1],
    )
    where = (
        f"[{decoder['repo_id']}](https://huggingface.co/{decoder['repo_id']}) at commit `{decoder['revision']}`"
        if "repo_id" in decoder
        else f"the local folder `{decoder['path']}`"
    )
    comparison = ""
    if "baselines" in report and "accuracy_before" in report:
        comparison = "\nAgainst plain weight round trips, on the same evaluation data:\n\n" + comparison_table(report)
    body = f"""# {repo_id.split("/")[-1]}

A **{kind}** model stored as weight-VAE latents ("Variational Autoencoder-based Neural Network Model
Compression", arXiv 2408.14513): its selected tensors (`{artifact.manifest["selection"]}`) are cut into chunks of
{artifact.manifest["chunk_size"]} values and each chunk is one {artifact.vae.config.latent_dim}-value latent
vector. The decoder that turns latents back into weights lives in {where}.

## Load

```python
from csg_hub import pull_latents

model = pull_latents("{repo_id}")  # downloads latents, decoder (pinned commit) and rebuilds the model
```

## Accounting

{format_compression_report(report)}
{comparison}
The latents-only ratio is the paper's headline number; it leaves the decoder out. The total ratio counts
everything needed to rebuild this one model; the amortized ratio spreads the decoder over the models that
share it.

## Citation

```bibtex
{VAE_CITATION}
```
"""
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")
