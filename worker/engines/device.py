"""The device engine: a QPU model simulated by Aer with the device's noise.

Per circuit structure (cached): transpile to the device target (layout, routing, native
gates), keep only the physical qubits the circuit or its observables touch, and build an
Aer noise model for those from the calibration — thermal relaxation plus depolarizing
error on each gate, readout error on each measurement. Estimates are shot-based with
standard errors (qiskit's BackendEstimatorV2, which groups observables by qubit-wise
commutation). Density matrix for a few noisy qubits, statevector up to ~20, and
matrix-product state beyond, so all 72 qubits run. Each device runs one batch at a
time (a Redis semaphore across workers), for an optional simulated time per shot.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.primitives import BackendEstimatorV2, BackendSamplerV2
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, ReadoutError, depolarizing_error, thermal_relaxation_error

from qfleet_server.backends import DEFAULT_SHOTS
from qfleet_server.devices.wukong72 import Wukong72Backend

from . import Block, Program, as_block_result, block_pub, memory_of, with_all_clbits


@dataclass
class _Compiled:
    circuit: QuantumCircuit  # on the active physical qubits only, renumbered 0..k-1
    physical: list[int]  # compact index -> physical qubit
    observables: list[SparsePauliOp]  # on the compact qubits
    columns: list[int]  # compact circuit parameter j <- original column
    depth: int
    two_qubit_gates: int


class DeviceEngine:
    name = "device"

    def __init__(self, backend: Wukong72Backend, threads: int, semaphore: Any = None, shot_time_s: float = 0.0) -> None:
        self.backend = backend
        self.calibration = backend.calibration
        self.threads = threads
        self.semaphore = semaphore  # context manager factory: one batch at a time per device
        self.shot_time_s = shot_time_s
        self.pass_manager = generate_preset_pass_manager(
            optimization_level=1, target=backend.target, seed_transpiler=11
        )
        self._noise: dict[tuple[int, ...], NoiseModel] = {}

    def compile(self, program: Program) -> _Compiled:
        key = f"device:{self.backend.name}"
        compiled = program.cache.get(key)
        if compiled is None:
            compiled = program.cache[key] = self._compile(program)
        return compiled  # type: ignore[no-any-return]

    def _compile(self, program: Program) -> _Compiled:
        transpiled = self.pass_manager.run(program.circuit)
        mapped = [o.apply_layout(transpiled.layout) for o in program.observables]
        active = {
            transpiled.find_bit(q).index
            for inst in transpiled.data
            if inst.operation.name != "barrier"
            for q in inst.qubits
        }
        for obs in mapped:
            for label in obs.paulis.to_labels():
                active |= {q for q, ch in enumerate(reversed(label)) if ch != "I"}
        physical = sorted(active) or [0]
        index = {p: i for i, p in enumerate(physical)}
        compact = QuantumCircuit(len(physical))
        for inst in transpiled.data:
            if inst.operation.name == "barrier":
                continue
            compact.append(inst.operation, [index[transpiled.find_bit(q).index] for q in inst.qubits])
        observables = []
        for obs in mapped:
            labels = ["".join(label[::-1][p] for p in physical)[::-1] for label in obs.paulis.to_labels()]
            observables.append(SparsePauliOp(labels, obs.coeffs))
        names = [p.name for p in program.circuit.parameters]
        columns = [names.index(p.name) for p in compact.parameters]
        return _Compiled(
            compact, physical, observables, columns, transpiled.depth(), int(transpiled.count_ops().get("cz", 0))
        )

    def noise_model(self, physical: list[int]) -> NoiseModel:
        key = tuple(physical)
        model = self._noise.get(key)
        if model is None:
            model = self._noise[key] = self._build_noise(physical)
        return model

    def _build_noise(self, physical: list[int]) -> NoiseModel:
        cal = self.calibration
        qubits = cal["qubits"]
        ns = cal["durations_ns"]
        model = NoiseModel(basis_gates=["rz", "sx", "x", "cz"])
        index = {p: i for i, p in enumerate(physical)}

        def relax(p: int, duration_ns: float) -> Any:
            q = qubits[p]
            return thermal_relaxation_error(
                q["t1_us"] * 1e-6, min(q["t2_us"], 2 * q["t1_us"]) * 1e-6, duration_ns * 1e-9
            )

        for p, i in index.items():
            q = qubits[p]
            one = depolarizing_error(q["sx_error"], 1).compose(relax(p, ns["sx"]))
            model.add_quantum_error(one, ["sx", "x"], [i])
            e = q["readout_error"]
            model.add_readout_error(ReadoutError([[1 - e, e], [e, 1 - e]]), [i])
        for c in cal["couplers"]:
            a, b = c["pair"]
            if c["enabled"] and a in index and b in index:
                for first, second in ((a, b), (b, a)):
                    # x.tensor(y) acts with y on the instruction's first qubit: each qubit its own T1/T2
                    relaxation = relax(second, ns["cz"]).tensor(relax(first, ns["cz"]))
                    two = depolarizing_error(c["cz_error"], 2).compose(relaxation)
                    model.add_quantum_error(two, ["cz"], [index[first], index[second]])
        return model

    @staticmethod
    def method(active: int, noisy: bool) -> str:
        if noisy and active <= 10:
            return "density_matrix"
        if active <= 20:
            return "statevector"
        return "matrix_product_state"

    def estimate(self, program: Program, block: Block) -> tuple[np.ndarray, np.ndarray]:
        noise = block.noise
        compiled = self.compile(program)
        shots = block.shots or DEFAULT_SHOTS
        method = self.method(len(compiled.physical), noise)
        simulator = AerSimulator(
            method=method,
            noise_model=self.noise_model(compiled.physical) if noise else None,
            max_parallel_threads=self.threads,
        )
        estimator = BackendEstimatorV2(backend=simulator, options={"default_precision": 1 / np.sqrt(shots)})
        if block.seed is not None:
            estimator.options.seed_simulator = block.seed
        # the transpiled circuit's parameters, in its own order, from the original columns
        pub, shape = block_pub(compiled.circuit, compiled.observables, block, block.values[:, compiled.columns])
        with self.semaphore() if self.semaphore else nullcontext():
            data = estimator.run([pub]).result()[0].data
            if self.shot_time_s:
                time.sleep(self.shot_time_s * shots * len(block.values))
        return as_block_result(data, shape)

    def describe(self, program: Program, block: Block) -> dict[str, Any]:
        """What ran a block: the provenance a result's metadata carries."""
        compiled = self.compile(program)
        return {
            "engine": f"aer-{self.method(len(compiled.physical), block.noise)}" + ("-noisy" if block.noise else ""),
            "shots": block.shots or DEFAULT_SHOTS,
            "seed": block.seed,
            "calibration": self.calibration["id"],
            "transpiled_depth": compiled.depth,
            "two_qubit_gates": compiled.two_qubit_gates,
            "physical_qubits": compiled.physical,
            "noise": block.noise,
        }

    def _compile_sampler(self, program: Program) -> tuple[QuantumCircuit, list[int], list[int], int]:
        """Transpiled onto the device with its measurements, then compacted onto the physical
        qubits in use (clbits and registers kept): a measure on compact qubit i reads physical
        qubit physical[i], whose readout error the noise model carries."""
        key = f"device-sampler:{self.backend.name}"
        cached = program.cache.get(key)
        if cached is None:
            transpiled = self.pass_manager.run(with_all_clbits(program.circuit))
            used = {
                transpiled.find_bit(q).index
                for inst in transpiled.data
                if inst.operation.name not in ("barrier", "delay")
                for q in inst.qubits
            }
            physical = sorted(used) or [0]
            index = {p: i for i, p in enumerate(physical)}
            compact = QuantumCircuit(len(physical))
            compact.add_bits(transpiled.clbits)
            for creg in transpiled.cregs:
                compact.add_register(creg)
            for inst in transpiled.data:
                if inst.operation.name in ("barrier", "delay"):
                    continue
                qubits = [compact.qubits[index[transpiled.find_bit(q).index]] for q in inst.qubits]
                compact.append(inst.operation, qubits, inst.clbits)
            names = [p.name for p in program.circuit.parameters]
            columns = [names.index(p.name) for p in compact.parameters]
            cached = program.cache[key] = (compact, physical, columns, transpiled.depth())
        return cached  # type: ignore[no-any-return]

    def sample(self, program: Program, block: Block) -> np.ndarray:
        """Packed clbit memory (rows, shots, bytes) from the noisy device model, readout error included."""
        compact, physical, columns, _ = self._compile_sampler(program)
        method = self.method(len(physical), block.noise)
        simulator = AerSimulator(
            method=method,
            noise_model=self.noise_model(physical) if block.noise else None,
            max_parallel_threads=self.threads,
        )
        sampler = BackendSamplerV2(backend=simulator, options={"seed_simulator": block.seed})
        rows = len(block.values)
        values = block.values[:, columns] if compact.num_parameters else np.zeros((rows, 0))
        with self.semaphore() if self.semaphore else nullcontext():
            data = sampler.run([(compact, values, block.shots)]).result()[0].data
            if self.shot_time_s:
                time.sleep(self.shot_time_s * block.shots * rows)
        return memory_of(data, rows, block.shots, compact.num_clbits)

    def describe_sample(self, program: Program, block: Block) -> dict[str, Any]:
        _, physical, _, depth = self._compile_sampler(program)
        return {
            "engine": f"aer-{self.method(len(physical), block.noise)}" + ("-noisy" if block.noise else ""),
            "shots": block.shots,
            "seed": block.seed,
            "calibration": self.calibration["id"],
            "transpiled_depth": depth,
            "physical_qubits": physical,
            "noise": block.noise,
        }
