from __future__ import annotations

import numpy as np
import pytest
import torch

from echo_monai.metrics.privacy import MemorisationAudit, nearest_neighbour_similarity

from .threads import single_thread  # noqa: F401 (autouse fixture)


@pytest.fixture
def cohorts():
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(300, 32, generator=generator)
    held_out = torch.randn(200, 32, generator=generator)
    fresh = torch.randn(200, 32, generator=generator)
    return train, held_out, fresh


def test_flags_exact_copies_and_few_fresh_samples(cohorts):
    train, held_out, fresh = cohorts
    copies = train[[3, 50, 99]] * 2.0  # a rescaled copy has cosine similarity 1
    result = MemorisationAudit()(torch.cat([fresh, copies]), train, held_out)
    assert set(range(200, 203)) <= set(result.flagged_indices)
    assert set(result.flagged_indices[:3]) == {200, 201, 202}  # most similar first
    fresh_flagged = [i for i in result.flagged_indices if i < 200]
    assert len(fresh_flagged) / 200 < 0.12  # ~5 % by construction of the 95th percentile
    assert result.nearest_train_index[200:] == [3, 50, 99]
    assert result.rate == pytest.approx(len(result.flagged_indices) / 203)


def test_threshold_is_the_percentile_of_held_out_best_matches(cohorts):
    train, held_out, fresh = cohorts
    result = MemorisationAudit(percentile=90.0)(fresh, train, held_out)
    best, _ = nearest_neighbour_similarity(held_out, train)
    assert result.threshold == pytest.approx(float(np.percentile(best.numpy(), 90.0)))
    summary = result.summary()
    assert summary["memorised_count"] == len(result.flagged_indices) and "memorisation_rate" in summary


def test_works_on_raw_samples_through_an_embedding_network(cohorts):
    train, held_out, _ = cohorts
    images = lambda x: x.reshape(-1, 2, 4, 4)  # noqa: E731
    embed = torch.nn.Flatten()  # stands in for a re-identification network
    result = MemorisationAudit(embed=embed, batch_size=64)(images(train[:5]), images(train), images(held_out))
    assert result.flagged_indices and sorted(result.flagged_indices) == [0, 1, 2, 3, 4]
    assert result.rate == 1.0


def test_nearest_neighbour_similarity_chunks():
    queries, references = torch.randn(10, 4), torch.randn(7, 4)
    full = nearest_neighbour_similarity(queries, references)
    chunked = nearest_neighbour_similarity(queries, references, chunk_size=3)
    torch.testing.assert_close(full[0], chunked[0])
    torch.testing.assert_close(full[1], chunked[1])


def test_memorisation_audit_rejects_bad_arguments():
    with pytest.raises(ValueError, match="percentile"):
        MemorisationAudit(percentile=101)
    with pytest.raises(ValueError, match="batch_size and chunk_size"):
        MemorisationAudit(batch_size=0)
    audit = MemorisationAudit()
    with pytest.raises(ValueError, match="synthetic must hold at least one"):
        audit(torch.zeros(0, 4), torch.randn(5, 4), torch.randn(5, 4))
    with pytest.raises(ValueError, match="train must be \\(N, D\\) features"):
        audit(torch.randn(3, 4), torch.randn(5, 2, 2), torch.randn(5, 4))
    with pytest.raises(ValueError, match="must share D"):
        audit(torch.randn(3, 4), torch.randn(5, 4), torch.randn(5, 3))
