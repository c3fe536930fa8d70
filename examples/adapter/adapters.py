"""Adapters on a frozen model's attention projections: LoRA, and a QTHA-style adapter.

QTHA (Quantum Tensor Hybrid Adaptation, arXiv 2503.12790) splits the weight update of a
LoRA-style adapter into a matrix-product-operator (MPO) tensor network and a quantum neural
network (QNN), joined by a linear fusion. Here, on a projection ``W``::

    z = MPO_down(x)                     # d -> r, two MPO cores
    h = F @ [z, QNN(z)]                 # linear fusion of the tensor path and the quantum path
    y = W x + MPO_up(h)                 # r -> d, two MPO cores, zero at the start

The QNN reads the r numbers of ``z`` as rotation angles on r qubits, applies trainable
layers, and returns Z on each qubit. It runs through qfleet (``qfleet.torch.QuantumLayer``):
every position of every sequence in the batch is one circuit, and one training step is one
job with its gradients computed on the server. Only one site carries a QNN (the last
block's value projection), so a step needs one job; the other sites keep the MPO path.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from qfleet import Client
from qfleet.torch import QuantumLayer
from torch import nn

from qfleet_server.bench.workloads import encoder_ansatz

from .model import CharLM

SITES = ("q", "k", "v", "o")  # every attention projection in every block


class LoRA(nn.Module):
    """``W x + B A x`` with A (r, d) random and B (d, r) zero, so training starts from the base model."""

    def __init__(self, base: nn.Linear, rank: int) -> None:
        super().__init__()
        self.base = base
        self.a = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.b = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + x @ self.a.T @ self.b.T


class MPOLinear(nn.Module):
    """A (prod(in_modes), prod(out_modes)) matrix as two MPO cores with bond dimension ``bond``:
    W[(i1,i2),(o1,o2)] = sum_k G1[i1,o1,k] G2[k,i2,o2]."""

    def __init__(self, in_modes: tuple[int, int], out_modes: tuple[int, int], bond: int, zero: bool = False) -> None:
        super().__init__()
        (i1, i2), (o1, o2) = in_modes, out_modes
        std = (1.0 / (i1 * i2 * bond)) ** 0.25  # unit-variance outputs for unit-variance inputs
        self.g1 = nn.Parameter(torch.randn(i1, o1, bond) * std)
        self.g2 = nn.Parameter(torch.zeros(bond, i2, o2) if zero else torch.randn(bond, i2, o2) * std)
        self.shape = (i1 * i2, o1 * o2)

    def matrix(self) -> torch.Tensor:
        return torch.einsum("aok,kbp->abop", self.g1, self.g2).reshape(self.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.matrix()


def qnn_layer(client: Client, qubits: int, layers: int, backend: str, shots: int | None, seed: int) -> QuantumLayer:
    """RY(z_q) on each qubit, then trainable RY/RZ layers with a CX ladder; Z on each qubit."""
    circuit, inputs, weights = encoder_ansatz(qubits, layers)
    observables = ["I" * (qubits - 1 - q) + "Z" + "I" * q for q in range(qubits)]
    init = np.random.default_rng(seed).normal(0, 0.1, len(weights))
    return QuantumLayer(
        circuit, observables, inputs, weights, client=client, backend=backend, shots=shots, initial_weights=init
    )


class QTHA(nn.Module):
    """The hybrid update above; without ``qnn`` it is the MPO path alone (the ablation)."""

    def __init__(self, base: nn.Linear, rank: int, bond: int, qnn: QuantumLayer | None = None) -> None:
        super().__init__()
        self.base = base
        side = int(math.isqrt(base.in_features))
        low = int(math.isqrt(rank))
        self.down = MPOLinear((side, side), (low, low), bond)
        self.up = MPOLinear((low, low), (side, side), bond, zero=True)
        self.qnn = qnn
        if qnn is not None:
            # starts as the tensor path alone; training blends the quantum path in
            self.fuse = nn.Parameter(torch.cat([torch.eye(rank), torch.zeros(rank, rank)], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.down(x)
        h = z
        if self.qnn is not None:
            q = self.qnn(z.reshape(-1, z.shape[-1]).double()).to(z.dtype).reshape(z.shape)
            h = torch.cat([z, q], -1) @ self.fuse.T
        return self.base(x) + self.up(h)


LORA_RANKS = {"lora": 4, "lora-r1": 1}  # r=1 has about the QTHA adapter's parameter count
MPO_RANK, MPO_BOND = 4, 2
QUBITS, QNN_LAYERS = MPO_RANK, 2


def adapt(
    base: CharLM,
    method: str,
    client: Client | None = None,
    backend: str = "aer",
    shots: int | None = None,
    seed: int = 0,
) -> CharLM:
    """A copy of the frozen base model with the method's trainable parameters.

    ``full``: every weight trains. ``lora``/``lora-r1``: LoRA on every attention projection.
    ``mpo``: the QTHA tensor path alone there. ``qtha``: ``mpo`` plus the QNN on the last block's v.
    """
    torch.manual_seed(seed)
    model = copy.deepcopy(base)
    if method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model.train()
    last = len(model.blocks) - 1
    for i, block in enumerate(model.blocks):
        for site in SITES:
            proj = getattr(block.attn, site)
            if method in LORA_RANKS:
                wrapped: nn.Module = LoRA(proj, LORA_RANKS[method])
            elif method in ("mpo", "qtha"):
                qnn = None
                if method == "qtha" and i == last and site == "v":
                    assert client is not None, "the quantum adapter needs a qfleet client"
                    qnn = qnn_layer(client, QUBITS, QNN_LAYERS, backend, shots, seed)
                wrapped = QTHA(proj, MPO_RANK, MPO_BOND, qnn)
            else:
                raise ValueError(f"unknown method {method!r}")
            setattr(block.attn, site, wrapped)
    return model.train()


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
