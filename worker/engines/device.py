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
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.primitives import BackendEstimatorV2, BackendSamplerV2
from qiskit.primitives.containers import ObservablesArray
from qiskit.quantum_info import PauliList, SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_aer import AerSimulator
from qiskit_aer.noise import (
    NoiseModel,
    QuantumError,
    ReadoutError,
    depolarizing_error,
    thermal_relaxation_error,
)

from qfleet_server.backends import DEFAULT_SHOTS
from qfleet_server.devices.wukong72 import Wukong72Backend

from . import Block, Program, as_block_result, block_pub, density, memory_of, with_all_clbits

# Noisy estimates on at most this many active qubits run on the batched density-matrix engine.
# Its state is at most 8·4^n bytes a set (134 MB at 12), and that bound is what holds it here:
# its light-cone plans keep the state far smaller where the circuit allows (the training
# ansatz: 2^15 numbers a set at n=12, 1.7 ms a set in-process against 3.8 s for Aer's
# statevector trajectories, bench/run.py --only-device), but a circuit whose light cones cover
# every qubit needs all 4^n.
DENSITY_QUBITS = 12


@dataclass
class _Compiled:
    circuit: QuantumCircuit  # on the active physical qubits only, renumbered 0..k-1
    physical: list[int]  # compact index -> physical qubit
    observables: list[SparsePauliOp]  # on the compact qubits
    columns: list[int]  # compact circuit parameter j <- original column
    depth: int
    two_qubit_gates: int


@dataclass
class _Errors:
    one_qubit: dict[int, QuantumError] = field(default_factory=dict)  # after each sx or x
    two_qubit: dict[tuple[int, int], tuple[QuantumError, QuantumError, QuantumError]] = field(
        default_factory=dict
    )  # CZ (first, second): depolarizing, then each qubit's relaxation
    readout: dict[int, np.ndarray] = field(default_factory=dict)  # [true][recorded]


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
        self._channels: dict[tuple[int, ...], density.Channels] = {}

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

    def _errors(self, physical: list[int]) -> _Errors:
        """The calibration's errors on the compact qubits, as qiskit channels: the one source of
        both the Aer noise model and the density-matrix engine's channels."""
        cal = self.calibration
        qubits = cal["qubits"]
        ns = cal["durations_ns"]
        index = {p: i for i, p in enumerate(physical)}

        def relax(p: int, duration_ns: float) -> QuantumError:
            q = qubits[p]
            return thermal_relaxation_error(
                q["t1_us"] * 1e-6, min(q["t2_us"], 2 * q["t1_us"]) * 1e-6, duration_ns * 1e-9
            )

        errors = _Errors()
        for p, i in index.items():
            q = qubits[p]
            errors.one_qubit[i] = depolarizing_error(q["sx_error"], 1).compose(relax(p, ns["sx"]))
            e = q["readout_error"]
            errors.readout[i] = np.array([[1 - e, e], [e, 1 - e]])  # [true][recorded]
        for c in cal["couplers"]:
            a, b = c["pair"]
            if c["enabled"] and a in index and b in index:
                for first, second in ((a, b), (b, a)):
                    errors.two_qubit[index[first], index[second]] = (
                        depolarizing_error(c["cz_error"], 2),
                        relax(first, ns["cz"]),
                        relax(second, ns["cz"]),
                    )
        return errors

    def _build_noise(self, physical: list[int]) -> NoiseModel:
        errors = self._errors(physical)
        model = NoiseModel(basis_gates=["rz", "sx", "x", "cz"])
        for i, one in errors.one_qubit.items():
            model.add_quantum_error(one, ["sx", "x"], [i])
            model.add_readout_error(ReadoutError(errors.readout[i]), [i])
        for (i, j), (depolarizing, relax_i, relax_j) in errors.two_qubit.items():
            # x.tensor(y) acts with y on the instruction's first qubit: each qubit its own T1/T2
            model.add_quantum_error(depolarizing.compose(relax_j.tensor(relax_i)), ["cz"], [i, j])
        return model

    def channels(self, physical: list[int]) -> density.Channels:
        """The noise model's channels as Pauli transfer matrices, for the density-matrix engine."""
        key = tuple(physical)
        found = self._channels.get(key)
        if found is None:
            errors = self._errors(physical)
            found = self._channels[key] = density.Channels(
                one_qubit={i: density.ptm(e, 1) for i, e in errors.one_qubit.items()},
                two_qubit={
                    pair: (density.ptm(d, 2), density.ptm(r1, 1), density.ptm(r2, 1))
                    for pair, (d, r1, r2) in errors.two_qubit.items()
                },
                readout={i: r.T for i, r in errors.readout.items()},
            )
        return found

    def _density(self, program: Program) -> tuple[density.Compiled, Callable[[tuple[str, ...]], list[density.Group]]]:
        """The compacted circuit prepared for the density-matrix engine, and its measurement
        groups per set of Paulis, formed by BackendEstimatorV2 itself on the noisy simulator."""
        key = f"device-density:{self.backend.name}"
        cached = program.cache.get(key)
        if cached is None:
            compiled = self.compile(program)
            channels = self.channels(compiled.physical)
            prepared = density.compile_circuit(compiled.circuit, channels)
            simulator = AerSimulator(method="density_matrix", noise_model=self.noise_model(compiled.physical))
            estimator = BackendEstimatorV2(backend=simulator)
            empty = QuantumCircuit(len(compiled.physical))
            known: dict[tuple[str, ...], list[density.Group]] = {}

            def groups(labels: tuple[str, ...]) -> list[density.Group]:
                found = known.get(labels)
                if found is None:
                    # its own (private) grouping and basis change, so the statistics are its own
                    circuits = estimator._create_measurement_circuits(empty, PauliList(list(labels)), (0,))
                    found = known[labels] = [
                        density.measurement_group(c, c.metadata["orig_paulis"].to_labels(), channels) for c in circuits
                    ]
                return found

            cached = program.cache[key] = (prepared, groups)
        return cached  # type: ignore[no-any-return]

    @staticmethod
    def uses_density(active: int, noisy: bool) -> bool:
        """Noisy estimates on few qubits run on the batched density-matrix engine (density.py)."""
        return noisy and active <= DENSITY_QUBITS

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
        if self.uses_density(len(compiled.physical), noise):
            return self._estimate_density(program, block, shots)
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

    def _estimate_density(self, program: Program, block: Block, shots: int) -> tuple[np.ndarray, np.ndarray]:
        compiled = self.compile(program)
        prepared, groups = self._density(program)
        observables = ObservablesArray(compiled.observables)
        with self.semaphore() if self.semaphore else nullcontext():
            evs, stds = density.estimate(
                prepared,
                self.channels(compiled.physical),
                block.values[:, compiled.columns],
                [dict(observables[k]) for k in range(len(compiled.observables))],
                block.obs_index,
                shots,
                block.seed,
                groups,
            )
            if self.shot_time_s:
                time.sleep(self.shot_time_s * shots * len(block.values))
        return evs, stds

    def describe(self, program: Program, block: Block) -> dict[str, Any]:
        """What ran a block: the provenance a result's metadata carries."""
        compiled = self.compile(program)
        return {
            "engine": self._engine_name(len(compiled.physical), block.noise),
            "shots": block.shots or DEFAULT_SHOTS,
            "seed": block.seed,
            "calibration": self.calibration["id"],
            "transpiled_depth": compiled.depth,
            "two_qubit_gates": compiled.two_qubit_gates,
            "physical_qubits": compiled.physical,
            "noise": block.noise,
        }

    def _engine_name(self, active: int, noise: bool) -> str:
        if self.uses_density(active, noise):
            return "qfleet-pauli_density_matrix-noisy"
        return f"aer-{self.method(active, noise)}" + ("-noisy" if noise else "")

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
