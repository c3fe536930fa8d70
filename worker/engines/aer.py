"""Aer: EstimatorV2 with runtime parameter binding for exact runs, and qiskit's
BackendEstimatorV2 over AerSimulator for shot-based estimates with standard errors."""

from __future__ import annotations

import numpy as np
from qiskit import QuantumCircuit, transpile
from qiskit.primitives import BackendEstimatorV2
from qiskit_aer import AerSimulator
from qiskit_aer.primitives import EstimatorV2, SamplerV2

from . import Block, Program, as_block_result, block_pub, memory_of, with_all_clbits


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
        # a reset makes the state mixed: exact values come from the density matrix
        self._mixed = EstimatorV2(
            options={"backend_options": {"method": "density_matrix", "max_parallel_threads": threads}}
        )

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
        elif any(inst.operation.name == "reset" for inst in circuit.data):
            data = self._mixed.run([pub]).result()[0].data
        else:
            data = self._exact.run([pub]).result()[0].data
        return as_block_result(data, shape)

    def sample(self, program: Program, block: Block) -> np.ndarray:
        """Packed clbit memory, (rows, shots, bytes). Circuits whose measurements all come last
        are sampled exactly from each row's final statevector, each bound circuit with a
        generator from the job's seed, as Qiskit's reference sampler does; others run shot by
        shot in Aer's SamplerV2 (mid-circuit measurement, reset, classical control)."""
        final = program.cache.get("aer-final")
        if final is None:
            final = program.cache["aer-final"] = final_measurements(self._circuit(program))
        if isinstance(final, tuple):
            return self._sample_final(program, block, *final)
        circuit = program.cache.get("aer-sampler")
        if circuit is None:
            circuit = program.cache["aer-sampler"] = with_all_clbits(self._circuit(program))
        sampler = SamplerV2(seed=block.seed, options={"backend_options": {"max_parallel_threads": self.threads}})
        rows = len(block.values)
        values = block.values if circuit.num_parameters else np.zeros((rows, 0))
        data = sampler.run([(circuit, values, block.shots)]).result()[0].data
        return memory_of(data, rows, block.shots, circuit.num_clbits)

    def _sample_final(
        self, program: Program, block: Block, circuit: QuantumCircuit, qargs: list[int], clbit_pos: list[int]
    ) -> np.ndarray:
        rows = len(block.values)
        if qargs:
            binds = None
            if circuit.num_parameters:
                binds = [{p: block.values[:, j].tolist() for j, p in enumerate(circuit.parameters)}]
            result = self._simulator.run(circuit, parameter_binds=binds, shots=1).result()
            probs = [np.asarray(result.data(r if binds else 0)["probabilities"]) for r in range(rows)]
        nbytes = (len(clbit_pos) + 7) // 8
        out = np.zeros((rows, block.shots, nbytes), dtype=np.uint8)
        if not qargs or not nbytes:
            return out
        clbits = np.arange(len(clbit_pos))
        measured = np.array([q >= 0 for q in clbit_pos])
        for r in range(rows):
            p = probs[r]
            if abs(p.sum() - 1.0) > 1e-10 or (p < 0).any():
                p = np.clip(p, 0.0, None) / np.clip(p, 0.0, None).sum()
            # one generator per bound circuit from the job's seed: Statevector.sample_memory's draw
            rng = np.random.default_rng(block.seed)
            outcomes = rng.choice(len(p), size=block.shots, p=p)
            bits = np.zeros((block.shots, nbytes * 8), dtype=np.uint8)
            for c in clbits[measured]:
                bits[:, nbytes * 8 - 1 - c] = (outcomes >> clbit_pos[c]) & 1
            out[r] = np.packbits(bits, axis=-1, bitorder="big")
        return out


def final_measurements(circuit: QuantumCircuit) -> tuple[QuantumCircuit, list[int], list[int]] | bool:
    """(circuit without its final measurements, saving the probabilities of the measured qubits;
    the measured qubits; per clbit, the position of its qubit among them, or -1), or False when
    some measurement is not final or the circuit has resets or classical control."""
    names = {inst.operation.name for inst in circuit.data}
    if "reset" in names or any(getattr(inst.operation, "blocks", None) for inst in circuit.data):
        return False
    measured: set[int] = set()
    for inst in circuit.data:
        qubits = {circuit.find_bit(q).index for q in inst.qubits}
        if inst.operation.name == "measure":
            measured |= qubits
        elif inst.operation.name not in ("barrier", "delay") and measured & qubits:
            return False  # a mid-circuit measurement
    mapping: dict[int, int] = {}  # clbit -> qubit; the last measurement into a clbit wins
    for inst in reversed(circuit.data):
        if inst.operation.name == "measure":
            mapping.setdefault(circuit.find_bit(inst.clbits[0]).index, circuit.find_bit(inst.qubits[0]).index)
    stripped = circuit.remove_final_measurements(inplace=False)
    qargs = sorted(set(mapping.values()))
    position = {q: j for j, q in enumerate(qargs)}
    if qargs:
        stripped.save_probabilities(qargs)
    return stripped, qargs, [position[mapping[c]] if c in mapping else -1 for c in range(circuit.num_clbits)]
