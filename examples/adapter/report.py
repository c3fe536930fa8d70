"""The results: a table (printed, and written as Markdown), the raw runs as JSON, and two plots."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .train import Run

LABELS = {
    "full": "full fine-tuning",
    "lora": "LoRA r=4",
    "lora-r1": "LoRA r=1",
    "mpo": "MPO path alone",
    "qtha": "QTHA (MPO + QNN via qfleet)",
}


FILES = ("results.md", "results.json", "curves.png", "time_per_step.png")


def choose(runs: list[Run], method: str, seed: int) -> float:
    """The learning rate with the best final validation accuracy (then loss) on the grid's seed."""
    grid = [r for r in runs if r.method == method and r.seed == seed]
    return max(grid, key=lambda r: (r.final["val_acc"], -r.final["val_loss"])).lr


def _chosen_runs(runs: list[Run], method: str, lr: float) -> list[Run]:
    return [r for r in runs if r.method == method and r.lr == lr]


PARTS = {"quantum_s": "quantum compute", "queue_s": "queue + HTTP", "classical_s": "classical"}


SMOOTH = 10  # steps in the running mean of the plotted training loss


def _ms(runs: list[Run], part: str) -> float:
    """Mean wall time per step of one part, in ms, over every step of the runs."""
    return 1000 * float(np.mean([getattr(r, part) for r in runs]))


def _pm(values: list[float], fmt: str) -> str:
    return f"{np.mean(values):{fmt}} ± {np.std(values):{fmt}}"


def table(runs: list[Run], chosen: dict[str, float], summary: dict) -> str:
    lora = next(r.params for r in runs if r.method == "lora")
    n = len(summary["config"]["seeds"])
    config = summary["config"]
    shots = (
        f", {config['shots']} shots, gradients by parameter shift (41 circuits evaluated for each one listed)"
        if config["shots"]
        else ", exact, adjoint gradients"
    )
    lines = [
        f"Target task: two-digit subtraction; test accuracy of the base model before fine-tuning "
        f"{summary['base_test_acc']:.3f}. {config['steps']} steps of batch {config['batch']}, the same batches in "
        f"the same order for every method; mean ± std over {n} seed(s) at the chosen learning rate. Quantum adapter "
        f"on `{config['backend']}`{shots}. Whole run {summary['wall_s']:.0f} s (pretraining {summary['pretrain_s']:.0f} s).",
        "",
        "| method | trainable params | vs LoRA r=4 | learning rate (grid → chosen) | test accuracy | test loss "
        "| time/step: quantum | queue+HTTP | classical | circuits/job |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for method, lr in chosen.items():
        rs = _chosen_runs(runs, method, lr)
        grid = ", ".join(f"{g:g}" for g in summary["config"]["grids"][method])
        q, h, c = (_ms(rs, part) for part in PARTS)
        lines.append(
            f"| {LABELS[method]} | {rs[0].params:,} | {rs[0].params / lora - 1:+.0%} | {grid} → {lr:g} "
            f"| {_pm([r.final['test_acc'] for r in rs], '.3f')} | {_pm([r.final['test_loss'] for r in rs], '.3f')} "
            f"| {q:.1f} ms | {h:.1f} ms | {c:.1f} ms | {rs[0].circuits or '–'} |"
        )
    lines += ["", "Learning-rate grid (seed 0), final validation accuracy:", ""]
    for method in chosen:
        tried = [r for r in runs if r.method == method and r.seed == summary["config"]["seeds"][0]]
        lines.append(f"- {LABELS[method]}: " + ", ".join(f"{r.lr:g} → {r.final['val_acc']:.3f}" for r in tried))
    return "\n".join(lines)


def plot(out: Path, runs: list[Run], chosen: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=90)
    for method, lr in chosen.items():
        rs = _chosen_runs(runs, method, lr)
        w = min(SMOOTH, len(rs[0].loss))
        loss = np.array([np.convolve(r.loss, np.ones(w) / w, "valid") for r in rs])
        steps = np.arange(w, loss.shape[1] + w)
        (line,) = ax_loss.plot(steps, loss.mean(0), label=LABELS[method], lw=1.2)
        ax_loss.fill_between(
            steps, loss.mean(0) - loss.std(0), loss.mean(0) + loss.std(0), color=line.get_color(), alpha=0.2
        )
        at = [e["step"] for e in rs[0].evals]
        acc = np.array([[e["test_acc"] for e in r.evals] for r in rs])
        ax_acc.plot(at, acc.mean(0), marker=".", color=line.get_color(), label=LABELS[method])
        ax_acc.fill_between(at, acc.mean(0) - acc.std(0), acc.mean(0) + acc.std(0), color=line.get_color(), alpha=0.2)
    ax_loss.set(xlabel="step", ylabel=f"training loss ({SMOOTH}-step mean)", yscale="log", title="loss on the answer")
    ax_acc.set(xlabel="step", ylabel="test exact-match accuracy", ylim=(0, 1), title="target task accuracy")
    ax_acc.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "curves.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.5 * len(chosen)), dpi=90)
    names = list(chosen)
    left = np.zeros(len(names))
    for part, label in PARTS.items():
        ms = np.array([_ms(_chosen_runs(runs, m, chosen[m]), part) for m in names])
        ax.barh([LABELS[m] for m in names], ms, left=left, label=label)
        left += ms
    ax.set(xlabel="wall time per training step (ms)")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "time_per_step.png")
    plt.close(fig)


def write(out: Path, runs: list[Run], chosen: dict[str, float], summary: dict) -> str:
    out.mkdir(parents=True, exist_ok=True)
    text = table(runs, chosen, summary)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({**summary, "runs": [asdict(r) for r in runs]}, indent=1))
    plot(out, runs, chosen)
    return text
