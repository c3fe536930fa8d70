"""Origin Quantum QPUs through ``pyqpanda3`` (QCloud batch submission).

:class:`OriginSampler` is a Qiskit ``BackendV2`` that translates bound circuits with
measurements into pyqpanda3 programs and returns counts as a Qiskit ``Result``, so qiskit's
``BackendEstimatorV2`` does the rest: measurement grouping, shots from precision, and
expectation values with standard errors. Batches hold at most 200 programs (the QCloud
per-batch limit). The same translation runs on pyqpanda3's local CPU simulator, which is
how it is tested without network access.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
from qiskit import QuantumCircuit, transpile
from qiskit.primitives import BackendEstimatorV2
from qiskit.providers import BackendV2, JobStatus, JobV1, Options
from qiskit.result import Result
from qiskit.transpiler import Target

from qfleet_server.backends import DEFAULT_SHOTS

from . import Block, Program, as_block_result, block_pub

BASIS = ["h", "x", "y", "z", "s", "sdg", "t", "tdg", "rx", "ry", "rz", "cx", "cz", "swap", "u"]
MAX_BATCH = 200


# qiskit gate -> (pyqpanda3 constructor, take its dagger); arguments are qubits then angles
_GATES = {
    "h": ("H", False), "x": ("X", False), "y": ("Y", False), "z": ("Z", False),
    "s": ("S", False), "sdg": ("S", True), "t": ("T", False), "tdg": ("T", True),
    "rx": ("RX", False), "ry": ("RY", False), "rz": ("RZ", False), "u": ("U3", False),
    "cx": ("CNOT", False), "cz": ("CZ", False), "swap": ("SWAP", False),
}  # fmt: skip


def to_qprog(circuit: QuantumCircuit) -> Any:
    """A bound circuit in BASIS plus measurements, as a pyqpanda3 program (same bit order as Qiskit)."""
    from pyqpanda3 import core

    prog = core.QProg()
    measured_q: list[int] = []
    measured_c: list[int] = []
    for inst in circuit.data:
        name = inst.operation.name
        qubits = [circuit.find_bit(b).index for b in inst.qubits]
        if name == "measure":
            measured_q.append(qubits[0])
            measured_c.append(circuit.find_bit(inst.clbits[0]).index)
            continue
        if name == "barrier":
            continue
        if name not in _GATES:
            raise ValueError(f"no pyqpanda3 translation for '{name}'; transpile to {BASIS} first")
        constructor, dagger = _GATES[name]
        gate = getattr(core, constructor)(*qubits, *(float(v) for v in inst.operation.params))
        prog << (gate.dagger() if dagger else gate)
    if measured_q:
        prog << core.measure(measured_q, measured_c)
    return prog


class _DoneJob(JobV1):  # type: ignore[misc]
    def __init__(self, backend: Any, result: Result) -> None:
        super().__init__(backend, str(uuid.uuid4()))
        self._result = result

    def result(self) -> Result:
        return self._result

    def submit(self) -> None:
        return None

    def status(self) -> JobStatus:
        return JobStatus.DONE


class OriginSampler(BackendV2):  # type: ignore[misc]
    """Counts from an Origin QPU (``qcloud_backend``) or, when it is None, pyqpanda3's CPUQVM."""

    def __init__(self, num_qubits: int, qcloud_backend: Any = None) -> None:
        super().__init__(name="origin")
        self._target = Target.from_configuration(basis_gates=[*BASIS, "measure"], num_qubits=num_qubits)
        self.qcloud_backend = qcloud_backend

    @property
    def target(self) -> Target:
        return self._target

    @property
    def max_circuits(self) -> int:
        return MAX_BATCH

    @classmethod
    def _default_options(cls) -> Options:
        return Options(shots=DEFAULT_SHOTS, seed_simulator=None)

    def run(self, circuits: Any, shots: int = DEFAULT_SHOTS, **_: Any) -> _DoneJob:
        circuits = circuits if isinstance(circuits, list) else [circuits]
        progs = [to_qprog(c) for c in circuits]
        if self.qcloud_backend is not None:
            job = self.qcloud_backend.run(progs, shots)
            counts = (
                [r.get_counts() for r in job.result().get_counts_list()]
                if hasattr(job.result(), "get_counts_list")
                else job.result().get_counts()
            )
        else:
            from pyqpanda3 import core

            counts = []
            for prog in progs:
                machine = core.CPUQVM()
                machine.run(prog, shots)
                counts.append(machine.result().get_counts())
        results = []
        for circuit, c in zip(circuits, counts):
            width = circuit.num_clbits
            results.append(
                {
                    "shots": shots,
                    "success": True,
                    "data": {"counts": {hex(int(k, 2)): v for k, v in c.items()}},
                    "header": {
                        "name": circuit.name,
                        "creg_sizes": [[r.name, r.size] for r in circuit.cregs],
                        "memory_slots": width,
                    },
                }
            )
        result = Result.from_dict(
            {
                "backend_name": self.name,
                "backend_version": "1",
                "qobj_id": "",
                "job_id": "",
                "success": True,
                "results": results,
            }
        )
        return _DoneJob(self, result)


class OriginEngine:
    """Estimates on an Origin QPU: transpile to the translatable basis, then qiskit's
    BackendEstimatorV2 over :class:`OriginSampler`."""

    name = "origin"

    def __init__(self, api_key: str | None, chip: str = "origin_wukong") -> None:
        self.api_key = api_key
        self.chip = chip
        self._qcloud: Any = None

    def _backend(self, num_qubits: int) -> OriginSampler:
        if self.api_key and self._qcloud is None:
            from pyqpanda3.qcloud import QCloudService

            self._qcloud = QCloudService(api_key=self.api_key).backend(self.chip)
        return OriginSampler(num_qubits, self._qcloud)

    def estimate(self, program: Program, block: Block) -> tuple[np.ndarray, np.ndarray]:
        circuit = program.cache.get("origin")
        if circuit is None:
            circuit = program.cache["origin"] = transpile(program.circuit, basis_gates=BASIS, optimization_level=1)
        shots = block.shots or DEFAULT_SHOTS
        estimator = BackendEstimatorV2(
            backend=self._backend(circuit.num_qubits), options={"default_precision": 1 / np.sqrt(shots)}
        )
        pub, shape = block_pub(circuit, program.observables, block)
        data = estimator.run([pub]).result()[0].data
        return as_block_result(data, shape)

    def sample(self, program: Program, block: Block) -> np.ndarray:
        """Packed clbit memory (rows, shots, bytes). An Origin QPU answers counts, so each row's
        shots are its counts in a random order (seeded): the same distribution, as BitArray holds it."""
        circuit = program.cache.get("origin")
        if circuit is None:
            circuit = program.cache["origin"] = transpile(program.circuit, basis_gates=BASIS, optimization_level=1)
        rows = len(block.values)
        bound = [circuit.assign_parameters(v) if circuit.num_parameters else circuit for v in block.values]
        backend = self._backend(circuit.num_qubits)
        nbytes = (circuit.num_clbits + 7) // 8
        out = np.zeros((rows, block.shots, nbytes), dtype=np.uint8)
        # pyqpanda3 counts over the measured clbits only, in index order, the highest leftmost
        measured = sorted({circuit.find_bit(i.clbits[0]).index for i in circuit.data if i.operation.name == "measure"})
        rng = np.random.default_rng(block.seed)
        for start in range(0, rows, MAX_BATCH):
            result = backend.run(bound[start : start + MAX_BATCH], shots=block.shots).result()
            for j in range(len(bound[start : start + MAX_BATCH])):
                counts = result.data(j)["counts"]
                compact = np.array([int(k, 16) for k in counts], dtype=np.int64)
                full = sum(((compact >> j) & 1) << c for j, c in enumerate(measured)) if measured else compact * 0
                outcomes = np.repeat(np.asarray(full, dtype=np.int64), list(counts.values()))
                outcomes = rng.permutation(outcomes)[: block.shots]
                shifts = 8 * np.arange(nbytes - 1, -1, -1)
                out[start + j, : len(outcomes)] = (outcomes[:, None] >> shifts) & 0xFF
        return out
