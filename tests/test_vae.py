"""Weight-VAE compression: chunking, the VAE and its training, accounting, and the Hub artifacts."""

import importlib.util
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import timm
import torch
from helpers import make_config
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard
from torch import nn

import csg_hub
from csg_hub import vae as weight_vae
from csg_hub.training import recalibrate_batchnorm
from csg_hub.vae import (
    VAETrainingConfig,
    WeightVAE,
    WeightVAEConfig,
    flatten_parameters,
    load_parameters,
    paper_recipe,
    select_tensors,
    train_weight_vae,
    unflatten_parameters,
)
from csg_hub.vae.chunks import check_manifest
from csg_hub.vae.small_models import build_small_model
from csg_hub.vae.training import distillation_loss, refine_latents

TINY_VAE = WeightVAEConfig(chunk_size=256, latent_dim=8, encoder_hidden=(32,), decoder_hidden=(32,))
FAST = VAETrainingConfig(copies=4, epochs=1, refine_steps=2)
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _mlp_with_bn() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Linear(5, 2))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # These tensors are tiny: on a busy machine, OpenMP workers waiting for a core cost ~100x the work itself.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def csg_model():
    return csg_hub.CSGForImageClassification(make_config()).eval()


# --- chunking ------------------------------------------------------------------------------------


def test_flatten_round_trip_is_exact_with_padding_and_dtypes():
    model = _mlp_with_bn()
    model[2].half()  # a float16 tensor comes back as float16, bit for bit
    chunks, manifest = flatten_parameters(model, chunk_size=8)
    assert manifest["numel"] == 15 + 5 + 5 + 5 + 10 + 2  # parameters only: running stats stay out of "all"
    assert chunks.shape == (6, 8) and manifest["padding"] == 6
    assert torch.equal(chunks.reshape(-1)[-6:], torch.zeros(6))
    manifest = json.loads(json.dumps(manifest))  # JSON-able
    restored = unflatten_parameters(chunks, manifest)
    state = model.state_dict()
    assert list(restored) == [e["name"] for e in manifest["tensors"]]
    for name, tensor in restored.items():
        assert tensor.dtype == state[name].dtype and torch.equal(tensor, state[name]), name
    with pytest.raises(ValueError, match=r"shape \(5, 8\)"):
        unflatten_parameters(chunks[:5], manifest)


def test_load_parameters_writes_in_place():
    source, target = _mlp_with_bn(), _mlp_with_bn()
    chunks, manifest = flatten_parameters(source, chunk_size=16)
    load_parameters(target, chunks, manifest)
    assert torch.equal(target[0].weight, source[0].weight) and torch.equal(target[2].bias, source[2].bias)


def test_selection_presets_and_patterns(csg_model):
    csg = select_tensors(csg_model, "csg")
    assert csg and all(n.endswith(".codes") or ".csg_generators." in n for n in csg)
    assert any(".csg_generators." in n for n in csg)
    convs = select_tensors(csg_model, "convs")
    assert "timm_model.conv1.weight" in convs and not any(n.endswith(".codes") for n in convs)
    assert select_tensors(csg_model, ["*.fc.*"]) == ["timm_model.fc.weight", "timm_model.fc.bias"]
    assert "timm_model.bn1.running_mean" in select_tensors(csg_model, "*.bn1.running_*")
    with pytest.raises(ValueError, match="matches no floating-point tensor"):
        select_tensors(csg_model, "no.such.*")
    with pytest.raises(ValueError, match="not in CSG form"):
        select_tensors(_mlp_with_bn(), "csg")


def test_manifest_that_does_not_fit_names_tensor_and_shapes():
    _, manifest = flatten_parameters(nn.Sequential(nn.Linear(3, 5)), chunk_size=8)
    with pytest.raises(ValueError, match=r"'0\.weight' has shape \(5, 3\) but the model's has shape \(5, 4\)"):
        check_manifest(manifest, nn.Sequential(nn.Linear(4, 5)).state_dict())
    with pytest.raises(ValueError, match="'0.weight'.*not in the model's state dict"):
        check_manifest(manifest, {})
    manifest["tensors"][1]["offset"] += 1
    with pytest.raises(ValueError, match="inconsistent"):
        unflatten_parameters(torch.zeros(3, 8), manifest)


# --- the VAE -------------------------------------------------------------------------------------


def _structured_chunks(n: int = 12, size: int = 64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    basis = torch.randn(3, size, generator=gen)
    return 0.05 * torch.randn(n, 3, generator=gen) @ basis


def test_decoding_is_deterministic():
    vae = WeightVAE(WeightVAEConfig(chunk_size=64, latent_dim=4, encoder_hidden=(16,), decoder_hidden=())).eval()
    chunks = _structured_chunks()
    latents, stats = vae.compress_chunks(chunks)
    assert latents.shape == (12, 4) and stats.shape == (12, 2)
    assert torch.equal(vae.compress_chunks(chunks)[0], latents)
    with torch.no_grad():
        assert torch.equal(vae.decompress_chunks(latents, stats), vae.decompress_chunks(latents, stats))
        assert torch.equal(vae(vae.normalize(chunks, stats))[0], vae.decode(latents))


def test_training_and_refinement_reduce_reconstruction_error():
    chunks = _structured_chunks()
    vae_config = WeightVAEConfig(chunk_size=64, latent_dim=4, encoder_hidden=(32,), decoder_hidden=(32,))
    vae, history = train_weight_vae(
        chunks, vae_config, VAETrainingConfig(copies=10, epochs=40, batch_size=32, lr=3e-3), progress=False
    )
    assert history[-1]["val_reconstruction"] < 0.5 * history[0]["val_reconstruction"]
    latents, stats = vae.compress_chunks(chunks)

    def error(z, s):
        with torch.no_grad():
            return (vae.decompress_chunks(z, s) - chunks).pow(2).mean().item()

    untrained = WeightVAE(vae_config).eval()
    assert error(latents, stats) < error(*untrained.compress_chunks(chunks))
    refined = refine_latents(vae, latents, stats, chunks, steps=100, progress=False)
    assert error(*refined) < error(latents, stats)
    # a decoder alone fits latents from zeros
    zeros = refine_latents(vae, torch.zeros_like(latents), stats, chunks, steps=200, progress=False)
    assert error(*zeros) < error(torch.zeros_like(latents), stats)


def test_paper_recipe_and_config_round_trip():
    vae_config, training = paper_recipe()
    assert (vae_config.normalize, training.beta, training.refine_steps) == ("none", 1.0, 0)
    assert WeightVAEConfig.from_dict(json.loads(json.dumps(TINY_VAE.to_dict()))) == TINY_VAE
    with pytest.raises(ValueError, match="Unknown WeightVAEConfig keys"):
        WeightVAEConfig.from_dict({"latent": 3})
    with pytest.raises(ValueError, match="no training or validation copy"):
        VAETrainingConfig(copies=1)


def test_recalibrate_batchnorm():
    model = _mlp_with_bn().eval()
    bn = model[1]
    bn.running_mean.fill_(5.0)
    batches = [(torch.randn(64, 3), None) for _ in range(4)]
    recalibrate_batchnorm(model, batches, num_batches=3)
    with torch.no_grad():
        expected = torch.cat([model[0](x) for x, _ in batches[:3]]).mean(0)
    torch.testing.assert_close(bn.running_mean, expected, atol=1e-5, rtol=0)
    assert bn.momentum == 0.1 and not model.training


def test_distillation_refinement_matches_the_models_predictions():
    model = build_small_model("fnn", {"widths": [784, 16, 10]}).eval()
    chunks, manifest = flatten_parameters(model, chunk_size=256)
    loss = distillation_loss(model, manifest, [(torch.randn(32, 1, 28, 28), None)])
    assert loss(chunks).item() == pytest.approx(0.0, abs=1e-6)  # the true weights predict what the model does
    vae = WeightVAE(TINY_VAE).eval()  # an untrained decoder: only the latents can help
    latents, stats = vae.compress_chunks(chunks)
    with torch.no_grad():
        before = loss(vae.decompress_chunks(latents, stats)).item()
    refined = refine_latents(vae, latents, stats, chunks, steps=50, task_loss=loss, progress=False)
    with torch.no_grad():
        assert loss(vae.decompress_chunks(*refined)).item() < before
    assert all(p.grad is None for p in model.parameters())


# --- artifacts and accounting --------------------------------------------------------------------


def test_accounting_numbers():
    model = build_small_model("rnn")
    artifact = weight_vae.compress(model, vae_config=TINY_VAE, training=FAST, progress=False)
    calls = []
    report = weight_vae.compression_report(
        artifact, model, evaluate=lambda m: calls.append(m) or 50.0, num_models=4, print_report=False
    )
    chunks = -(-54_538 // 256)
    assert report["num_chunks"] == chunks and report["latent_values"] == chunks * (8 + 2)
    assert report["latents_only_ratio"] == pytest.approx(54_538 / (chunks * 10))
    decoder = 8 * 32 + 32 + 32 * 256 + 256
    assert report["decoder_params"] == decoder and report["kept_values"] == 0
    assert report["total_ratio"] == pytest.approx(54_538 / (chunks * 10 + decoder))
    assert report["amortized_ratio"] == pytest.approx(54_538 / (chunks * 10 + decoder / 4))
    assert report["latents_bytes"] < chunks * 10 * 2 + 200  # float16 plus the safetensors header
    assert report["original_bytes"] > 4 * 54_538 and report["mse"] > 0
    assert report["accuracy_before"] == report["accuracy_after"] == 50.0 and len(calls) == 2
    assert "**total ratio**" in weight_vae.format_compression_report(report)


def test_compress_with_a_decoder_only_and_distillation(tmp_path):
    model = build_small_model("fnn", {"widths": [784, 16, 10]}).eval()
    artifact = weight_vae.compress(model, vae_config=TINY_VAE, training=FAST, progress=False)
    assert artifact.latents.dtype == torch.float16
    decoder = weight_vae.load_decoder(weight_vae.save_decoder(artifact.vae, tmp_path / "decoder"))
    assert decoder.encoder is None and decoder.config == TINY_VAE

    other = build_small_model("fnn", {"widths": [784, 16, 10]}).eval()
    batches = [(torch.randn(8, 1, 28, 28), None)]
    training = VAETrainingConfig(copies=4, epochs=1, refine_steps=5)
    reused = weight_vae.compress(other, vae=decoder, training=training, distill_batches=batches, progress=False)
    assert reused.vae is decoder and reused.latents.shape == (-(-12_730 // 256), 8)
    with pytest.raises(ValueError, match="not both"):
        weight_vae.compress(other, vae=decoder, vae_config=TINY_VAE, progress=False)
    with pytest.raises(ValueError, match="refine_steps >= 1"):
        weight_vae.compress(other, vae=decoder, training=VAETrainingConfig(refine_steps=0), progress=False)


def test_local_folder_round_trip_timm(tmp_path):
    model = timm.create_model("test_resnet", num_classes=10, in_chans=1).eval()
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (1, 56, 56), "mean": (0.3,), "std": (0.4,)}
    artifact = weight_vae.compress(model, "convs", vae_config=TINY_VAE, training=FAST, progress=False)
    assert artifact.model_config["model_args"] == {"in_chans": 1}
    weight_vae.save_decoder(artifact.vae, tmp_path / "decoder")
    weight_vae.save_latents(artifact, tmp_path / "latents", {"path": "../decoder"})
    pulled = weight_vae.pull_latents(tmp_path / "latents")
    assert type(pulled) is type(model)
    # the decoded model keeps the preprocessing it was trained with, not timm's ImageNet defaults
    assert timm.data.resolve_data_config(model=pulled)["input_size"] == (1, 56, 56)
    assert pulled.pretrained_cfg["mean"] == (0.3,)
    for name, tensor in artifact.to_model().state_dict().items():
        assert torch.equal(pulled.state_dict()[name], tensor), name
    # tensors outside the selection are kept exactly
    assert torch.equal(pulled.fc.weight, model.fc.weight)


def test_compress_many_shares_one_decoder_trained_on_every_models_chunks():
    torch.manual_seed(0)
    models = [build_small_model("fnn", {"widths": [16, 8, 4]}), build_small_model("fnn", {"widths": [16, 12, 4]})]
    vae, history = weight_vae.train_shared_vae(models, "all", TINY_VAE, FAST, progress=False)
    # the same VAE as training on the chunks of each model, flattened on its own, concatenated
    chunks = torch.cat([weight_vae.flatten_parameters(m, "all", 256)[0] for m in models])
    alone, _ = weight_vae.train_weight_vae(chunks, TINY_VAE, FAST, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), alone.state_dict().values()))

    artifacts = weight_vae.compress_many(models, "all", TINY_VAE, FAST, progress=False)
    assert artifacts[0].vae is artifacts[1].vae and artifacts[0].history == artifacts[1].history == history
    for model, artifact in zip(models, artifacts):
        assert artifact.manifest["numel"] == sum(p.numel() for p in model.parameters())
        assert artifact.to_model().net[1].weight.shape == model.net[1].weight.shape
    report = weight_vae.compression_report(artifacts[0], models[0], num_models=2, print_report=False)
    decoder = report["decoder_params"]
    assert report["amortized_ratio"] > report["total_ratio"]
    assert report["amortized_ratio"] == pytest.approx(
        report["original_values"] / (report["latent_values"] + report["kept_values"] + decoder / 2)
    )
    with pytest.raises(ValueError, match="either vae"):
        weight_vae.compress_many(models, "all", TINY_VAE, FAST, vae=artifacts[0].vae)


# --- the Hub -------------------------------------------------------------------------------------


def _repo(kind: str) -> str:
    return f"csg-test/vae-{kind}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def pushed(hub_server, csg_model):
    """A CSG model compressed with selection "csg", its decoder and its latents pushed to the test Hub."""
    artifact = weight_vae.compress(csg_model, "csg", vae_config=TINY_VAE, training=FAST, progress=False)
    decoder_repo, latents_repo = _repo("decoder"), _repo("latents")
    commit = weight_vae.push_decoder(artifact.vae, decoder_repo)
    weight_vae.push_latents(artifact, latents_repo, decoder_repo)
    return artifact, decoder_repo, commit.oid, latents_repo


@pytest.mark.slow
def test_hub_round_trip_csg(pushed, csg_model, pixel_values):
    artifact, decoder_repo, revision, latents_repo = pushed
    files = set(HfApi().list_repo_files(latents_repo))
    assert {"latents.safetensors", "kept.safetensors", "manifest.json", "config.json", "model_config.json"} <= files
    config = json.loads(Path(HfApi().hf_hub_download(latents_repo, "config.json")).read_text())
    assert config["decoder"] == {"repo_id": decoder_repo, "revision": revision, "sha256": config["decoder"]["sha256"]}
    assert len(config["decoder"]["sha256"]) == 64
    card = ModelCard.load(latents_repo)
    assert {"weight-vae", "csg", "resnet18"} <= set(card.data.tags) and "**total ratio**" in card.text

    pulled = weight_vae.pull_latents(latents_repo)
    assert type(pulled) is csg_hub.CSGForImageClassification
    expected = artifact.to_model()
    for name, tensor in expected.state_dict().items():
        assert torch.equal(pulled.state_dict()[name], tensor), name
    # the tensors outside the selection are the original's; norms and classifier included
    assert torch.equal(pulled.timm_model.fc.weight, csg_model.timm_model.fc.weight)
    with torch.no_grad():
        assert torch.equal(pulled(pixel_values).logits, expected(pixel_values).logits)


def _edited_copy(latents_repo: str, name: str, content: bytes) -> str:
    """A copy of the latents repo with one file replaced."""
    api = HfApi()
    copy = _repo("edited")
    api.create_repo(copy)
    files = ("latents.safetensors", "kept.safetensors", "manifest.json", "config.json", "model_config.json")
    operations = [CommitOperationAdd(f, content if f == name else api.hf_hub_download(latents_repo, f)) for f in files]
    api.create_commit(copy, operations=operations, commit_message=f"Replace {name}")
    return copy


def _config_with(latents_repo: str, **changes) -> bytes:
    config = json.loads(Path(HfApi().hf_hub_download(latents_repo, "config.json")).read_text())
    return json.dumps({**config, **changes}).encode()


@pytest.mark.slow
def test_missing_decoder_revision(pushed):
    _, decoder_repo, _, latents_repo = pushed
    bad = _config_with(latents_repo, decoder={"repo_id": decoder_repo, "revision": "0" * 40})
    with pytest.raises(csg_hub.CheckpointError, match="does not exist"):
        weight_vae.pull_latents(_edited_copy(latents_repo, "config.json", bad))
    with pytest.raises(csg_hub.CheckpointError, match="does not exist"):
        weight_vae.push_latents(pushed[0], _repo("x"), decoder_repo, decoder_revision="0" * 40)


@pytest.mark.slow
def test_decoder_that_disagrees(pushed):
    artifact, _, _, latents_repo = pushed
    other = WeightVAE(WeightVAEConfig(chunk_size=256, latent_dim=4, encoder_hidden=(32,), decoder_hidden=(32,)))
    other_repo = _repo("decoder")
    sha = weight_vae.push_decoder(other, other_repo).oid
    bad = _config_with(latents_repo, decoder={"repo_id": other_repo, "revision": sha})
    with pytest.raises(csg_hub.CheckpointError, match="not the decoder the latents"):
        weight_vae.pull_latents(_edited_copy(latents_repo, "config.json", bad))
    with pytest.raises(ValueError, match="not the one these latents were made with"):
        weight_vae.push_latents(artifact, _repo("x"), other_repo)


@pytest.mark.slow
def test_corrupt_latents(pushed):
    with pytest.raises(csg_hub.CheckpointError, match="truncated or corrupt"):
        weight_vae.pull_latents(_edited_copy(pushed[3], "latents.safetensors", b"\x00" * 100))


@pytest.mark.slow
def test_manifest_that_does_not_fit_the_model(pushed):
    config = make_config(code_dim=36).to_dict()
    with pytest.raises(ValueError, match=r"'timm_model\.layer1\.0\.conv1\.codes' has shape \(36, 72\).*\(36, 36\)"):
        weight_vae.pull_latents(_edited_copy(pushed[3], "model_config.json", json.dumps(config).encode()))


# --- scripts -------------------------------------------------------------------------------------


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_compress_and_decompress_scripts(hub_server, csg_model, tmp_path):
    csg_model.save_pretrained(tmp_path / "model")
    repo = _repo("cli")
    tiny = "--chunk-size 256 --latent-dim 8 --encoder-hidden 32 --decoder-hidden 32 --copies 4 --epochs 1"
    report = _script("compress").main(
        [str(tmp_path / "model"), "--selection", "csg", *tiny.split(), "--refine-steps", "2"]
        + ["--output-dir", str(tmp_path / "out"), "--push-to-hub", repo]
    )
    assert json.loads((tmp_path / "out" / "report.json").read_text())["total_ratio"] == report["total_ratio"]
    assert report["decoder_repo"] == f"{repo}-decoder" and report["relative_mse"] > 0

    local = weight_vae.pull_latents(tmp_path / "out" / "latents")
    _script("decompress").main([repo, "--output-dir", str(tmp_path / "decoded")])
    decoded = csg_hub.CSGForImageClassification.from_pretrained(tmp_path / "decoded")
    for name, tensor in local.state_dict().items():
        assert torch.equal(decoded.state_dict()[name], tensor), name


@pytest.mark.slow
def test_compress_script_shares_one_decoder_between_models(hub_server, tmp_path):
    folders = []
    for i, code_dim in enumerate((8, 16)):
        torch.manual_seed(i)
        csg_hub.CSGForImageClassification(make_config(code_dim=code_dim)).save_pretrained(tmp_path / f"m{i}")
        folders.append(str(tmp_path / f"m{i}"))
    prefix = _repo("zoo")
    tiny = "--chunk-size 256 --latent-dim 8 --encoder-hidden 32 --decoder-hidden 32 --copies 4 --epochs 1"
    zoo = _script("compress").main([
        *folders, "--selection", "csg", *tiny.split(), "--refine-steps", "2", "--output-dir", str(tmp_path / "out"),
        "--push-to-hub", prefix,
    ])  # fmt: skip
    assert zoo["num_models"] == 2 and sorted(zoo["reports"]) == ["m0", "m1"]
    assert zoo["zoo_bytes"] == sum(zoo["latents_and_kept_bytes"].values()) + zoo["decoder_bytes"]
    pins = []
    for name in ("m0", "m1"):
        report = json.loads((tmp_path / "out" / name / "report.json").read_text())
        assert report["num_models"] == 2 and report["latents_repo"] == f"{prefix}-{name}"
        config = json.loads(Path(HfApi().hf_hub_download(report["latents_repo"], "config.json")).read_text())
        pins.append(config["decoder"])
        local = weight_vae.pull_latents(tmp_path / "out" / name / "latents")  # "../../decoder"
        pulled = weight_vae.pull_latents(report["latents_repo"])
        original = csg_hub.CSGForImageClassification.from_pretrained(tmp_path / name)
        assert local.config.code_dim == original.config.code_dim
        assert all(torch.equal(pulled.state_dict()[k], v) for k, v in local.state_dict().items())
    # one decoder repo, one commit, pinned by both latents repos
    assert pins[0] == pins[1] and pins[0]["repo_id"] == f"{prefix}-decoder"
    commits = HfApi().list_repo_commits(f"{prefix}-decoder")
    assert [c.title for c in commits].count("Upload weight-VAE decoder") == 1 and commits[0].commit_id == pins[0]["revision"]


@pytest.mark.slow
@pytest.mark.integration
def test_vae_zoo_script(hub_server, tmp_path):
    from csg_hub.data import fashion_mnist_dataset_dict

    fashion_mnist_dataset_dict(limit=16).save_to_disk(str(tmp_path / "data"))
    folders = []
    for i in range(2):
        torch.manual_seed(i)
        csg_hub.CSGForImageClassification(make_config(image_size=28)).save_pretrained(tmp_path / f"model{i}")
        folders.append(str(tmp_path / f"model{i}"))
    tiny = "--chunk-size 256 --latent-dim 8 --encoder-hidden 32 --decoder-hidden 32 --copies 4 --epochs 1"
    out = tmp_path / "zoo"
    result = _script("vae_zoo").main([
        "--models", *folders, "--output-dir", str(out), "--eval-dataset", str(tmp_path / "data"), "--eval-limit",
        "16", "--recalibrate-bn", "1", "--runs", str(tmp_path / "runs"), "--repo-prefix", _repo("vae-zoo"),
        *tiny.split(), "--refine-steps", "2", "--batch-size", "8",
    ])  # fmt: skip
    assert result["num_models"] == 2 and all(r["hub_round_trip_identical"] for r in result["models"])
    assert result["totals"]["vae"] == sum(r["latents_bytes"] for r in result["models"]) + result["decoder_bytes"]
    point = json.loads((out / "points" / "model0__weight-vae-shared.json").read_text())
    assert point["bytes"] == point["latents_bytes"] + point["decoder_bytes"] / 2 and point["n_models"] == 2
    assert point["latents_bytes"] == point["latent_vectors_bytes"] + point["kept_bytes"]
    assert point["method"] == "weight-vae-shared" and point["model"] == "resnet18" and point["num_samples"] == 16
    assert "| int8/all |" in (out / "summary.md").read_text() and "top1_bn_recalibrated" in point


@pytest.mark.slow
@pytest.mark.parametrize("name", ["compress", "decompress", "vae_small_models", "vae_zoo"])
def test_scripts_help(name):
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "usage:" in result.stdout


# --- fp16 / int baselines ------------------------------------------------------------------------


def test_round_trips_store_what_they_claim_and_stay_close():
    from csg_hub.vae import round_trip

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    original = {k: v.clone() for k, v in model.state_dict().items()}
    floats = sum(v.numel() for v in original.values() if v.is_floating_point())
    ints = sum(v.numel() * v.element_size() for v in original.values() if not v.is_floating_point())

    half, stored = round_trip(model, "fp16")
    assert stored == 2 * floats + ints
    assert torch.equal(half[0].weight, model[0].weight.half().float())

    for bits in (8, 4):
        rounded, stored = round_trip(model, f"int{bits}")
        quantized = [model[0].weight, model[3].weight]  # 2-D+ parameters; biases, norms and buffers stay fp32
        q_values = sum(w.numel() for w in quantized)
        packed = sum((w.numel() * bits + 7) // 8 + w.shape[0] * 4 for w in quantized)
        assert stored == (floats - q_values) * 4 + ints + packed
        for layer in (0, 3):
            w, r = model[layer].weight, rounded[layer].weight
            step = w.reshape(w.shape[0], -1).abs().amax(1) / (2 ** (bits - 1) - 1)
            assert ((r - w).reshape(w.shape[0], -1).abs().amax(1) <= step / 2 + 1e-7).all()
            assert len(torch.unique(r[0])) <= 2**bits - 1
        assert torch.equal(rounded[1].running_var, model[1].running_var)
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())  # the input is left alone
    grouped, stored = round_trip(model, "int4-g64")  # groups of 64 consecutive values, one fp16 scale each
    packed = sum(w.numel() // 2 + -(-w.numel() // 64) * 2 for w in quantized)
    assert stored == (floats - q_values) * 4 + ints + packed
    w, r = model[3].weight.reshape(-1), grouped[3].weight.reshape(-1)
    step = w[:64].abs().max() / 7
    assert (r[:64] - w[:64]).abs().max() <= step / 2 + 1e-4 and len(torch.unique(r[:64])) <= 15
    with pytest.raises(ValueError, match="Unknown scheme 'int3'"):
        round_trip(model, "int3")


def test_comparison_table_counts_the_decoder():
    report = {"original_bytes": 4000, "accuracy_before": 90.0, "baselines": {"int8": {"bytes": 1000, "top1": 89.5}}}
    report.update(latents_bytes=100, kept_bytes=100, decoder_bytes=800, accuracy_after=88.0)
    table = weight_vae.comparison_table(report)
    assert "| int8 round trip | 1,000 | 4.00x | 89.50 |" in table
    assert "| weight-VAE: latents + kept tensors | 200 | 20.00x | 88.00 |" in table
    assert "| weight-VAE: latents + kept + decoder | 1,000 | 4.00x | 88.00 |" in table
