"""The per-rank Poisson sampler alone: shards partition the data, empties are kept, each example drawn at the global rate."""

from __future__ import annotations

import pytest
import torch

from privgan.defences.distributed import PoissonShardSampler

pytestmark = pytest.mark.ddp


def _ranks(seed: int | None = 0, **kw) -> list[PoissonShardSampler]:
    args = dict(num_samples=101, sample_rate=0.1, steps=400, world_size=3) | kw
    return [PoissonShardSampler(rank=r, seed=seed, **args) for r in range(args["world_size"])]


def test_shards_partition_the_data_and_every_example_is_drawn_at_the_global_rate():
    ranks = _ranks()
    counts = torch.zeros(101)
    for s in ranks:
        batches = list(s)
        assert len(batches) == len(s) == 400  # every step on every rank, empty ones included
        for b in batches:
            assert all(i % 3 == s.rank for i in b)  # its own shard only
            counts[b] += 1
    rate = counts / 400
    assert rate.mean().item() == pytest.approx(0.1, abs=0.006)  # 40,400 Bernoulli(0.1) draws: sd 0.0015
    assert (rate > 0).all()  # no example left out of every shard


def test_empty_batches_are_yielded_not_skipped():
    (s,) = _ranks(num_samples=4, sample_rate=0.05, steps=50, world_size=1)
    batches = list(s)
    assert len(batches) == 50 and [] in batches


def test_ranks_and_epochs_draw_independently_and_a_seed_repeats_them():
    a, b, _ = _ranks()
    sizes = lambda s: [len(x) for x in s]  # noqa: E731
    first = sizes(a)
    assert first != sizes(b)  # not one generator shared by the ranks
    a.set_epoch(1)
    assert sizes(a) != first  # a resumed fit's next epoch draws anew
    again = _ranks()[0]
    assert sizes(again) == first  # same seed, rank and epoch: same draws


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="sample_rate"):
        PoissonShardSampler(num_samples=10, sample_rate=0.0, steps=1, rank=0, world_size=1)
    with pytest.raises(ValueError, match="rank"):
        PoissonShardSampler(num_samples=10, sample_rate=0.1, steps=1, rank=2, world_size=2)
