"""IBM Quantum QPUs through ``qiskit-ibm-runtime``: its EstimatorV2 in batch mode.

Circuits are transpiled to the backend's ISA once per structure and the observables
follow the layout. With a fake backend from ``qiskit_ibm_runtime.fake_provider`` the same
code runs in the package's local mode (Aer with the fake device's noise), which is how it
is tested without an account.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qiskit.transpiler import generate_preset_pass_manager

from qfleet_server.backends import DEFAULT_SHOTS

from . import Block, Program, as_block_result, block_pub, memory_of, with_all_clbits


class IBMEngine:
    name = "ibm"

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.pass_manager = generate_preset_pass_manager(optimization_level=1, backend=backend, seed_transpiler=11)

    @classmethod
    def from_token(cls, token: str, instance: str | None, backend_name: str | None) -> IBMEngine:
        from qiskit_ibm_runtime import QiskitRuntimeService

        service = QiskitRuntimeService(channel="ibm_quantum_platform", token=token, instance=instance)
        return cls(
            service.backend(backend_name) if backend_name else service.least_busy(operational=True, simulator=False)
        )

    def estimate(self, program: Program, block: Block) -> tuple[np.ndarray, np.ndarray]:
        from qiskit_ibm_runtime import Batch, EstimatorV2

        isa = program.cache.get("ibm")
        if isa is None:
            circuit = self.pass_manager.run(program.circuit)
            isa = program.cache["ibm"] = (circuit, [o.apply_layout(circuit.layout) for o in program.observables])
        circuit, observables = isa
        shots = block.shots or DEFAULT_SHOTS
        pub, shape = block_pub(circuit, observables, block)
        with Batch(backend=self.backend) as batch:
            estimator = EstimatorV2(mode=batch)
            if block.seed is not None and hasattr(estimator.options, "simulator"):
                estimator.options.simulator.seed_simulator = block.seed
            data = estimator.run([pub], precision=1 / np.sqrt(shots)).result()[0].data
        return as_block_result(data, shape)

    def sample(self, program: Program, block: Block) -> np.ndarray:
        """Packed clbit memory (rows, shots, bytes) from qiskit-ibm-runtime's SamplerV2 in batch
        mode, on the circuit transpiled to the backend's ISA (measurements follow the layout)."""
        from qiskit_ibm_runtime import Batch, SamplerV2

        isa = program.cache.get("ibm-sampler")
        if isa is None:
            isa = program.cache["ibm-sampler"] = self.pass_manager.run(with_all_clbits(program.circuit))
        rows = len(block.values)
        values = block.values if isa.num_parameters else np.zeros((rows, 0))
        with Batch(backend=self.backend) as batch:
            sampler = SamplerV2(mode=batch)
            if block.seed is not None and hasattr(sampler.options, "simulator"):
                sampler.options.simulator.seed_simulator = block.seed
            data = sampler.run([(isa, values, block.shots)]).result()[0].data
        return memory_of(data, rows, block.shots, isa.num_clbits)
