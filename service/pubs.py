"""Turning wire PUBs into validated, executable form. Every rule a PUB can break raises
:class:`~service.errors.InvalidRequest` with its own code and a message that says the fix."""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock
from typing import Any

import numpy as np
from qfleet.wire import Circuit as WireCircuit
from qfleet.wire import JobRequest, decode_array
from qfleet.wire import Pub as WirePub
from qiskit import QuantumCircuit, qasm3, qpy
from qiskit.primitives.containers import ObservablesArray

from .backends import DEFAULT_SHOTS, MID_CIRCUIT_BACKENDS, STANDARD_GATES, Backend
from .errors import InvalidRequest
from .gradients import NotDifferentiable, resolve
from .settings import Settings

_ALLOWED_DIRECTIVES = {"barrier", "delay", "global_phase"}
DEFAULT_SAMPLER_SHOTS = 1024  # Qiskit's SamplerV2 default
_STANDARD = set(STANDARD_GATES)
_PAULI_LABEL = re.compile(r"^[IXYZ]+$")


@dataclass
class ParsedPub:
    circuit: QuantumCircuit
    qpy: bytes
    observables: list[dict[str, float]]  # flat, C order of obs_shape
    obs_shape: tuple[int, ...]
    values: np.ndarray  # (M, P) float64
    par_shape: tuple[int, ...]
    shape: tuple[int, ...]  # broadcast shape of the result
    precision: float  # 0 = exact
    shots: int  # 0 = exact
    gradient: str | None = None  # resolved method: "adjoint" | "parameter-shift"
    primitive: str = "estimator"
    # sampler PUBs: (register name, clbit indices, least significant first) per classical register
    registers: list[tuple[str, list[int]]] | None = None

    @property
    def num_qubits(self) -> int:
        return int(self.circuit.num_qubits)

    @property
    def num_parameters(self) -> int:
        return int(self.circuit.num_parameters)


class CircuitCache:
    """Parsed circuits by their wire text: a training loop sends the same template each step."""

    def __init__(self, size: int = 256) -> None:
        self._items: OrderedDict[tuple[str, str], tuple[QuantumCircuit, bytes]] = OrderedDict()
        self._size = size
        self._lock = Lock()

    def get(self, fmt: str, data: str) -> tuple[QuantumCircuit, bytes] | None:
        with self._lock:
            item = self._items.get((fmt, data))
            if item is not None:
                self._items.move_to_end((fmt, data))
            return item

    def put(self, fmt: str, data: str, item: tuple[QuantumCircuit, bytes]) -> None:
        with self._lock:
            self._items[(fmt, data)] = item
            while len(self._items) > self._size:
                self._items.popitem(last=False)


def _fail(i: int, code: str, message: str, **details: Any) -> InvalidRequest:
    return InvalidRequest(f"pubs[{i}]: {message}", code=code, pub=i, **details)


def _load_circuit(i: int, fmt: str, data: str) -> QuantumCircuit:
    if fmt == "qasm3":
        try:
            return qasm3.loads(data)
        except qasm3.QASM3ImporterError as exc:
            text = str(exc)
            if "is not defined" in text and "gate" in text:
                raise _fail(
                    i, "unknown_gate", f"{text.strip(chr(39))} Use gates from stdgates.inc or define them."
                ) from None
            if "import" in text:
                raise _fail(i, "unsupported_include", 'only include "stdgates.inc" is supported') from None
            raise _fail(i, "invalid_circuit", f"OpenQASM 3 could not be converted: {text}") from None
        except Exception as exc:  # the parser raises its own types with terse messages
            raise _fail(
                i, "invalid_circuit", f"OpenQASM 3 did not parse ({type(exc).__name__}: {exc}); check the syntax"
            ) from None
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _fail(i, "invalid_circuit", "QPY data is not valid base64") from None
    try:
        circuits = qpy.load(io.BytesIO(raw))
    except Exception as exc:  # QPY raises many kinds on corrupt input
        raise _fail(i, "invalid_circuit", f"QPY did not load ({type(exc).__name__}: {exc})") from None
    if len(circuits) != 1 or not isinstance(circuits[0], QuantumCircuit):
        raise _fail(i, "invalid_circuit", "QPY data must hold exactly one circuit")
    return circuits[0]


def _check_circuit(
    i: int, circuit: QuantumCircuit, backend: Backend, settings: Settings, primitive: str = "estimator"
) -> None:
    if circuit.num_qubits == 0:
        raise _fail(i, "invalid_circuit", "the circuit has no qubits")
    _check_instructions(i, circuit, backend, primitive)
    if circuit.num_qubits > backend.num_qubits:
        raise _fail(
            i,
            "too_many_qubits",
            f"the circuit has {circuit.num_qubits} qubits but backend '{backend.name}' has {backend.num_qubits}",
            num_qubits=circuit.num_qubits,
            limit=backend.num_qubits,
        )
    if circuit.size() > settings.max_ops:
        raise _fail(
            i, "circuit_too_large", f"the circuit has {circuit.size()} operations; the limit is {settings.max_ops}"
        )
    if circuit.depth() > settings.max_depth:
        raise _fail(
            i, "circuit_too_large", f"the circuit has depth {circuit.depth()}; the limit is {settings.max_depth}"
        )
    for inst in circuit.data:
        op = inst.operation
        name = op.name
        if name in ("measure", "reset") or getattr(op, "blocks", None):
            continue  # checked by _check_instructions
        if name in _STANDARD or name in _ALLOWED_DIRECTIVES:
            continue
        if getattr(op, "definition", None) is None:
            raise _fail(i, "unknown_gate", f"gate '{name}' is neither a standard gate nor has a definition")


def _observables(i: int, raw: Any, num_qubits: int) -> tuple[list[dict[str, float]], tuple[int, ...]]:
    try:
        arr = ObservablesArray.coerce(raw)
    except Exception as exc:
        raise _fail(
            i,
            "invalid_observable",
            f"observables are not valid ({exc}); use Pauli labels like 'ZI' or {{label: coeff}}",
        ) from None
    flat: list[dict[str, float]] = []
    for obs in np.ravel(np.asarray(arr.tolist(), dtype=object)) if arr.shape else [arr.tolist()]:
        terms: dict[str, float] = {}
        for label, coeff in obs.items():
            if not _PAULI_LABEL.match(label):
                raise _fail(i, "invalid_observable", f"'{label}' is not a Pauli label of I, X, Y, Z")
            value = complex(coeff)
            if abs(value.imag) > 1e-12 or not math.isfinite(value.real):
                raise _fail(i, "invalid_observable", f"coefficient {coeff} of '{label}' must be a finite real number")
            if len(label) > num_qubits:
                raise _fail(
                    i,
                    "observable_too_wide",
                    f"observable '{label}' acts on {len(label)} qubits but the circuit has {num_qubits}",
                )
            if len(label) < num_qubits:
                raise _fail(
                    i,
                    "observable_qubit_mismatch",
                    f"observable '{label}' acts on {len(label)} qubits; it must act on all {num_qubits} of the circuit",
                )
            terms[label] = terms.get(label, 0.0) + value.real
        flat.append(terms)
    return flat, tuple(arr.shape)


def _values(i: int, raw: Any, num_parameters: int) -> tuple[np.ndarray, tuple[int, ...]]:
    try:
        values = decode_array(raw) if raw is not None else np.zeros((0,))
    except ValueError as exc:
        raise _fail(i, "invalid_parameter_values", str(exc)) from None
    if raw is None or (values.size == 0 and num_parameters == 0):
        par_shape: tuple[int, ...] = values.shape[:-1] if values.ndim > 1 else ()
        return np.zeros((int(np.prod(par_shape)) if par_shape else 1, 0)), par_shape
    if values.ndim == 0:
        values = values.reshape(1)
    if values.shape[-1] != num_parameters:
        raise _fail(
            i,
            "parameter_count_mismatch",
            f"parameter_values has {values.shape[-1]} values per set but the circuit has {num_parameters} "
            "parameters; the last axis must follow circuit.parameters",
            expected=num_parameters,
            got=int(values.shape[-1]),
        )
    if not np.all(np.isfinite(values)):
        raise _fail(i, "non_finite_parameters", "parameter_values contain NaN or infinity")
    par_shape = tuple(values.shape[:-1])
    return np.ascontiguousarray(values.reshape(-1, num_parameters)), par_shape


def parse_pub(
    i: int,
    pub: WirePub,
    request: JobRequest,
    backend: Backend,
    settings: Settings,
    cache: CircuitCache,
    memo: dict[Any, Any] | None = None,
) -> ParsedPub:
    """``memo`` (one dict per request) keeps what PUBs sharing a circuit or observables share."""
    memo = {} if memo is None else memo
    wire_circuit = _wire_circuit(i, pub, request)
    primitive = request.primitive
    # What is checked depends on the primitive and the backend: both are part of the key.
    kind = f"{wire_circuit.format}|{primitive}|{backend.name}"
    cached = memo.get(("circuit", kind, id(wire_circuit))) or cache.get(kind, wire_circuit.data)
    if cached is None:
        if len(wire_circuit.data) > settings.max_circuit_bytes:
            raise _fail(
                i,
                "circuit_too_large",
                f"circuit data of {len(wire_circuit.data)} bytes is over the {settings.max_circuit_bytes}-byte limit",
            )
        circuit = _load_circuit(i, wire_circuit.format, wire_circuit.data)
        # A circuit laid out on a big device but using a few qubits runs on those few (as Aer
        # does): simulators always drop idle qubits; devices only when it would not fit.
        if backend.exact or circuit.num_qubits > backend.num_qubits:
            circuit = drop_idle_qubits(circuit)
        _check_circuit(i, circuit, backend, settings, primitive)
        buf = io.BytesIO()
        qpy.dump(circuit, buf)
        cached = (circuit, buf.getvalue())
        cache.put(kind, wire_circuit.data, cached)
    memo[("circuit", kind, id(wire_circuit))] = cached
    circuit, qpy_bytes = cached
    if circuit.num_qubits > backend.num_qubits:  # the cache is shared by all tenants
        _check_circuit(i, circuit, backend, settings, primitive)
    if primitive == "sampler":
        return _sampler_pub(i, pub, request, backend, circuit, qpy_bytes)
    if pub.observables is None:
        raise _fail(i, "invalid_observable", "an estimator PUB needs observables (or send primitive 'sampler')")
    observables, obs_shape = _memo_observables(i, pub.observables, circuit, memo)
    values, par_shape = _values(i, pub.parameter_values, circuit.num_parameters)
    try:
        shape = tuple(np.broadcast_shapes(obs_shape, par_shape))
    except ValueError:
        raise _fail(
            i,
            "shape_mismatch",
            f"observables shape {obs_shape} and parameter_values shape {par_shape} do not broadcast "
            "(numpy rules, as in Qiskit's EstimatorV2)",
            observables_shape=list(obs_shape),
            parameter_values_shape=list(par_shape),
        ) from None
    options = request.options
    precision = pub.precision if pub.precision is not None else (options.precision or 0.0)
    shots = 0
    if options.shots:
        shots = options.shots
    elif precision > 0:
        shots = math.ceil(1.0 / precision**2)
    if not shots and backend.is_device:
        shots = DEFAULT_SHOTS
    if shots:
        if not backend.supports_shots:
            raise _fail(i, "option_not_supported", f"backend '{backend.name}' is exact only; drop precision and shots")
        if shots > backend.max_shots:
            raise _fail(
                i, "too_many_shots", f"{shots} shots asked; backend '{backend.name}' allows {backend.max_shots}"
            )
    gradient = None
    if options.gradient:
        if options.gradient not in backend.gradients:
            raise _fail(
                i, "gradient_not_supported", f"backend '{backend.name}' offers gradients {list(backend.gradients)}"
            )
        try:
            gradient = resolve(options.gradient, circuit, shots)
        except NotDifferentiable as exc:
            raise _fail(i, "gradient_not_supported", str(exc)) from None
    return ParsedPub(
        gradient=gradient,
        circuit=circuit,
        qpy=qpy_bytes,
        observables=observables,
        obs_shape=obs_shape,
        values=values,
        par_shape=par_shape,
        shape=shape,
        precision=precision,
        shots=shots,
    )


def _wire_circuit(i: int, pub: WirePub, request: JobRequest) -> WireCircuit:
    if isinstance(pub.circuit, int):
        if not 0 <= pub.circuit < len(request.circuits):
            raise _fail(
                i,
                "invalid_circuit",
                f"circuit index {pub.circuit} is not in the job's circuits (it has {len(request.circuits)})",
            )
        return request.circuits[pub.circuit]
    return pub.circuit


_NOT_USE = {"barrier", "delay"}


def drop_idle_qubits(circuit: QuantumCircuit) -> QuantumCircuit:
    """The circuit on its used qubits, in their order; clbits and registers as they were.
    Observables written for the full width are reduced with :func:`reduce_terms`.
    """
    used: set[int] = set()
    for inst in circuit.data:
        if inst.operation.name not in _NOT_USE:
            used.update(circuit.find_bit(q).index for q in inst.qubits)
    if len(used) == circuit.num_qubits or any(getattr(inst.operation, "blocks", None) for inst in circuit.data):
        return circuit  # nothing idle, or control flow whose blocks name the original wires
    order = sorted(used) or [0]
    new_index = {circuit.qubits[q]: j for j, q in enumerate(order)}
    reduced = QuantumCircuit(len(order), name=circuit.name, global_phase=circuit.global_phase)
    reduced.metadata = circuit.metadata
    reduced.add_bits(circuit.clbits)
    for creg in circuit.cregs:
        reduced.add_register(creg)
    for inst in circuit.data:
        qubits = [reduced.qubits[new_index[q]] for q in inst.qubits if q in new_index]
        if inst.operation.name in _NOT_USE:
            if qubits and inst.operation.name == "barrier":
                reduced.barrier(*qubits)
            continue
        reduced.append(inst.operation, qubits, inst.clbits, copy=False)
    reduced.metadata = {**(circuit.metadata or {}), _KEPT: order, _WIDTH: circuit.num_qubits}
    return reduced


_KEPT, _WIDTH = "qfleet_kept_qubits", "qfleet_width"


def reduce_terms(terms: dict[str, float], kept: list[int], width: int) -> dict[str, float]:
    """Pauli terms of ``width`` qubits on the kept ones. A dropped qubit stays in |0>: I and Z
    there give a factor 1, X and Y a factor 0 (the term vanishes)."""
    out: dict[str, float] = {}
    keep = set(kept)
    for label, coeff in terms.items():
        if any(label[width - 1 - q] in "XY" for q in range(width) if q not in keep):
            continue
        reduced = "".join(label[width - 1 - q] for q in reversed(kept))
        out[reduced] = out.get(reduced, 0.0) + coeff
    return out or {"I" * len(kept): 0.0}


def _memo_observables(
    i: int, raw: Any, circuit: QuantumCircuit, memo: dict[Any, Any]
) -> tuple[list[dict[str, float]], tuple[int, ...]]:
    meta = circuit.metadata or {}
    key = ("observables", json.dumps(raw, sort_keys=True, default=str), id(circuit))
    hit = memo.get(key)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    if _KEPT not in meta:
        result = _observables(i, raw, circuit.num_qubits)
    else:
        full, shape = _observables(i, raw, meta[_WIDTH])
        result = ([reduce_terms(o, meta[_KEPT], meta[_WIDTH]) for o in full], shape)
    memo[key] = result
    return result


def _check_instructions(i: int, circuit: QuantumCircuit, backend: Backend, primitive: str) -> None:
    """Measurements, resets and classical control: what each primitive and backend can run."""
    measured: set[int] = set()
    for inst in circuit.data:
        op = inst.operation
        name = op.name
        qubits = [circuit.find_bit(q).index for q in inst.qubits]
        if getattr(op, "blocks", None):
            if not (primitive == "sampler" and backend.mid_circuit):
                raise _fail(
                    i,
                    "unsupported_instruction",
                    f"control flow ('{name}') runs in sampler jobs on backends {list(MID_CIRCUIT_BACKENDS)}",
                )
        elif name == "measure":
            if primitive != "sampler":
                raise _fail(
                    i,
                    "unsupported_instruction",
                    "'measure' is not allowed in an estimator circuit; remove measurements "
                    "(or send the circuit to the sampler: primitive 'sampler')",
                )
        elif name == "reset":
            if not backend.mid_circuit:
                raise _fail(
                    i,
                    "unsupported_instruction",
                    f"'reset' does not run on backend '{backend.name}'; it runs on {list(MID_CIRCUIT_BACKENDS)}",
                )
        elif name not in _NOT_USE and measured.intersection(qubits) and not backend.mid_circuit:
            raise _fail(
                i,
                "unsupported_instruction",
                f"'{name}' acts on a measured qubit: backend '{backend.name}' runs final measurements only; "
                f"mid-circuit measurement runs on {list(MID_CIRCUIT_BACKENDS)}",
            )
        if name == "measure":
            measured.update(qubits)


def _sampler_pub(
    i: int, pub: WirePub, request: JobRequest, backend: Backend, circuit: QuantumCircuit, qpy_bytes: bytes
) -> ParsedPub:
    if pub.observables is not None:
        raise _fail(i, "invalid_pub", "a sampler PUB has no observables; send them in an estimator job")
    if not backend.supports_shots or backend.name in ("origin", "ibm"):
        raise _fail(
            i,
            "option_not_supported",
            f"backend '{backend.name}' has no sampler yet; sample on 'aer' or 'wukong72'",
        )
    values, par_shape = _values(i, pub.parameter_values, circuit.num_parameters)
    shots = pub.shots or request.options.shots or DEFAULT_SAMPLER_SHOTS
    if shots > backend.max_shots:
        raise _fail(i, "too_many_shots", f"{shots} shots asked; backend '{backend.name}' allows {backend.max_shots}")
    registers = [(creg.name, [circuit.find_bit(b).index for b in creg]) for creg in circuit.cregs]
    return ParsedPub(
        circuit=circuit,
        qpy=qpy_bytes,
        observables=[],
        obs_shape=(),
        values=values,
        par_shape=par_shape,
        shape=par_shape,
        precision=0.0,
        shots=shots,
        primitive="sampler",
        registers=registers,
    )
