"""The data curriculum (training/curriculum.py): difficulty scores against brute force on
hand-made blocks, pacing functions against hand-computed values, and the
sampler's guarantees (threshold, passes without replacement, reachability,
determinism, resume by replay)."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch

import training.curriculum as curriculum
from training.curriculum import (
    PACING_KINDS,
    CurriculumIndexSampler,
    CurriculumSampler,
    difficulty_order,
    difficulty_scores,
    majority_source,
    pacing,
    source_ranks,
)

EOS = 0

# --------------------------------------------------------------------------- difficulty scores


def brute_length(block: list[int], eos: int) -> float:
    """Mean length of the non-empty runs of non-EOS tokens."""
    pieces = [len(list(run)) for is_eos, run in itertools.groupby(block, key=lambda x: x == eos) if not is_eos]
    return sum(pieces) / len(pieces) if pieces else 0.0


def brute_unigram(blocks: list[list[int]], vocab_size: int) -> list[float]:
    counts = Counter(x for block in blocks for x in block)
    total = sum(counts.values())
    return [sum(-math.log((counts[x] + 1) / (total + vocab_size)) for x in block) / len(block) for block in blocks]


def test_length_scores_hand_made():
    blocks = np.array([
        [5, 6, 0, 7, 8, 9, 0, 4],  # pieces 2, 3, 1 (edge pieces count as cut) -> 6/3 = 2.0
        [0, 5, 5, 5, 5, 0, 6, 6],  # pieces 4, 2 -> 3.0
        [7, 7, 7, 7, 7, 7, 7, 7],  # inside one long line: one piece of 8 -> 8.0
        [0, 0, 0, 0, 0, 0, 0, 0],  # no piece -> 0.0
        [4, 0, 0, 5, 6, 7, 8, 0],  # pieces 1, 4 (an empty piece between two EOS is not a line) -> 2.5
    ], dtype=np.int32)
    scores = difficulty_scores(blocks, "length", EOS)
    assert scores.tolist() == [2.0, 3.0, 8.0, 0.0, 2.5]
    assert scores.tolist() == [brute_length(b, EOS) for b in blocks.tolist()]


def test_length_scores_random_against_brute_force(monkeypatch):
    blocks = np.random.default_rng(0).integers(0, 4, size=(50, 12)).astype(np.int32)  # EOS in about 1/4
    expected = [brute_length(b, EOS) for b in blocks.tolist()]
    assert difficulty_scores(blocks, "length", EOS) == pytest.approx(expected, abs=1e-12)
    monkeypatch.setattr(curriculum, "_CHUNK_TOKENS", 30)  # several chunks of 2 rows
    assert difficulty_scores(blocks, "length", EOS) == pytest.approx(expected, abs=1e-12)


def test_unigram_scores_hand_made():
    blocks = np.array([[1, 1, 2], [3, 1, 0]], dtype=np.int32)
    # Counts 0:1 1:3 2:1 3:1 4:0, N = 6, V = 5: P = (c + 1) / 11, so P(1) = 4/11 and P(0) = P(2) = P(3) = 2/11.
    # Block 0: (2 ln(11/4) + ln(11/2)) / 3 = (2 * 1.0116009 + 1.7047481) / 3 = 1.2426500
    # Block 1: (2 ln(11/2) + ln(11/4)) / 3 = (2 * 1.7047481 + 1.0116009) / 3 = 1.4736990
    scores = difficulty_scores(blocks, "unigram", EOS, vocab_size=5)
    assert scores == pytest.approx([1.2426500, 1.4736990], abs=1e-6)
    # Without vocab_size, V = largest id + 1 = 4: P = (c + 1) / 10.
    # Block 0: (2 ln(10/4) + ln(10/2)) / 3 = (2 * 0.9162907 + 1.6094379) / 3 = 1.1473398
    assert difficulty_scores(blocks, "unigram", EOS)[0] == pytest.approx(1.1473398, abs=1e-6)


def test_unigram_scores_random_against_brute_force(monkeypatch, tmp_path):
    blocks = np.random.default_rng(1).integers(0, 9, size=(40, 10)).astype(np.int32)
    expected = brute_unigram(blocks.tolist(), vocab_size=12)
    assert difficulty_scores(blocks, "unigram", EOS, vocab_size=12) == pytest.approx(expected, rel=1e-12)
    # Chunked reading of a memory map (how the training split is loaded) gives the same.
    np.save(tmp_path / "blocks.npy", blocks)
    mapped = np.load(tmp_path / "blocks.npy", mmap_mode="r")
    monkeypatch.setattr(curriculum, "_CHUNK_TOKENS", 25)
    assert difficulty_scores(mapped, "unigram", EOS, vocab_size=12) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="token ids must lie in"):
        difficulty_scores(blocks, "unigram", EOS, vocab_size=5)


def test_source_scores_ranks_and_majority():
    scores = difficulty_scores(np.zeros((4, 3), np.int32), "source", EOS, block_sources=np.array([2, 0, 1, 0]),
                               source_rank={0: 1, 1: 0, 2: 1})
    assert scores.tolist() == [1.0, 1.0, 0.0, 1.0]
    assert difficulty_order(scores).tolist() == [2, 0, 1, 3]  # ties keep index order
    with pytest.raises(ValueError, match=r"without a rank.*\[2\]"):
        difficulty_scores(np.zeros((2, 3), np.int32), "source", EOS, block_sources=np.array([2, 0]),
                          source_rank={0: 0})
    with pytest.raises(ValueError, match="needs block_sources"):
        difficulty_scores(np.zeros((2, 3), np.int32), "source", EOS)

    files = ["qed", "wikipedia", "aochildes"]
    assert source_ranks(files, [["aochildes", "qed", "cbt"], ["wikipedia"]]) == {0: 0, 1: 1, 2: 0}  # two levels
    assert source_ranks(files, ["aochildes", "qed", "wikipedia"]) == {0: 1, 1: 2, 2: 0}  # graded
    with pytest.raises(ValueError, match="missing from the easier/harder lists: wikipedia"):
        source_ranks(files, ["aochildes", "qed"])

    # Sources of 5, 10, 3 tokens in blocks of 4: stream [0,5) is source 0, [5,15) source 1, [15,18) source 2.
    # Block [4,8) has 1 token of source 0 and 3 of source 1; block [12,16) 3 of source 1 and 1 of source 2.
    assert majority_source([5, 10, 3], 4, 4).tolist() == [0, 1, 1, 1]
    assert majority_source([3, 3], 2, 3).tolist() == [0, 0, 1]  # block [2,4): one token each, the earlier wins
    sizes = [7, 1, 1, 12, 4]
    tokens = np.repeat(np.arange(len(sizes)), sizes)[:5 * 5].reshape(5, 5)  # brute force: a source id per token
    expected = [np.bincount(row, minlength=len(sizes)).argmax() for row in tokens]
    assert majority_source(sizes, 5, 5).tolist() == expected


def test_difficulty_order_ties_and_seeded_tie_break():
    scores = np.array([3.0, 1.0, 2.0, 1.0, 3.0, 1.0])
    assert difficulty_order(scores).tolist() == [1, 3, 5, 2, 0, 4]
    shuffled = difficulty_order(scores, tie_break_seed=7)
    assert sorted(shuffled[:3].tolist()) == [1, 3, 5] and shuffled[3] == 2 and sorted(shuffled[4:]) == [0, 4]
    assert shuffled.tolist() == difficulty_order(scores, tie_break_seed=7).tolist()
    with pytest.raises(ValueError, match="unknown difficulty 'size'"):
        difficulty_scores(np.zeros((2, 2), np.int32), "size", EOS)


# --------------------------------------------------------------------------- pacing

# T = 1000, start_percent 0.1, end_percent 0.9, b = 0.2: s0 = 100, s1 = 900, N = 800.
PACE = {"total_steps": 1000, "start_percent": 0.1, "end_percent": 0.9, "start_share": 0.2}
HAND = [
    # t = 300: d = 200, d/N = 0.25
    ("linear", 300, 0.4),           # 0.2 + 0.8 * 0.25
    ("quad", 300, 0.25),            # 0.2 + 0.8 * 0.0625
    ("root", 300, 0.6),             # 0.2 + 0.8 * 0.5
    ("step", 300, 0.2),             # b until s1
    ("exp", 300, 0.2004062),        # 0.2 + 0.8 * (e^2.5 - 1) / (e^10 - 1) = 0.2 + 0.8 * 11.182494 / 22025.466
    ("log", 300, 0.8891110),        # 0.2 + 0.8 * (1 + ln(0.25 + 4.54e-5) / 10) = 0.2 + 0.8 * (1 - 0.1386113)
    # t = 500: d = 400, d/N = 0.5
    ("linear", 500, 0.6),           # 0.2 + 0.8 * 0.5
    ("quad", 500, 0.4),             # 0.2 + 0.8 * 0.25
    ("root", 500, 0.7656854),       # 0.2 + 0.8 * 0.7071068
    ("step", 500, 0.2),
    ("exp", 500, 0.2053543),        # 0.2 + 0.8 * (e^5 - 1) / (e^10 - 1) = 0.2 + 0.8 / (e^5 + 1) = 0.2 + 0.8 / 149.41316
    ("log", 500, 0.9445555),        # 0.2 + 0.8 * (1 + ln(0.5000454) / 10) = 0.2 + 0.8 * (1 - 0.0693056)
    # t = 899: d = 799, d/N = 0.99875, still below s1
    ("linear", 899, 0.999),         # 0.2 + 0.8 * 0.99875
    ("quad", 899, 0.9980013),       # 0.2 + 0.8 * 0.9975016
    ("step", 899, 0.2),
]


@pytest.mark.parametrize(("kind", "t", "expected"), HAND)
def test_pacing_hand_computed(kind, t, expected):
    assert pacing(kind, t, **PACE) == pytest.approx(expected, abs=1e-6)


def test_pacing_defaults():
    # Defaults 0.0625, 0.875, 0.1 with T = 1600: s0 = 100, s1 = 1400, N = 1300.
    assert pacing("linear", 99, 1600) == 0.1
    assert pacing("linear", 750, 1600) == pytest.approx(0.55)  # d/N = 650/1300 = 0.5: 0.1 + 0.9 * 0.5
    assert pacing("root", 425, 1600) == pytest.approx(0.55)  # d/N = 325/1300 = 0.25: 0.1 + 0.9 * 0.5
    assert pacing("step", 1399, 1600) == 0.1
    assert pacing("step", 1400, 1600) == 1.0


@pytest.mark.parametrize("kind", PACING_KINDS)
def test_pacing_b_before_s0_one_from_s1_and_monotone(kind):
    for t in (0, 1, 50, 99, 99.9):
        assert pacing(kind, t, **PACE) == 0.2
    assert pacing(kind, 100, **PACE) == pytest.approx(0.2, abs=1e-12)  # d = 0: every formula starts at b
    for t in (900, 901, 1000, 10_000):
        assert pacing(kind, t, **PACE) == 1.0
    values = [pacing(kind, t, **PACE) for t in range(0, 1001)]
    assert all(a <= b for a, b in itertools.pairwise(values))
    assert 0.2 <= min(values) and max(values) == 1.0
    # Start at once, and a jump straight from b to 1 when s0 = s1.
    assert pacing(kind, 0, 10, start_percent=0.0) == 0.1
    assert [pacing(kind, t, 10, start_percent=0.5, end_percent=0.5) for t in (4, 5)] == [0.1, 1.0]


def test_pacing_rejects_bad_options():
    for kwargs, message in (({"kind": "cubic"}, "unknown pacing 'cubic'"),
                            ({"total_steps": 0}, "total_steps must be positive"),
                            ({"start_percent": 0.9, "end_percent": 0.5}, "start_percent <= end_percent"),
                            ({"end_percent": 1.5}, "end_percent <= 1"),
                            ({"start_share": 0.0}, "start_share must be in")):
        args = {"kind": "linear", "t": 0, "total_steps": 10} | kwargs
        with pytest.raises(ValueError, match=message):
            pacing(**args)


# --------------------------------------------------------------------------- sampler


def make_sampler(seed: int = 3, n: int = 200, batch_size: int = 8, total: int = 100, kind: str = "linear",
                 **pace) -> CurriculumSampler:
    order = np.random.default_rng(99).permutation(n)  # any order: the sampler only sees ranks
    return CurriculumSampler(order, total, batch_size, kind, seed, **pace)


def passes(sampler: CurriculumSampler, steps: int) -> tuple[list[list[int]], list[int]]:
    """The draws of steps [0, steps) grouped by pass (using `position`), and for each
    pass that completed, the step that completed it."""
    groups: list[list[int]] = [[]]
    ended_at = []
    for t in range(steps):
        batch = sampler.batch(t).tolist()
        pass_index, drawn = sampler.position(t)
        new = min(drawn, len(batch))
        if pass_index == len(groups):  # this batch finished the previous pass and opened a new one
            ended_at.append(t)
            groups.append([])
        groups[-2 if new < len(batch) else -1].extend(batch[:len(batch) - new])
        groups[-1].extend(batch[len(batch) - new:])
    return groups, ended_at


def test_available_pool_hand_computed():
    s = make_sampler()  # n = 200, T = 100, defaults: s0 = 6.25, s1 = 87.5, N = 81.25, b = 0.1
    assert s.available(0) == 20  # ceil(0.1 * 200)
    # t = 50: d = 43.75, p = 0.1 + 0.9 * 43.75 / 81.25 = 0.5846154, so ceil(116.92) = 117
    assert s.available(50) == 117
    assert s.available(87) < 200 and s.available(88) == 200
    assert make_sampler(batch_size=32).available(0) == 32  # never less than one step's worth
    assert CurriculumSampler(np.arange(10), 10, 1, "linear", 0, start_share=0.7).available(0) == 7  # 0.7*10 = 7.0000001


@pytest.mark.parametrize("kind", PACING_KINDS)
def test_sampler_never_exceeds_threshold(kind):
    s = make_sampler(kind=kind)
    rank = np.empty(200, dtype=np.int64)
    rank[s.order] = np.arange(200)
    for t in range(120):
        batch = s.batch(t)
        assert len(batch) == 8 and len(set(batch.tolist())) == 8  # full, and no block twice in a batch
        assert rank[batch].max() < s.available(t) == max(8, math.ceil(s.share(t) * 200 - 1e-9))


@pytest.mark.parametrize("kind", ["linear", "step", "exp"])
def test_passes_are_without_replacement_and_complete(kind):
    s = make_sampler(kind=kind)
    groups, ended_at = passes(s, 250)
    assert len(ended_at) >= 5
    for group in groups:
        assert len(group) == len(set(group))  # no block twice within a pass, finished or not
    for group, t in zip(groups, ended_at, strict=False):
        # A finished pass held exactly the pool available when it ended: blocks that
        # joined during the pass were drawn in it too.
        assert sorted(group) == sorted(s.order[:s.available(t)].tolist())
    assert any(len(group) < 200 for group in groups[:len(ended_at)])  # the pool really grew during the run


def test_every_block_reachable_after_s1():
    s = make_sampler()  # s1 = 87.5: all 200 blocks from step 88 on
    groups, ended_at = passes(s, 88 + 2 * 25)
    # Every pass that ends from s1 on holds every block exactly once, including the
    # one running at s1 (the blocks that joined at s1 are drawn before it ends).
    after = [g for g, t in zip(groups, ended_at, strict=False) if t >= 88]
    assert len(after) >= 2 and all(sorted(g) == list(range(200)) for g in after)
    # So from s1 on every block appears within two passes' worth of steps.
    seen = set(itertools.chain.from_iterable(s.batch(t).tolist() for t in range(88, 88 + 2 * 25)))
    assert seen == set(range(200))


def test_same_seed_same_sequence_different_seed_differs():
    a = [make_sampler(seed=5).batch(t).tolist() for t in range(60)]
    b = [make_sampler(seed=5).batch(t).tolist() for t in range(60)]
    c = [make_sampler(seed=6).batch(t).tolist() for t in range(60)]
    assert a == b
    assert a != c


def test_resume_by_replay_gives_the_same_continuation():
    full = make_sampler()
    reference = [full.batch(t).tolist() for t in range(150)]
    resumed = make_sampler()  # a new process after a crash at step 97: nothing saved but the step
    assert [resumed.batch(t).tolist() for t in range(97, 150)] == reference[97:]
    assert resumed.batch(10).tolist() == reference[10]  # going back replays from the start
    assert resumed.batch(10).tolist() == reference[10]  # asking twice returns the same, not the next draw
    assert [b.tolist() for b in resumed.batches(40, 45)] == reference[40:45]


def test_epoch_indices_and_index_sampler_match_the_steps():
    s = make_sampler(batch_size=8)
    per_epoch = 7
    steps = np.concatenate([s.batch(t) for t in range(3 * per_epoch)])
    sampler = CurriculumIndexSampler(make_sampler(batch_size=8), per_epoch)
    assert len(sampler) == per_epoch * 8
    for epoch in (0, 1, 2):
        assert s.epoch_indices(epoch, per_epoch).tolist() == steps[epoch * 56:(epoch + 1) * 56].tolist()
    sampler.set_epoch(2)
    assert list(sampler) == steps[112:168].tolist()
    # Through a DataLoader with micro-batches of 4 (gradient accumulation 2): two micro-batches per step.
    loader = torch.utils.data.DataLoader(list(range(200)), batch_size=4, sampler=sampler)
    sampler.set_epoch(1)
    micro = [b.tolist() for b in loader]
    assert len(micro) == 2 * per_epoch
    assert micro[2] + micro[3] == s.batch(per_epoch + 1).tolist()


def test_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="between 1 and the number of blocks"):
        CurriculumSampler(np.arange(5), 10, 6, "linear", 0)
    with pytest.raises(ValueError, match="distinct block indices"):
        CurriculumSampler(np.array([0, 1, 1]), 10, 1, "linear", 0)
    with pytest.raises(ValueError, match="unknown pacing"):
        CurriculumSampler(np.arange(5), 10, 1, "fast", 0)
