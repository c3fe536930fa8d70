"""Aer: EstimatorV2 with runtime parameter binding for exact runs, and qiskit's
BackendEstimatorV2 over AerSimulator for shot-based estimates with standard errors."""

from __future__ import annotations

import numpy as np
from qiskit import QuantumCircuit, transpile
from qiskit.primitives import BackendEstimatorV2
from qiskit_aer import AerSimulator
from qiskit_aer.primitives import EstimatorV2

from . import Block, Program, as_block_result, block_pub


class AerEngine:
    name = "aer"

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._exact = EstimatorV2(
            options={
                "backend_options": {
                    "runtime_parameter_bind_enable": True,
                    "max_parallel_threads": threads,
                }
            }
        )
        self._simulator = AerSimulator(method="statevector", max_parallel_threads=threads)
        self._basis = set(self._simulator.configuration().basis_gates) | {"barrier"}

    def _circuit(self, program: Program) -> QuantumCircuit:
        """The circuit in gates Aer runs natively; transpiled once per program."""
        circuit = program.cache.get("aer")
        if circuit is None:
            circuit = program.circuit
            if any(inst.operation.name not in self._basis for inst in circuit.data):
                circuit = transpile(circuit, self._simulator, optimization_level=0)
            program.cache["aer"] = circuit
        return circuit

    def estimate(self, program: Program, block: Block) -> tuple[np.ndarray, np.ndarray]:
        circuit = self._circuit(program)
        pub, shape = block_pub(circuit, program.observables, block)
        if block.shots:
            estimator = BackendEstimatorV2(
                backend=self._simulator, options={"default_precision": 1.0 / np.sqrt(block.shots)}
            )
            if block.seed is not None:
                estimator.options.seed_simulator = block.seed
            data = estimator.run([pub]).result()[0].data
        else:
            data = self._exact.run([pub]).result()[0].data
        return as_block_result(data, shape)
