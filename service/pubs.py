"""Turning wire PUBs into validated, executable form. Every rule a PUB can break raises
:class:`~service.errors.InvalidRequest` with its own code and a message that says the fix."""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock
from typing import Any

import numpy as np
from qfleet.wire import JobRequest, decode_array
from qfleet.wire import Pub as WirePub
from qiskit import QuantumCircuit, qasm3, qpy
from qiskit.primitives.containers import ObservablesArray

from .backends import DEFAULT_SHOTS, STANDARD_GATES, Backend
from .errors import InvalidRequest
from .gradients import NotDifferentiable, resolve
from .settings import Settings

_ALLOWED_DIRECTIVES = {"barrier", "delay", "global_phase"}
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


def _check_circuit(i: int, circuit: QuantumCircuit, backend: Backend, settings: Settings) -> None:
    if circuit.num_qubits == 0:
        raise _fail(i, "invalid_circuit", "the circuit has no qubits")
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
            raise _fail(
                i,
                "unsupported_instruction",
                f"'{name}' is not allowed in an estimator circuit; remove measurements, resets and control flow",
            )
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
    i: int, pub: WirePub, request: JobRequest, backend: Backend, settings: Settings, cache: CircuitCache
) -> ParsedPub:
    cached = cache.get(pub.circuit.format, pub.circuit.data)
    if cached is None:
        if len(pub.circuit.data) > settings.max_circuit_bytes:
            raise _fail(
                i,
                "circuit_too_large",
                f"circuit data of {len(pub.circuit.data)} bytes is over the {settings.max_circuit_bytes}-byte limit",
            )
        circuit = _load_circuit(i, pub.circuit.format, pub.circuit.data)
        _check_circuit(i, circuit, backend, settings)
        buf = io.BytesIO()
        qpy.dump(circuit, buf)
        cached = (circuit, buf.getvalue())
        cache.put(pub.circuit.format, pub.circuit.data, cached)
    circuit, qpy_bytes = cached
    if circuit.num_qubits > backend.num_qubits:  # the cache is shared by all backends
        _check_circuit(i, circuit, backend, settings)
    observables, obs_shape = _observables(i, pub.observables, circuit.num_qubits)
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
