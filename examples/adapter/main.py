"""The main job: pretrain a small language model, then fine-tune it on a related task with
LoRA, a QTHA-style quantum adapter (its circuits sent through qfleet) and more, side by side.

Phases, each with a progress bar: pretrain the base model; for each method, a learning-rate
grid on seed 0, picked by validation accuracy; the chosen rate on the other seeds; report.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from qfleet import Client
from tqdm import tqdm

from . import report
from .data import Split, make_tasks
from .model import pretrain
from .train import Run, evaluate, fine_tune

METHODS = ("full", "lora", "lora-r1", "mpo", "qtha")
# three rates a method, a factor of about 3 apart, around where each one's best lay in trial runs
GRIDS = {"full": (1e-3, 3e-3, 1e-2), "lora": (3e-3, 1e-2, 3e-2), "lora-r1": (3e-3, 1e-2, 3e-2)}
GRIDS |= {"mpo": (3e-3, 1e-2, 3e-2), "qtha": (1e-2, 3e-2, 1e-1)}


@dataclass(frozen=True)
class Config:
    pretrain_steps: int = 1200
    steps: int = 200
    batch: int = 32
    eval_every: int = 25
    seeds: tuple[int, ...] = (0, 1, 2)
    grids: dict[str, tuple[float, ...]] = field(default_factory=lambda: dict(GRIDS))
    backend: str = "aer"
    shots: int | None = None
    val: int = 500  # evaluated sequences (all of the splits by default)
    test: int = 1000

    @classmethod
    def quick(cls) -> Config:
        """CI: a barely trained base model, one rate, one seed, a few steps."""
        return cls(pretrain_steps=100, steps=4, eval_every=2, seeds=(0,), grids={m: g[1:2] for m, g in GRIDS.items()})

    def for_device(self) -> Config:
        """The noisy device model estimates from shots and differentiates by parameter shift
        (2P+1 = 41 circuits a row), about 20-50 ms a circuit here: so one sequence a step (9
        rows, 369 circuits a job), a few steps, 1024 shots, one seed and the middle of each
        grid, scored on 20 sequences before and after. It shows the path end to end; it is
        no comparison."""
        steps = min(self.steps, 5)
        return replace(
            self,
            steps=steps,
            batch=1,
            eval_every=steps,
            seeds=self.seeds[:1],
            grids={m: g[len(g) // 2 : len(g) // 2 + 1] for m, g in self.grids.items()},
            shots=1024,
            val=20,
            test=20,
        )


def run(url: str, api_key: str, config: Config, out: Path) -> int:
    torch.set_num_threads(1)  # the machine's cores belong to the qfleet workers too
    t0 = time.perf_counter()
    tasks = make_tasks()
    val, test = Split(tasks.target_val.ids[: config.val]), Split(tasks.target_test.ids[: config.test])
    with tqdm(total=config.pretrain_steps, desc="pretrain (additions, short subtractions)", unit="step") as bar:
        base = pretrain(tasks.pretrain, config.pretrain_steps, progress=bar)
    summary: dict = {
        "config": asdict(config),
        "base_params": sum(p.numel() for p in base.parameters()),
        "pretrain_s": time.perf_counter() - t0,
        **{f"base_{k}": v for k, v in evaluate(base, {"val": val, "test": test}).items()},
    }
    print(
        f"base model: {summary['base_params']:,} parameters, pretrained in {summary['pretrain_s']:.0f} s; "
        f"target-task test accuracy before fine-tuning {summary['base_test_acc']:.3f}"
    )

    runs: list[Run] = []
    with Client(url, api_key=api_key) as client:
        options = {"client": client, "backend": config.backend, "shots": config.shots}

        def go(method: str, lr: float, seed: int, bar: tqdm) -> Run:
            bar.set_postfix_str(f"{method} lr={lr:g} seed={seed}")
            return fine_tune(base, method, lr, seed, tasks.target_train, config.steps, config.batch,
                             config.eval_every, val, test, bar, **options)  # fmt: skip

        total = sum(len(g) for g in config.grids.values()) * config.steps
        with tqdm(total=total, desc=f"learning-rate grid (seed {config.seeds[0]})", unit="step") as bar:
            for method in METHODS:
                runs += [go(method, lr, config.seeds[0], bar) for lr in config.grids[method]]
        chosen = {m: report.choose(runs, m, config.seeds[0]) for m in METHODS}
        if len(config.seeds) > 1:
            total = len(METHODS) * (len(config.seeds) - 1) * config.steps
            with tqdm(total=total, desc=f"chosen rates, seeds {list(config.seeds[1:])}", unit="step") as bar:
                for method in METHODS:
                    runs += [go(method, chosen[method], seed, bar) for seed in config.seeds[1:]]

    summary |= {"chosen_lr": chosen, "wall_s": time.perf_counter() - t0}
    table = report.write(out, runs, chosen, summary)
    print("\n" + table)
    print(f"written: {', '.join(str(out / n) for n in report.FILES)}")
    return 0
