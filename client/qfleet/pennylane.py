"""``qfleet.pennylane``: a PennyLane device whose batches of tapes run as qfleet jobs.

PennyLane code runs remotely with only the device name changed:

>>> import pennylane as qml
>>> dev = qml.device("qfleet", wires=4, backend="aer", url=url, api_key=key)
>>> @qml.qnode(dev)  # diff_method "best" is the service's own gradient (one job)
... def circuit(x):
...     qml.RX(x, wires=0)
...     return qml.expval(qml.Z(0) @ qml.Z(1) + 0.5 * qml.X(1))

A batch of tapes (a parameter-shift fan-out, a ``TorchLayer`` mini-batch) becomes ONE job:
tapes of one circuit structure share one template whose gate angles are symbolic, and their
angles become the rows of one PUB. Without shots, ``expval``/``var``/``probs`` are exact
(estimator: Pauli sums, ``O²`` for ``var``, Z strings for ``probs``); with shots every
measurement comes from the sampler's bit strings (``sample``, ``counts`` too), seeded when the
device has a ``seed``. ``url`` and ``api_key`` default to ``QFLEET_URL`` / ``QFLEET_API_KEY``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pennylane as qml
from pennylane.devices import Device, ExecutionConfig
from pennylane.devices.preprocess import (
    decompose,
    measurements_from_samples,
    validate_device_wires,
    validate_measurements,
)
from pennylane.exceptions import DeviceError
from pennylane.measurements import ExpectationMP, ProbabilityMP, SampleMP, VarianceMP
from pennylane.tape import QuantumScript
from pennylane.transforms import broadcast_expand, diagonalize_measurements, split_non_commuting
from pennylane.transforms.core import CompilePipeline, transform
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector

from .client import Client

__all__ = ["QfleetDevice"]

# PennyLane operation name -> (QuantumCircuit method, number of angles). Conventions match:
# RX(θ) = exp(-iθX/2) in both, IsingZZ = rzz, ControlledPhaseShift = cp, U3 = u, wires in
# PennyLane's order (control first). Everything else is decomposed by PennyLane first.
GATES: dict[str, tuple[str, int]] = {
    "PauliX": ("x", 0),
    "PauliY": ("y", 0),
    "PauliZ": ("z", 0),
    "Hadamard": ("h", 0),
    "S": ("s", 0),
    "T": ("t", 0),
    "SX": ("sx", 0),
    "Adjoint(S)": ("sdg", 0),
    "Adjoint(T)": ("tdg", 0),
    "Adjoint(SX)": ("sxdg", 0),
    "CNOT": ("cx", 0),
    "CY": ("cy", 0),
    "CZ": ("cz", 0),
    "CH": ("ch", 0),
    "SWAP": ("swap", 0),
    "ISWAP": ("iswap", 0),
    "ECR": ("ecr", 0),
    "CSWAP": ("cswap", 0),
    "Toffoli": ("ccx", 0),
    "RX": ("rx", 1),
    "RY": ("ry", 1),
    "RZ": ("rz", 1),
    "PhaseShift": ("p", 1),
    "U1": ("p", 1),
    "U3": ("u", 3),
    "CRX": ("crx", 1),
    "CRY": ("cry", 1),
    "CRZ": ("crz", 1),
    "ControlledPhaseShift": ("cp", 1),
    "IsingXX": ("rxx", 1),
    "IsingYY": ("ryy", 1),
    "IsingZZ": ("rzz", 1),
}
# Operations that change no expectation value or probability: left out of the circuit.
IGNORED = frozenset({"Identity", "GlobalPhase", "Barrier", "Snapshot"})
# probs() without shots is the Walsh transform of all 2^k Z strings over its k wires.
MAX_EXACT_PROBS_WIRES = 12
CIRCUIT_CACHE_SIZE = 512


def _stopping_condition(op: qml.operation.Operator) -> bool:
    return op.name in GATES or op.name in IGNORED


def _analytic_measurement(mp: Any) -> bool:
    if getattr(mp, "mv", None) is not None:
        return False  # statistics of mid-circuit measurements
    if isinstance(mp, ExpectationMP | VarianceMP):
        return mp.obs is not None
    return isinstance(mp, ProbabilityMP) and (mp.obs is None or not mp.obs.diagonalizing_gates())


def _rotated_probs(mp: Any) -> bool:
    return isinstance(mp, ProbabilityMP) and mp.obs is not None and bool(mp.obs.diagonalizing_gates())


def _sample_measurement(mp: Any) -> bool:
    return isinstance(mp, SampleMP) and mp.obs is None and getattr(mp, "mv", None) is None


@transform  # type: ignore[untyped-decorator]
def _one_basis(tape: QuantumScript) -> tuple[Sequence[QuantumScript], Callable[..., Any]]:
    """With shots each tape's observables must be measured in one basis: split non-commuting ones.
    Exact ``probs(op=...)`` is measured in the computational basis after ``op``'s diagonalizing gates."""
    if tape.shots:
        return split_non_commuting(tape)  # type: ignore[no-any-return]
    if any(_rotated_probs(mp) for mp in tape.measurements):
        return diagonalize_measurements(tape)  # type: ignore[no-any-return]
    return (tape,), _first


@transform  # type: ignore[untyped-decorator]
def _from_samples(tape: QuantumScript) -> tuple[Sequence[QuantumScript], Callable[..., Any]]:
    """With shots, one ``sample()`` of the measured wires in the observables' eigenbasis; every
    measurement is then computed from it. PennyLane's ``measurements_from_samples`` does this
    for Pauli observables; others (Hermitian, Projector) rotate by their diagonalizing gates."""
    if not tape.shots or all(mp.obs is None or mp.obs.pauli_rep is not None for mp in tape.measurements):
        return measurements_from_samples(tape)  # type: ignore[no-any-return]
    gates: list[Any] = []
    seen: set[int] = set()
    wires: list[Any] = []
    for mp in tape.measurements:
        wires.extend(w for w in mp.wires if w not in wires)
        if mp.obs is not None and hash(mp.obs) not in seen:
            seen.add(hash(mp.obs))
            gates.extend(mp.obs.diagonalizing_gates())
    rotated = tape.copy(operations=list(tape.operations) + gates, measurements=[qml.sample(wires=wires)])

    def from_samples(results: Sequence[Any]) -> Any:
        per_copy = results[0] if tape.shots.has_partitioned_shots else (results[0],)
        out = []
        for samples in per_copy:
            values = [mp.process_samples(samples, wires) for mp in tape.measurements]
            out.append(values[0] if len(values) == 1 else tuple(values))
        return tuple(out) if tape.shots.has_partitioned_shots else out[0]

    return (rotated,), from_samples


@transform  # type: ignore[untyped-decorator]
def _expand_broadcast(tape: QuantumScript) -> tuple[Sequence[QuantumScript], Callable[..., Any]]:
    """Broadcast parameters become one tape per row; the rows still go in one job."""
    if tape.batch_size is None:
        return (tape,), _first
    return broadcast_expand(tape)  # type: ignore[no-any-return]


def _first(results: Sequence[Any]) -> Any:
    return results[0]


@dataclass
class _Template:
    """A circuit structure: the symbolic circuit and where each tape parameter lands."""

    circuit: QuantumCircuit
    measured: QuantumCircuit  # the same with measure_all() (sampler jobs)
    num_parameters: int


@dataclass
class _Plan:
    """One tape, ready to send: its template key, parameter row and what to measure."""

    tape: QuantumScript
    key: tuple[Any, ...]
    row: np.ndarray
    columns: list[int | None]  # per tape operation parameter: its column in the row (None: dropped op)
    observables: list[dict[str, float]] = field(default_factory=list)  # estimator tapes
    finish: list[Callable[[np.ndarray], Any]] = field(default_factory=list)  # evs of this tape -> each result
    spans: list[tuple[int, int]] = field(default_factory=list)  # per measurement: its slice of observables


class QfleetDevice(Device):  # type: ignore[misc]  # pennylane ships no type hints
    """A PennyLane device backed by a qfleet service.

    Args:
        wires: the device's wires (a number or labels); None takes each tape's own.
        shots: default shots (deprecated by PennyLane in favour of ``qml.set_shots``); None is exact.
        backend: a qfleet backend (``"aer"``, ``"lightning"``, ``"wukong72"`` ...).
        url, api_key: the service; default ``QFLEET_URL`` / ``QFLEET_API_KEY``.
        seed: an int (or Generator) that makes shot-based runs reproducible.
        client: an existing :class:`qfleet.Client` (then url and api_key are not used).
        timeout: seconds to wait for each job.
    """

    name = "qfleet"

    def __init__(
        self,
        wires: Any = None,
        shots: Any = None,
        *,
        backend: str = "aer",
        url: str | None = None,
        api_key: str | None = None,
        seed: int | np.random.Generator | None = None,
        client: Client | None = None,
        timeout: float | None = 600.0,
    ) -> None:
        super().__init__(wires=wires, shots=shots)
        self.backend = backend
        self.client = client if client is not None else Client(url, api_key=api_key)
        self.timeout = timeout
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self._templates: dict[tuple[Any, ...], _Template] = {}
        self.job_ids: list[str] = []  # every job this device submitted, oldest first

    # ---- configuration -------------------------------------------------------------------

    def setup_execution_config(
        self, config: ExecutionConfig | None = None, circuit: QuantumScript | None = None
    ) -> ExecutionConfig:
        config = config or ExecutionConfig()
        if config.gradient_method in ("best", None) and self.supports_derivatives(config, circuit):
            config = replace(config, gradient_method="device")
        if config.gradient_method in ("device", "adjoint"):
            # values and gradients from one job: a training step's forward pass asks for both
            config = replace(config, use_device_gradient=True, grad_on_execution=config.grad_on_execution is not False)
        return config

    def preprocess_transforms(self, execution_config: ExecutionConfig | None = None) -> CompilePipeline:
        program = CompilePipeline()
        program.add_transform(validate_device_wires, self.wires, name=self.name)
        program.add_transform(_one_basis)
        program.add_transform(_from_samples)
        program.add_transform(
            decompose, stopping_condition=_stopping_condition, skip_initial_state_prep=False, name=self.name
        )
        program.add_transform(
            validate_measurements,
            analytic_measurements=_analytic_measurement,
            sample_measurements=_sample_measurement,
            name=self.name,
        )
        program.add_transform(_expand_broadcast)
        return program

    def supports_derivatives(
        self, execution_config: ExecutionConfig | None = None, circuit: QuantumScript | None = None
    ) -> bool:
        """The service's gradient (adjoint on exact backends) for exact ``expval`` tapes."""
        if execution_config is None:
            return True
        if execution_config.gradient_method not in ("device", "best", "adjoint"):
            return False
        if execution_config.derivative_order != 1:
            return False
        if circuit is None:
            return True
        if circuit.shots or not all(
            isinstance(m, ExpectationMP) and _analytic_measurement(m) for m in circuit.measurements
        ):
            return False
        num_op_params = len(circuit.get_parameters(trainable_only=False, operations_only=True))
        return all(i < num_op_params for i in circuit.trainable_params)  # not observable coefficients

    # ---- execution ---------------------------------------------------------------------

    def execute(self, circuits: Any, execution_config: ExecutionConfig | None = None) -> Any:
        single = isinstance(circuits, QuantumScript)
        tapes = [circuits] if single else list(circuits)
        results, _ = self._run(tapes, gradient=False)
        return results[0] if single else tuple(results)

    def compute_derivatives(self, circuits: Any, execution_config: ExecutionConfig | None = None) -> Any:
        return self.execute_and_compute_derivatives(circuits, execution_config)[1]

    def execute_and_compute_derivatives(self, circuits: Any, execution_config: ExecutionConfig | None = None) -> Any:
        single = isinstance(circuits, QuantumScript)
        tapes = [circuits] if single else list(circuits)
        for tape in tapes:
            if not self.supports_derivatives(ExecutionConfig(gradient_method="device"), tape):
                raise DeviceError(
                    f"{self.name}: the service's gradient covers exact expval() measurements of gate "
                    "parameters; use diff_method='parameter-shift' for this circuit"
                )
        results, jacobians = self._run(tapes, gradient=True)
        if self.tracker.active:
            self.tracker.update(derivative_batches=1, derivatives=len(tapes))
            self.tracker.record()
        if single:
            return results[0], jacobians[0]
        return tuple(results), tuple(jacobians)

    def _run(self, tapes: list[QuantumScript], gradient: bool) -> tuple[list[Any], list[Any]]:
        plans = [self._plan(tape) for tape in tapes]
        analytic = [i for i, t in enumerate(tapes) if not t.shots]
        sampled = [i for i, t in enumerate(tapes) if t.shots]
        results: list[Any] = [None] * len(tapes)
        jacobians: list[Any] = [None] * len(tapes)
        jobs = 0
        if analytic:
            self._estimate([plans[i] for i in analytic], gradient, results, jacobians, analytic)
            jobs += 1
        if sampled:
            self._sample([plans[i] for i in sampled], results, sampled)
            jobs += 1
        if self.tracker.active:
            self.tracker.update(batches=1, executions=len(tapes), qfleet_jobs=jobs)
            for tape, result in zip(tapes, results):
                self.tracker.update(
                    results=result, shots=tape.shots.total_shots or 0, resources=tape.specs["resources"]
                )
            self.tracker.record()
        return results, jacobians

    def _next_seed(self) -> int | None:
        return None if self._rng is None else int(self._rng.integers(2**62))

    def _estimate(
        self, plans: list[_Plan], gradient: bool, results: list[Any], jacobians: list[Any], where: list[int]
    ) -> None:
        """All exact tapes as one estimator job: one PUB per (template, observables), a row per tape."""
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, plan in enumerate(plans):
            obs_key = tuple(tuple(sorted(o.items())) for o in plan.observables)
            groups.setdefault((plan.key, obs_key), []).append(i)
        pubs: list[Any] = []
        for (key, _), members in groups.items():
            template = self._templates[key]
            observables = plans[members[0]].observables
            if template.num_parameters == 0:
                pubs.append((template.circuit, observables))
            else:
                rows = np.stack([plans[m].row for m in members])
                pubs.append((template.circuit, [[o] for o in observables], rows))
        job = self.client.estimate(pubs, backend=self.backend, gradient="auto" if gradient else None)
        self.job_ids.append(job.id)
        out = job.result(timeout=self.timeout, progress=False)
        for (key, _), members, pub in zip(groups, groups.values(), out):
            template = self._templates[key]
            for row, m in enumerate(members):
                plan = plans[m]
                evs = pub.evs if template.num_parameters == 0 else pub.evs[:, row]
                values = [fin(evs[a:b]) for fin, (a, b) in zip(plan.finish, plan.spans)]
                results[where[m]] = values[0] if len(values) == 1 else tuple(values)
                if gradient:
                    grad = np.zeros((len(evs), 0)) if pub.gradient is None else pub.gradient
                    grad = grad if template.num_parameters == 0 else grad[:, row]
                    jacobians[where[m]] = _jacobian(plan, np.asarray(grad).reshape(len(evs), -1))

    def _sample(self, plans: list[_Plan], results: list[Any], where: list[int]) -> None:
        """All shot-based tapes as one sampler job; each has one sample() of its measured wires."""
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, plan in enumerate(plans):
            if self._templates[plan.key].num_parameters == 0:
                groups[(plan.key, plan.tape.shots.total_shots, i)] = [i]  # no rows to stack: a PUB each
            else:
                groups.setdefault((plan.key, plan.tape.shots.total_shots), []).append(i)
        pubs = []
        for key, members in groups.items():
            template = self._templates[key[0]]
            rows = np.stack([plans[m].row for m in members]) if template.num_parameters else None
            pubs.append((template.measured, rows, key[1]))
        job = self.client.sample(pubs, backend=self.backend, seed=self._next_seed())
        self.job_ids.append(job.id)
        out = job.result(timeout=self.timeout, progress=False)
        for key, members, pub in zip(groups, groups.values(), out):
            bits, _ = (pub.registers or {})["meas"]
            unpacked = np.unpackbits(bits, axis=-1)[..., ::-1]  # column q is qubit q
            if not self._templates[key[0]].num_parameters:
                unpacked = unpacked[None]
            for row, m in enumerate(members):
                plan = plans[m]
                (mp,) = plan.tape.measurements
                qubits = [self._index(plan.tape)[w] for w in mp.wires]
                samples = unpacked[row][:, qubits].astype(np.int64)
                results[where[m]] = _split_shots(plan.tape, samples)

    # ---- tapes to circuits ---------------------------------------------------------------

    def _index(self, tape: QuantumScript) -> dict[Any, int]:
        wires = self.wires if self.wires is not None else tape.wires
        return {w: i for i, w in enumerate(wires)}

    def _plan(self, tape: QuantumScript) -> _Plan:
        index = self._index(tape)
        width = max(len(index), 1)
        structure: list[tuple[Any, ...]] = []
        row: list[float] = []
        columns: list[int | None] = []
        for op in tape.operations:
            if op.name in IGNORED:
                columns.extend([None] * len(op.data))
                continue
            if op.name not in GATES:
                raise DeviceError(f"{self.name} cannot run {op.name}: it was not decomposed")
            structure.append((op.name, tuple(index[w] for w in op.wires)))
            for value in op.data:
                columns.append(len(row))
                row.append(float(qml.math.real(qml.math.toarray(value))))
        key = (width, tuple(structure))
        if key not in self._templates:
            if len(self._templates) >= CIRCUIT_CACHE_SIZE:
                self._templates.pop(next(iter(self._templates)))
            self._templates[key] = _template(width, structure, len(row))
        plan = _Plan(tape, key, np.asarray(row, dtype=np.float64), columns)
        if not tape.shots:
            for mp in tape.measurements:
                start = len(plan.observables)
                plan.finish.append(_add_measurement(mp, plan.observables, index, width))
                plan.spans.append((start, len(plan.observables)))
        return plan


def _template(width: int, structure: list[tuple[Any, ...]], num_parameters: int) -> _Template:
    theta = ParameterVector("θ", num_parameters)  # sorts by index: column j is θ[j]
    qc = QuantumCircuit(width)
    used = 0
    for name, qubits in structure:
        method, count = GATES[name]
        getattr(qc, method)(*theta[used : used + count], *qubits)
        used += count
    measured = qc.copy()
    measured.measure_all()
    return _Template(qc, measured, num_parameters)


def _label(pauli_word: Any, index: dict[Any, int], width: int) -> str:
    chars = ["I"] * width
    for wire, pauli in pauli_word.items():
        chars[width - 1 - index[wire]] = pauli  # Qiskit's order: qubit 0 is the rightmost
    return "".join(chars)


def _sentence(obs: Any) -> Any:
    """An observable as a PauliSentence (a matrix decomposed when it has none)."""
    if obs.pauli_rep is not None:
        return obs.pauli_rep
    return qml.pauli_decompose(qml.matrix(obs, wire_order=obs.wires), wire_order=obs.wires, pauli=True)


def _terms(sentence: Any, index: dict[Any, int], width: int) -> dict[str, float]:
    """A PauliSentence as ``{Pauli label: real coefficient}``."""
    terms: dict[str, float] = {}
    for word, coeff in sentence.items():
        label = _label(word, index, width)
        terms[label] = terms.get(label, 0.0) + float(np.real(qml.math.toarray(coeff)))
    return terms or {"I" * width: 0.0}


def _add_measurement(
    mp: Any, observables: list[dict[str, float]], index: dict[Any, int], width: int
) -> Callable[[np.ndarray], Any]:
    """Append the observables one exact measurement needs; return how its value comes from their evs."""
    if isinstance(mp, ExpectationMP):
        observables.append(_terms(_sentence(mp.obs), index, width))
        return lambda evs: np.float64(evs[0])
    if isinstance(mp, VarianceMP):
        sentence = _sentence(mp.obs)
        observables.append(_terms(sentence, index, width))
        observables.append(_terms(sentence @ sentence, index, width))
        return lambda evs: np.float64(evs[1] - evs[0] ** 2)
    if isinstance(mp, ProbabilityMP):
        wires = list(mp.wires)
        k = len(wires)
        if k > MAX_EXACT_PROBS_WIRES:
            raise DeviceError(f"exact probs() covers at most {MAX_EXACT_PROBS_WIRES} wires; use shots for more")
        for mask in range(2**k):  # bit k-1-j of the mask is wire j: PennyLane's order, first wire highest
            chars = ["I"] * width
            for j, wire in enumerate(wires):
                if mask >> (k - 1 - j) & 1:
                    chars[width - 1 - index[wire]] = "Z"
            observables.append({"".join(chars): 1.0})
        return lambda evs: _walsh(np.asarray(evs, dtype=np.float64))
    raise DeviceError(f"qfleet cannot measure {mp} without shots")


def _walsh(z_strings: np.ndarray) -> np.ndarray:
    """p(b) = 2^-k Σ_m (-1)^{|b ∧ m|} <Z_m>: the probabilities from all Z-string expectations."""
    p = z_strings.copy()
    h = 1
    while h < len(p):
        p = p.reshape(-1, 2, h)
        p = np.stack([p[:, 0] + p[:, 1], p[:, 0] - p[:, 1]], axis=1).reshape(-1)
        h *= 2
    return np.clip(p / len(p), 0.0, 1.0)


def _jacobian(plan: _Plan, grad: np.ndarray) -> Any:
    """The service's d(evs)/d(columns) as PennyLane's jacobian of the tape's trainable parameters."""
    tape = plan.tape
    jac = np.zeros((len(tape.measurements), len(tape.trainable_params)))
    for t, param in enumerate(tape.trainable_params):
        column = plan.columns[param]
        if column is not None:
            jac[:, t] = grad[:, column]
    jac = np.squeeze(jac)
    if jac.ndim == 0:
        return np.array(jac)
    if jac.ndim == 1:
        return tuple(np.array(j) for j in jac)
    return tuple(tuple(np.array(j_) for j_ in j) for j in jac)


def _split_shots(tape: QuantumScript, samples: np.ndarray) -> Any:
    """One sample() result, or one per shot copy for a shot vector."""
    if not tape.shots.has_partitioned_shots:
        return samples
    out = []
    start = 0
    for shots in tape.shots:
        out.append(samples[start : start + shots])
        start += shots
    return tuple(out)
