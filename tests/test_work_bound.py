"""tools/work_bound.py: the official loop's work as plain_scores (the official loop's copy) does it,
and the least work of an exact scorer against a brute force over every prefix."""

import random

import torch
from transformers import BertConfig, GPT2Config

import evaluation.scoring as scoring
from evaluation.scoring import Plan, plain_scores
from tools.work_bound import Work, least_work, model_size, official_work


def _causal(ids: tuple[int, ...], scored: list[int]) -> Plan:
    """A causal plan scoring tokens `scored` (read at the position before each)."""
    return Plan(ids, tuple(((), i - 1, ids[i]) for i in scored))


def _masked(ids: tuple[int, ...], scored: list[int]) -> Plan:
    return Plan(ids, tuple(((i,), i, ids[i]) for i in scored))


def test_hand_worked_counts():
    """Two causal candidates that share their first token; two masked sentences, one a prefix of the other."""
    first, second = _causal((5, 6, 7), [1, 2]), _causal((5, 8, 9), [1, 2])
    assert official_work([[first], [second]], "causal") == Work(4, 4, 8, 8, 4)  # 2 rows x 2 positions, squared pairs
    # nodes 5, 5-6, 5-8 (the last tokens are never read from): 3 nodes, pairs 1 + 2 + 2, all read
    assert least_work([first, second], "causal") == Work(3, 3, 5, 5, 3)
    long, short = _masked((1, 2, 3, 4), [1, 2]), _masked((1, 2, 3), [1])
    assert official_work([[long, short]], "mlm") == Work(12, 12, 48, 48, 12)  # 3 copies padded to 4
    assert least_work([long, short], "mlm") == Work(11, 3, 41, 11, 3)
    assert Work(1, 1, 1, 1, 1).flops(layers=2, hidden=1, vocab=1) == 24 * 2 + 4 * 2 + 2


def test_least_causal_work_against_every_prefix():
    """Random sentences over a 3-token vocabulary (many shared prefixes): the sorted walk counts what a
    set of every needed prefix counts."""
    rng = random.Random(0)
    plans = []
    for _ in range(300):
        ids = tuple(rng.randrange(3) for _ in range(rng.randint(2, 7)))
        plans.append(_causal(ids, sorted(rng.sample(range(1, len(ids)), rng.randint(1, len(ids) - 1)))))
    nodes = {plan.ids[:length] for plan in plans for length in range(1, max(r for _, r, _ in plan.reads) + 2)}
    read = {plan.ids[: r + 1] for plan in plans for _, r, _ in plan.reads}
    assert least_work(plans, "causal") == Work(len(nodes), len(read), sum(map(len, nodes)), sum(map(len, read)),
                                               len(read))


def test_official_work_is_what_plain_scores_runs(monkeypatch):
    """The positions the official loop's copy puts through the model, batch by batch, are the counted ones."""
    seen = []

    def logits(model, ids, mask, bidirectional):
        seen.append(ids.numel())
        return torch.zeros(*ids.shape, 10)

    monkeypatch.setattr(scoring, "_logits", logits)
    rng = random.Random(1)
    for backend, make in (("causal", _causal), ("mlm", _masked)):
        seen.clear()
        plans = [make(tuple(rng.randrange(1, 10) for _ in range(n)), list(range(1, n)))
                 for n in (rng.randint(2, 9) for _ in range(11))]
        slots = [plans[0::2], plans[1::2]]
        plain_scores(torch.nn.Identity(), slots, backend, pad_id=0, mask_id=9, batch_size=3)
        assert sum(seen) == official_work(slots, backend, batch_size=3).positions


def test_model_size_reads_each_family():
    assert model_size(GPT2Config(n_layer=3, n_embd=32, vocab_size=100)) == (3, 32, 100)
    assert model_size(BertConfig(num_hidden_layers=2, hidden_size=64, vocab_size=1000)) == (2, 64, 1000)
