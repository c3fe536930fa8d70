"""The demo's pure parts: generated data, MPO matrices and adapters that start from the base model."""

from __future__ import annotations

import torch

from qfleet_server.examples.adapter.adapters import MPOLinear, adapt, trainable
from qfleet_server.examples.adapter.data import VOCAB, make_tasks
from qfleet_server.examples.adapter.model import CharLM


def _text(ids: torch.Tensor) -> str:
    return "".join(VOCAB[i] for i in ids.tolist())


def test_target_splits_are_disjoint_and_correct() -> None:
    tasks = make_tasks()
    seen = [{_text(r) for r in s.ids} for s in (tasks.target_train, tasks.target_val, tasks.target_test)]
    assert [len(s) for s in seen] == [2595, 500, 1000]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    for text in set().union(*seen):
        a, b, c = int(text[1:3]), int(text[4:6]), int(text[7:])
        assert text[3] == "-" and b >= 10 and a - b == c
    for text in {_text(r) for r in tasks.pretrain.ids}:
        a, op, b, c = int(text[1:3]), text[3], int(text[4:6]), int(text[7:])
        assert (op == "+" and a + b == c) or (op == "-" and b < 10 and a - b == c)


def test_mpo_matrix_is_the_contraction_of_its_cores() -> None:
    mpo = MPOLinear((8, 8), (2, 2), bond=2)
    dense = torch.zeros(64, 4)
    for i1 in range(8):
        for i2 in range(8):
            for o1 in range(2):
                for o2 in range(2):
                    dense[i1 * 8 + i2, o1 * 2 + o2] = (mpo.g1[i1, o1] * mpo.g2[:, i2, o2]).sum()
    torch.testing.assert_close(mpo.matrix(), dense)
    assert sum(p.numel() for p in mpo.parameters()) == 64  # against 256 for the dense matrix


def test_adapters_start_from_the_base_model_and_train_only_themselves() -> None:
    torch.manual_seed(0)
    base = CharLM()
    for p in base.parameters():
        p.requires_grad_(False)
    ids = make_tasks().target_test.ids[:8, :-1]
    expected = {"lora": 8 * (64 * 4 * 2), "lora-r1": 8 * (64 * 2), "mpo": 8 * 128, "full": 102_542}
    for method, count in expected.items():
        model = adapt(base, method, seed=1)
        assert trainable(model) == count
        torch.testing.assert_close(model(ids), base(ids))
        assert all(not p.requires_grad for p in base.parameters())
