"""Turning wire PUBs into validated, executable form. Every rule a PUB can break raises
:class:`~qfleet_server.errors.InvalidRequest` with its own code and a message that says the fix.

Circuits are parsed in the bounded parser pool (service/parsing.py), once per distinct
circuit text: a training loop sends the same template every step.
"""

from __future__ import annotations

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
from qiskit.primitives.containers import ObservablesArray

from .backends import DEFAULT_SHOTS, Backend
from .errors import InvalidRequest, RateLimited, Unavailable
from .gradients import NotDifferentiable, resolve
from .parsing import CircuitError, CircuitInfo, Limits, ParserBusy, ParserPool, check_width, precheck
from .settings import Settings

_PAULI_LABEL = re.compile(r"^[IXYZ]+$")
MAX_ARRAY_DIMS = 16


@dataclass
class ParsedPub:
    info: CircuitInfo
    observables: list[dict[str, float]]  # flat, C order of obs_shape
    obs_shape: tuple[int, ...]
    values: np.ndarray  # (M, P) float64
    par_shape: tuple[int, ...]
    shape: tuple[int, ...]  # broadcast shape of the result
    precision: float  # 0 = exact
    shots: int  # 0 = exact
    gradient: str | None = None  # resolved method: "adjoint" | "parameter-shift"
    primitive: str = "estimator"
    # device PUBs: CPU seconds a row took in this tenant's earlier tasks of the same work
    # (planner.cost_key), which prices it where the device model's figure is far too high
    measured_row_s: float | None = None

    @property
    def registers(self) -> list[tuple[str, list[int]]] | None:
        """Sampler PUBs: (name, clbit indices) per classical register."""
        if self.primitive != "sampler":
            return None
        return [(name, list(bits)) for name, bits in self.info.registers]

    @property
    def qpy(self) -> bytes:
        return self.info.qpy

    @property
    def num_qubits(self) -> int:
        return self.info.num_qubits

    @property
    def num_parameters(self) -> int:
        return self.info.num_parameters

    @property
    def size(self) -> int:
        """Expectation values in the result: the broadcast size K×M."""
        return math.prod(self.shape)


class CircuitCache:
    """Parsed circuits by their wire text: a training loop sends the same template each step."""

    def __init__(self, size: int = 256) -> None:
        self._items: OrderedDict[tuple[str, str], CircuitInfo] = OrderedDict()
        self._size = size
        self._lock = Lock()

    def get(self, fmt: str, data: str) -> CircuitInfo | None:
        with self._lock:
            item = self._items.get((fmt, data))
            if item is not None:
                self._items.move_to_end((fmt, data))
            return item

    def put(self, fmt: str, data: str, item: CircuitInfo) -> None:
        with self._lock:
            self._items[(fmt, data)] = item
            while len(self._items) > self._size:
                self._items.popitem(last=False)


class ObservablesCache:
    """Checked observables by their wire text (small ones only), shared across requests: a
    training loop sends the same observables every step. :meth:`memo` gives one request's view."""

    MAX_KEY_CHARS = 4096

    def __init__(self, size: int = 1024) -> None:
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._size = size
        self._lock = Lock()

    def memo(self) -> RequestMemo:
        return RequestMemo(self)

    def get(self, key: Any) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: Any, item: Any) -> None:
        if len(key[1]) > self.MAX_KEY_CHARS:
            return
        with self._lock:
            self._items[key] = item
            while len(self._items) > self._size:
                self._items.popitem(last=False)


class RequestMemo(dict[Any, Any]):
    """One request's memo (what its PUBs share), backed by the shared :class:`ObservablesCache`."""

    def __init__(self, shared: ObservablesCache) -> None:
        super().__init__()
        self.shared = shared

    def get(self, key: Any, default: Any = None) -> Any:
        hit = super().get(key)
        if hit is None:
            hit = self.shared.get(key)
            if hit is not None:
                super().__setitem__(key, hit)
        return default if hit is None else hit

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.shared.put(key, value)


def _fail(i: int, code: str, message: str, **details: Any) -> InvalidRequest:
    return InvalidRequest(f"pubs[{i}]: {message}", code=code, pub=i, **details)


def circuit_info(
    i: int,
    pub: WirePub,
    backend: Backend,
    settings: Settings,
    cache: CircuitCache,
    pool: ParserPool,
    tenant: str,
    request: JobRequest | None = None,
) -> CircuitInfo:
    """The PUB's circuit, parsed (bounded in time and memory) or from the cache, checked for this backend."""
    wire = _wire_circuit(i, pub, request)
    primitive = request.primitive if request is not None else "estimator"
    fmt, data = wire.format, wire.data
    # What the parse checks and keeps depends on the primitive and on the backend's kind
    kind = f"{fmt}|{primitive}|{int(backend.mid_circuit)}|{int(backend.exact)}"
    try:
        info = cache.get(kind, data)
        if info is None:
            if len(data) > settings.max_circuit_bytes:
                raise CircuitError(
                    "circuit_too_large",
                    f"circuit data of {len(data)} bytes is over the {settings.max_circuit_bytes}-byte limit",
                )
            precheck(fmt, data, settings.max_declared_qubits, settings.max_ops)
            limits = Limits(
                backend.num_qubits, settings.max_ops, settings.max_depth, primitive, backend.mid_circuit, backend.exact
            )
            info = pool.parse(fmt, data, limits, tenant)
            cache.put(kind, data, info)
        check_width(info.num_qubits, backend.num_qubits, backend.name)  # the cache serves every backend
    except CircuitError as exc:
        raise _fail(i, exc.code, exc.message, **exc.details) from None
    except ParserBusy as exc:
        if exc.args:  # this tenant's own circuits are being parsed: its turn comes when one is done
            raise RateLimited(
                "this tenant's earlier circuits are still being parsed; send the next when one is answered",
                code="parser_busy",
                retry_after=1.0,
            ) from None
        raise Unavailable(
            "every circuit parser is busy; retry in a second", code="parser_busy", retry_after=1.0
        ) from None
    return info


def _observables(i: int, raw: Any, num_qubits: int) -> tuple[list[dict[str, float]], tuple[int, ...]]:
    try:
        arr = ObservablesArray.coerce(raw)
    except Exception as exc:
        raise _fail(
            i,
            "invalid_observable",
            f"observables are not valid ({exc}); use Pauli labels like 'ZI' or {{label: coeff}}",
        ) from None
    if len(arr.shape) > MAX_ARRAY_DIMS:
        raise _fail(i, "invalid_observable", f"observables have {len(arr.shape)} axes; the limit is {MAX_ARRAY_DIMS}")
    if arr.size == 0:
        raise _fail(i, "empty_pub", "observables are empty; send at least one Pauli label")
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
    shape = getattr(raw, "shape", None)
    if shape is not None and len(shape) > MAX_ARRAY_DIMS + 1:
        raise _fail(
            i, "invalid_parameter_values", f"parameter_values have {len(shape)} axes; the limit is {MAX_ARRAY_DIMS + 1}"
        )
    try:
        values = decode_array(raw) if raw is not None else np.zeros((0,))
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        raise _fail(i, "invalid_parameter_values", str(exc) or type(exc).__name__) from None
    if values.ndim > MAX_ARRAY_DIMS + 1:
        raise _fail(
            i,
            "invalid_parameter_values",
            f"parameter_values have {values.ndim} axes; the limit is {MAX_ARRAY_DIMS + 1}",
        )
    if raw is None:
        if num_parameters:
            raise _fail(
                i,
                "missing_parameter_values",
                f"the circuit has {num_parameters} parameters; send parameter_values of shape (..., {num_parameters})",
                expected=num_parameters,
            )
        return np.zeros((1, 0)), ()
    if num_parameters == 0 and values.size == 0:
        # Qiskit's convention for a parameterless circuit: shape (..., 0), or [] for a single set.
        par_shape: tuple[int, ...] = values.shape[:-1] if values.ndim > 1 else ()
        if math.prod(par_shape) == 0:
            raise _fail(i, "empty_pub", f"parameter_values of shape {values.shape} hold no parameter sets")
        return np.zeros((math.prod(par_shape), 0)), par_shape
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
    if values.size == 0:
        raise _fail(i, "empty_pub", f"parameter_values of shape {values.shape} hold no parameter sets")
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
    pool: ParserPool,
    tenant: str = "",
    memo: dict[Any, Any] | None = None,
) -> ParsedPub:
    """``memo`` (one dict per request) keeps what PUBs sharing observables share."""
    info = circuit_info(i, pub, backend, settings, cache, pool, tenant, request)
    if request.primitive == "sampler":
        return _sampler_pub(i, pub, request, backend, info)
    if pub.observables is None:
        raise _fail(i, "invalid_observable", "an estimator PUB needs observables (or send primitive 'sampler')")
    observables, obs_shape = _memo_observables(i, pub.observables, info, {} if memo is None else memo)
    values, par_shape = _values(i, pub.parameter_values, info.num_parameters)
    try:
        shape = tuple(np.broadcast_shapes(obs_shape, par_shape))
    except ValueError:
        hint = ""
        if len(obs_shape) == 1 and len(par_shape) == 1:
            hint = (
                "; for every observable on every parameter set, give the observables shape "
                f"({obs_shape[0]}, 1) (e.g. [[o] for o in observables]) or the values shape "
                f"({par_shape[0]}, 1, P) (P[:, None, :])"
            )
        raise _fail(
            i,
            "shape_mismatch",
            f"observables shape {obs_shape} and parameter_values shape {par_shape} do not broadcast "
            f"(numpy rules, as in Qiskit's EstimatorV2){hint}",
            observables_shape=list(obs_shape),
            parameter_values_shape=list(par_shape),
        ) from None
    options = request.options
    precision = pub.precision if pub.precision is not None else (options.precision or 0.0)
    shots = _shots(i, options.shots, precision, backend)
    gradient = None
    if options.gradient:
        if options.gradient not in backend.gradients:
            raise _fail(
                i, "gradient_not_supported", f"backend '{backend.name}' offers gradients {list(backend.gradients)}"
            )
        try:
            gradient = resolve(options.gradient, shots, info.shift_error, info.adjoint_error)
        except NotDifferentiable as exc:
            raise _fail(i, "gradient_not_supported", str(exc)) from None
    return ParsedPub(
        gradient=gradient,
        info=info,
        observables=observables,
        obs_shape=obs_shape,
        values=values,
        par_shape=par_shape,
        shape=shape,
        precision=precision,
        shots=shots,
    )


def _shots(i: int, asked: int | None, precision: float, backend: Backend) -> int:
    """Shots per circuit: as asked, else enough for the precision, else a device's default (0: exact)."""
    if (asked or precision > 0) and not backend.supports_shots:
        raise _fail(i, "option_not_supported", f"backend '{backend.name}' is exact only; drop precision and shots")
    shots = asked or 0
    if not shots and precision > 0:
        finest = 1.0 / math.sqrt(backend.max_shots)
        if precision < finest:  # compared before squaring: a tiny precision must not overflow or divide by 0
            raise _fail(
                i,
                "too_many_shots",
                f"precision {precision:g} needs more than the {backend.max_shots} shots backend '{backend.name}' "
                f"allows; ask for precision >= {finest:.3g}",
            )
        shots = math.ceil(1.0 / precision**2)
    if not shots and backend.is_device:
        shots = DEFAULT_SHOTS
    if shots > backend.max_shots:
        raise _fail(i, "too_many_shots", f"{shots} shots asked; backend '{backend.name}' allows {backend.max_shots}")
    return shots


DEFAULT_SAMPLER_SHOTS = 1024  # Qiskit's SamplerV2 default


def _wire_circuit(i: int, pub: WirePub, request: JobRequest | None) -> WireCircuit:
    """The PUB's circuit: its own, or one of the job's ``circuits`` by index."""
    if not isinstance(pub.circuit, int):
        return pub.circuit
    count = 0 if request is None else len(request.circuits)
    if request is None or not 0 <= pub.circuit < count:
        raise _fail(i, "invalid_circuit", f"circuit index {pub.circuit} is not in the job's circuits (it has {count})")
    return request.circuits[pub.circuit]


def reduce_terms(terms: dict[str, float], kept: tuple[int, ...], width: int) -> dict[str, float]:
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
    i: int, raw: Any, info: CircuitInfo, memo: dict[Any, Any]
) -> tuple[list[dict[str, float]], tuple[int, ...]]:
    """Observables checked against the circuit the client wrote, then moved onto the qubits kept."""
    key = ("observables", repr(raw), info.kept, info.width)  # repr: cheap, exact for JSON values
    hit = memo.get(key)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    if info.kept is None:
        result = _observables(i, raw, info.num_qubits)
    else:
        full, shape = _observables(i, raw, info.width)
        result = ([reduce_terms(o, info.kept, info.width) for o in full], shape)
    memo[key] = result
    return result


def _sampler_pub(i: int, pub: WirePub, request: JobRequest, backend: Backend, info: CircuitInfo) -> ParsedPub:
    if pub.observables is not None:
        raise _fail(i, "invalid_pub", "a sampler PUB has no observables; send them in an estimator job")
    if not backend.supports_shots:
        raise _fail(i, "option_not_supported", f"backend '{backend.name}' is exact only and cannot sample")
    values, par_shape = _values(i, pub.parameter_values, info.num_parameters)
    shots = pub.shots or request.options.shots or DEFAULT_SAMPLER_SHOTS
    if shots > backend.max_shots:
        raise _fail(i, "too_many_shots", f"{shots} shots asked; backend '{backend.name}' allows {backend.max_shots}")
    return ParsedPub(
        info=info,
        observables=[],
        obs_shape=(),
        values=values,
        par_shape=par_shape,
        shape=par_shape,
        precision=0.0,
        shots=shots,
        primitive="sampler",
    )
