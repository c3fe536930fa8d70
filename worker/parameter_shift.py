"""Server-side parameter-shift gradients on any engine: expand each row into the 2G+1
shifted angle sets in one block, run it, and reduce back (see service/gradients.py)."""

from __future__ import annotations

import numpy as np

from qfleet_server.gradients import shift_plan

from .engines import Block, Engine, Program


def parameter_shift(engine: Engine, program: Program, block: Block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """evs, stds and the gradient (evs shape + (P,)) of a block, by the two-term rule."""
    shifted = program.cache.get("shift")
    if shifted is None:
        plan = shift_plan(program.circuit)
        shifted = program.cache["shift"] = (plan, Program(plan.circuit, program.observables), plan.chain())
    plan, shift_program, chain = shifted
    phi = plan.angle_values(block.values)  # (rows, G)
    rows, G = phi.shape
    expanded = np.repeat(phi[:, None, :], 2 * G + 1, axis=1)  # [base, +π/2 on each φ_j, -π/2 on each φ_j]
    index = np.arange(G)
    expanded[:, 1 + index, index] += np.pi / 2
    expanded[:, 1 + G + index, index] -= np.pi / 2
    obs_index = None if block.obs_index is None else np.repeat(block.obs_index, 2 * G + 1)
    evs, stds = engine.estimate(
        shift_program,
        Block(expanded.reshape(rows * (2 * G + 1), G), obs_index, block.shots, block.seed, block.noise),
    )
    evs = evs.reshape(*evs.shape[:-1], rows, 2 * G + 1)
    stds = stds.reshape(*stds.shape[:-1], rows, 2 * G + 1)
    d_phi = (evs[..., 1 : G + 1] - evs[..., G + 1 :]) / 2
    return evs[..., 0], stds[..., 0], d_phi @ chain
