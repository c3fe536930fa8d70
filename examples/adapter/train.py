"""Fine-tuning runs: one method, one learning rate, one seed; timed step by step."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from qfleet.torch import QuantumLayer
from tqdm import tqdm

from .adapters import QTHA, adapt, trainable
from .data import Split, batches
from .model import CharLM, answer_loss, answer_scores


@dataclass
class Run:
    method: str
    lr: float
    seed: int
    params: int
    loss: list[float] = field(default_factory=list)  # training loss at each step
    quantum_s: list[float] = field(default_factory=list)  # server compute (job running time)
    queue_s: list[float] = field(default_factory=list)  # job round trip less its running time
    classical_s: list[float] = field(default_factory=list)  # the rest of the step, here
    circuits: int = 0  # circuits in each step's job (0 for classical methods)
    evals: list[dict] = field(default_factory=list)  # {step, test_loss, test_acc}; val_* too at the end
    wall_s: float = 0.0  # the whole run, evaluations included

    @property
    def final(self) -> dict:
        return self.evals[-1]


def quantum_layer(model: CharLM) -> QuantumLayer | None:
    for module in model.modules():
        if isinstance(module, QTHA) and module.qnn is not None:
            return module.qnn
    return None


@torch.no_grad()
def evaluate(model: CharLM, splits: dict[str, Split]) -> dict[str, float]:
    """Loss and exact-match accuracy on each split, from one forward pass (one job for the quantum adapter)."""
    was_training = model.training
    model.eval()
    ids = torch.cat([s.ids for s in splits.values()])
    logits = model(ids[:, :-1])
    model.train(was_training)
    out: dict[str, float] = {}
    start = 0
    for name, split in splits.items():
        part = slice(start, start + len(split))
        loss, exact = answer_scores(logits[part], ids[part])
        out |= {f"{name}_loss": loss.item(), f"{name}_acc": exact.float().mean().item()}
        start += len(split)
    return out


def fine_tune(
    base: CharLM,
    method: str,
    lr: float,
    seed: int,
    train: Split,
    steps: int,
    batch: int,
    eval_every: int,
    val: Split,
    test: Split,
    progress: tqdm | None = None,
    **adapter_options: Any,
) -> Run:
    """Adam at a constant learning rate on the target task with the base model frozen (but for
    ``full``). The test split is scored every ``eval_every`` steps, the validation split at the end."""
    t0 = time.perf_counter()
    model = adapt(base, method, seed=seed, **adapter_options)
    qnn = quantum_layer(model)
    run = Run(method, lr, seed, trainable(model))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    run.evals.append({"step": 0, **evaluate(model, {"test": test})})
    for step, ids in enumerate(batches(train, batch, steps, seed), 1):
        start = time.perf_counter()
        loss = answer_loss(model, ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total = time.perf_counter() - start
        job = qnn.last_job if qnn is not None else {"round_trip_s": 0.0, "running_s": 0.0, "parameter_sets": 0}
        run.loss.append(loss.item())
        run.quantum_s.append(job["running_s"])
        run.queue_s.append(job["round_trip_s"] - job["running_s"])
        run.classical_s.append(total - job["round_trip_s"])
        run.circuits = int(job["parameter_sets"])
        if step == steps:
            run.evals.append({"step": step, **evaluate(model, {"val": val, "test": test})})
        elif step % eval_every == 0:
            run.evals.append({"step": step, **evaluate(model, {"test": test})})
        if progress is not None:
            progress.update(1)
    run.wall_s = time.perf_counter() - t0
    return run
