"""``qfleet.torch``: a PyTorch layer whose forward pass is one qfleet job.

>>> layer = QuantumLayer(circuit, ["ZII", "IZI"], input_params=x_params, weight_params=w_params,
...                      client=client, backend="aer")
>>> out = layer(batch)          # (batch, len(observables)); one job for the whole mini-batch
>>> out.sum().backward()        # gradients from the same job (gradient="auto" on the server)

Under ``torch.no_grad()`` (or when nothing needs a gradient) no gradient work is sent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter

from .client import Client

__all__ = ["QuantumLayer"]


class _QuantumFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, layer: QuantumLayer, need_grad: bool) -> torch.Tensor:
        evs, grad = layer._run(x.detach().cpu().numpy(), weight.detach().cpu().numpy(), need_grad)
        ctx.layer = layer
        if grad is not None:
            ctx.save_for_backward(torch.from_numpy(grad))
        return torch.from_numpy(evs).to(dtype=x.dtype, device=x.device)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        (jac,) = ctx.saved_tensors  # (batch, K, P)
        layer: QuantumLayer = ctx.layer
        d_values = torch.einsum("bk,bkp->bp", grad_out.to(jac.dtype).cpu(), jac)
        grad_x = d_values[:, layer._input_cols].to(grad_out) if ctx.needs_input_grad[0] else None
        grad_w = d_values[:, layer._weight_cols].sum(0).to(grad_out) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None, None


class QuantumLayer(torch.nn.Module):
    """Expectation values of ``observables`` as a differentiable function of inputs and weights.

    Args:
        circuit: a parameterized ``QuantumCircuit``.
        observables: K observables (Pauli labels, ``SparsePauliOp`` …); the output is (batch, K).
        input_params: the circuit parameters fed by the input features, in feature order.
        weight_params: the circuit parameters trained as this layer's weights.
        client: a :class:`qfleet.Client`.
        backend, shots, timeout, cache: passed to each job (``cache=False``: no reuse of earlier results).
    """

    def __init__(
        self,
        circuit: QuantumCircuit,
        observables: Sequence[Any],
        input_params: Sequence[Parameter],
        weight_params: Sequence[Parameter],
        *,
        client: Client,
        backend: str = "aer",
        shots: int | None = None,
        timeout: float | None = 600.0,
        initial_weights: Any = None,
        cache: bool = True,
    ) -> None:
        super().__init__()
        order = {p: i for i, p in enumerate(circuit.parameters)}
        missing = set(order) - set(input_params) - set(weight_params)
        if missing or len(set(input_params) | set(weight_params)) != len(order):
            raise ValueError(
                "input_params and weight_params must split the circuit's parameters exactly; "
                f"unassigned: {sorted(p.name for p in missing)}"
            )
        self.circuit = circuit
        self.observables = [[o] for o in observables]
        self.client = client
        self.backend = backend
        self.shots = shots
        self.timeout = timeout
        self.cache = cache
        self._input_cols = [order[p] for p in input_params]
        self._weight_cols = [order[p] for p in weight_params]
        if initial_weights is None:
            initial_weights = np.random.default_rng().uniform(0, 2 * math.pi, len(weight_params))
        self.weight = torch.nn.Parameter(torch.as_tensor(np.asarray(initial_weights, dtype=np.float64)))
        self.last_job: dict[str, Any] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = x.dim() == 1
        out = self._forward_with(x.unsqueeze(0) if single else x, self.weight)
        return out.squeeze(0) if single else out

    def _forward_with(self, batch: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        need_grad = torch.is_grad_enabled() and (batch.requires_grad or weight.requires_grad)
        return _QuantumFunction.apply(batch, weight, self, need_grad)  # type: ignore[no-untyped-call,no-any-return]

    def _run(self, x: np.ndarray, weight: np.ndarray, need_grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        values = np.empty((x.shape[0], self.circuit.num_parameters))
        values[:, self._input_cols] = x
        values[:, self._weight_cols] = weight
        t0 = time.perf_counter()
        job = self.client.estimate(
            [(self.circuit, self.observables, values)],
            backend=self.backend,
            shots=self.shots,
            gradient="auto" if need_grad else None,
            cache=self.cache,
        )
        result = job.result(timeout=self.timeout, progress=False)
        pub = result[0]
        self.last_job = {
            "id": job.id,
            "round_trip_s": time.perf_counter() - t0,
            "running_s": result.metadata.get("running_s", 0.0),
            "parameter_sets": len(values),
            "gradient": pub.gradient is not None,
        }
        evs = pub.evs.T  # (batch, K)
        grad = None if pub.gradient is None else np.transpose(pub.gradient, (1, 0, 2))  # (batch, K, P)
        return np.ascontiguousarray(evs), grad
