"""Generated arithmetic strings, one character a token; nothing is downloaded.

Every example reads ``^ab±cd=xyz``: two zero-padded two-digit operands and a three-digit
answer. The base model is pretrained on additions (any operands) and on subtractions whose
second operand has one digit (``^47-05=042``). The target task, learnt by fine-tuning with
the base frozen, is subtraction with a two-digit second operand (``^47-18=029``): the same
symbols and digit skills, and a borrow across the tens the base model has not seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

VOCAB = "^0123456789+-="
STOI = {c: i for i, c in enumerate(VOCAB)}
SEQ_LEN = 10  # ^ab±cd=xyz
ANSWER_LEN = 3
PROMPT_LEN = SEQ_LEN - ANSWER_LEN


def render(a: int, op: str, b: int) -> str:
    return f"^{a:02d}{op}{b:02d}={(a + b if op == '+' else a - b):03d}"


@dataclass
class Split:
    """Token ids (N, SEQ_LEN); a model reads ids[:, :-1] and predicts ids[:, 1:]."""

    ids: torch.Tensor

    @classmethod
    def of(cls, texts: list[str]) -> Split:
        return cls(torch.tensor([[STOI[c] for c in t] for t in texts], dtype=torch.long))

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Tasks:
    pretrain: Split
    target_train: Split
    target_val: Split  # picks each method's learning rate
    target_test: Split  # the reported figures


def make_tasks(val: int = 500, test: int = 1000, seed: int = 0) -> Tasks:
    """The target task's 4,095 pairs split disjointly into train, validation and test."""
    additions = [render(a, "+", b) for a in range(100) for b in range(100)]
    short = [render(a, "-", b) for a in range(100) for b in range(10) if a >= b]
    target = [render(a, "-", b) for a in range(100) for b in range(10, 100) if a >= b]
    order = np.random.default_rng(seed).permutation(len(target))
    pick = [target[i] for i in order]
    return Tasks(
        pretrain=Split.of(additions + short * 3),  # the 955 short subtractions weighted up
        target_train=Split.of(pick[val + test :]),
        target_val=Split.of(pick[:val]),
        target_test=Split.of(pick[val : val + test]),
    )


def batches(split: Split, batch: int, steps: int, seed: int) -> list[torch.Tensor]:
    """A run's batches in order: the same for every method given the seed."""
    rng = np.random.default_rng(seed)
    return [split.ids[torch.from_numpy(rng.choice(len(split), batch, replace=False))] for _ in range(steps)]
