"""The least-squares fit behind from_dense (`csg_hub.conversion.fit_generator`) on its own: exact on
low-rank targets, the best rank-k approximation (Eckart-Young) below the true rank, blind to masked entries;
and from_dense recovering generated filters under the all-convs policy."""

from __future__ import annotations

import pytest
import torch
from helpers import ALL_CONVS, make_config

import csg_hub
from csg_hub import generated_convs
from csg_hub.conversion import fit_generator

ROWS, DIM, RANK = 60, 48, 6


def _low_rank(rank: int = RANK, rows: int = ROWS, dim: int = DIM, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randn(rows, rank, generator=generator, dtype=torch.float64)
    basis = torch.randn(dim, rank, generator=generator, dtype=torch.float64)
    return codes @ basis.T


def _fit(targets, weights, masks, rank, iterations=12) -> torch.Tensor:
    codes, basis = fit_generator(targets, weights, masks, rank, iterations)
    assert codes.shape == (targets.shape[0], rank) and basis.shape == (targets.shape[1], rank)
    assert codes.dtype == basis.dtype == torch.float64
    return codes @ basis.T


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("rank", [RANK, RANK + 3])  # a larger rank than needed is exact too
def test_exact_on_targets_of_the_fitted_rank(rank):
    targets = _low_rank()
    ones = torch.ones_like(targets)
    assert _relative(_fit(targets, ones, ones, rank), targets) < 1e-8
    # float32 targets, as from_dense hands them over, are fitted in float64 too
    assert _relative(_fit(targets.float(), ones.float(), ones.float(), rank), targets.float().double()) < 1e-6


@pytest.mark.parametrize("rank", [1, 3, 5])
def test_below_the_true_rank_the_fit_is_the_best_rank_k_approximation(rank):
    targets = _low_rank(rank=12, seed=1) + 0.01 * _low_rank(rank=40, seed=2)  # full rank, decaying spectrum
    ones = torch.ones_like(targets)
    error = (_fit(targets, ones, ones, rank) - targets).norm().item()
    singular = torch.linalg.svdvals(targets)
    best = singular[rank:].pow(2).sum().sqrt().item()  # Eckart-Young
    assert error == pytest.approx(best, rel=1e-6)


def _edge_masks(rows: int = ROWS, dim: int = DIM) -> torch.Tensor:
    # as an edge block of a layer whose channels are no multiple of the slice size: the last rows lack entries
    masks = torch.ones(rows, dim, dtype=torch.float64)
    masks[-10:, DIM // 2 :] = 0
    masks[-4:, : DIM // 4] = 0
    return masks


def test_masked_entries_do_not_affect_the_fit():
    targets = _low_rank()
    masks = _edge_masks()
    noise = torch.randn(targets.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    garbage = torch.where(masks.bool(), targets, 1e3 * noise)
    zeros = torch.where(masks.bool(), targets, torch.zeros_like(targets))
    fitted = _fit(garbage, masks, masks, RANK)
    assert torch.equal(fitted, _fit(zeros, masks, masks, RANK))
    # and the entries that exist are still reconstructed exactly
    assert _relative(fitted * masks, targets * masks) < 1e-8


def test_masked_entries_do_not_affect_the_fit_below_the_true_rank():
    targets = _low_rank(rank=12, seed=4)
    masks = _edge_masks()
    changed = torch.where(masks.bool(), targets, -7.0 * torch.ones_like(targets))
    assert torch.equal(_fit(targets, masks, masks, 4), _fit(changed, masks, masks, 4))


def test_weights_trade_error_between_entries():
    targets = _low_rank(rank=12, seed=5)
    ones = torch.ones_like(targets)
    heavy = ones.clone()
    heavy[:, : DIM // 2] = 100.0  # the first half of every row matters 100x more

    def objective(fitted: torch.Tensor) -> float:
        return (heavy * (fitted - targets) ** 2).sum().item()

    plain, weighted = _fit(targets, ones, ones, 4), _fit(targets, heavy, ones, 4)
    first = slice(0, DIM // 2)
    assert (weighted - targets)[:, first].norm() < (plain - targets)[:, first].norm()
    assert objective(weighted) < objective(plain)
    assert (weighted - targets).norm() > (plain - targets).norm()  # the unweighted fit is best overall
    # the same column weights on every row: the optimum is the best rank-4 approximation of the scaled targets,
    # which the alternating least squares reach given enough iterations (12, from_dense's default, get close)
    scale = heavy[0].sqrt()
    u, s, vh = torch.linalg.svd(targets * scale, full_matrices=False)
    optimum = objective((u[:, :4] * s[:4]) @ vh[:4] / scale)
    assert optimum * (1 - 1e-9) <= objective(weighted) < 1.1 * optimum
    assert objective(_fit(targets, heavy, ones, 4, iterations=300)) == pytest.approx(optimum, rel=1e-6)


def test_from_dense_recovers_filters_generated_under_the_all_convs_policy(pixel_values):
    # 3x3, pointwise and grouped convs all generated: from_dense must recover each generator's filters
    options = {"slice_size": 8, "code_dim": 16, "pointwise_slice_size": 8, **ALL_CONVS}
    torch.manual_seed(0)
    source = csg_hub.CSGForImageClassification(make_config("test_resnet", **options)).eval()
    assert {conv.kernel_size for _, conv in generated_convs(source.timm_model)} >= {(1, 1), (3, 3)}
    dense = source.to_timm()
    converted, report = csg_hub.CSGForImageClassification.from_dense(dense, output_fit_report=True, **options)
    assert report["energy_kept_overall"] > 0.999999
    assert set(report["relative_filter_error"]) == {name for name, _ in generated_convs(source.timm_model)}
    assert max(report["relative_filter_error"].values()) < 1e-5
    refitted = converted.to_timm().state_dict()
    for name in report["relative_filter_error"]:
        torch.testing.assert_close(refitted[f"{name}.weight"], dense.state_dict()[f"{name}.weight"], atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(converted(pixel_values).logits, source(pixel_values).logits, atol=1e-4, rtol=0)
