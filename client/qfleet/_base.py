"""What the sync and async clients share: configuration, request building, answer parsing."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterable, Sequence
from typing import Any

import httpx
import numpy as np

from .errors import QfleetError, error_from_response
from .wire import Circuit, JobOptions, JobRequest, Pub, encode_array

# QPY is written at a pinned version so that a newer client qiskit stays readable by the
# service's qiskit (which reads every version up to its own).
QPY_WIRE_VERSION = 13
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def encode_circuit(circuit: Any) -> Circuit:
    """OpenQASM 3 text passes through; a qiskit ``QuantumCircuit`` goes as pinned QPY."""
    if isinstance(circuit, str):
        return Circuit(format="qasm3", data=circuit)
    if isinstance(circuit, Circuit):
        return circuit
    try:
        from qiskit import QuantumCircuit, qpy
    except ImportError:  # pragma: no cover - depends on the environment
        raise TypeError("circuit must be OpenQASM 3 text (install qiskit to send QuantumCircuit)") from None
    if not isinstance(circuit, QuantumCircuit):
        raise TypeError(f"circuit must be a QuantumCircuit or OpenQASM 3 text, not {type(circuit).__name__}")
    buf = io.BytesIO()
    qpy.dump(circuit, buf, version=max(QPY_WIRE_VERSION, qpy.QPY_COMPATIBILITY_VERSION))
    return Circuit(format="qpy", data=base64.b64encode(buf.getvalue()).decode())


def encode_observables(observables: Any) -> Any:
    """Whatever Qiskit's EstimatorV2 accepts, as nested lists of ``{label: coeff}``."""
    try:
        from qiskit.primitives.containers import ObservablesArray
    except ImportError:
        return observables  # labels, dicts and nested lists of them travel as they are
    return ObservablesArray.coerce(observables).tolist()


def encode_pub(pub: Any, table: CircuitTable | None = None) -> Pub:
    """A tuple ``(circuit, observables[, parameter_values[, precision]])`` or a Qiskit EstimatorPub."""
    if hasattr(pub, "circuit") and hasattr(pub, "observables"):  # qiskit EstimatorPub
        values = pub.parameter_values.as_array(pub.circuit.parameters)
        pub = (pub.circuit, pub.observables.tolist(), values, pub.precision)
    if not isinstance(pub, Sequence) or isinstance(pub, str) or not 2 <= len(pub) <= 4:
        raise TypeError("a PUB is (circuit, observables[, parameter_values[, precision]])")
    circuit, observables, *rest = pub
    values = rest[0] if rest else None
    precision = rest[1] if len(rest) > 1 else None
    encoded_values = None
    if values is not None:
        arr = np.asarray(values, dtype=np.float64)
        # (3, 0) for a circuit without parameters still says "3 parameter sets"
        encoded_values = encode_array(arr) if arr.size or arr.ndim > 1 else None
    return Pub(
        circuit=encode_circuit(circuit) if table is None else table.index(circuit),
        observables=encode_observables(observables) if table is None else table.observables(observables),
        parameter_values=encoded_values,
        precision=precision,
    )


class CircuitTable:
    """The circuits of one request, each sent once: PUBs that share a circuit name it by index."""

    def __init__(self) -> None:
        self.circuits: list[Circuit] = []
        self._by_object: dict[int, tuple[Any, int]] = {}
        self._by_data: dict[tuple[str, str], int] = {}
        self._observables: dict[int, tuple[Any, Any]] = {}

    def index(self, circuit: Any) -> int:
        hit = self._by_object.get(id(circuit))
        if hit is not None and hit[0] is circuit:
            return hit[1]
        encoded = encode_circuit(circuit)
        key = (encoded.format, encoded.data)
        if key not in self._by_data:
            self._by_data[key] = len(self.circuits)
            self.circuits.append(encoded)
        self._by_object[id(circuit)] = (circuit, self._by_data[key])  # the object kept alive: ids stay unique
        return self._by_data[key]

    def observables(self, observables: Any) -> Any:
        """Encoded once per object: a training batch repeats one observables list in every PUB."""
        hit = self._observables.get(id(observables))
        if hit is not None and hit[0] is observables:
            return hit[1]
        encoded = encode_observables(observables)
        self._observables[id(observables)] = (observables, encoded)
        return encoded


def encode_sampler_pub(pub: Any, table: CircuitTable | None = None) -> Pub:
    """A circuit, a tuple ``(circuit[, parameter_values[, shots]])`` or a Qiskit SamplerPub."""
    if hasattr(pub, "circuit") and hasattr(pub, "parameter_values") and hasattr(pub, "shots"):
        pub = (pub.circuit, pub.parameter_values.as_array(pub.circuit.parameters), pub.shots)
    if isinstance(pub, str) or not isinstance(pub, Sequence):
        pub = (pub,)
    if not 1 <= len(pub) <= 3:
        raise TypeError("a sampler PUB is (circuit[, parameter_values[, shots]])")
    circuit, *rest = pub
    values = rest[0] if rest else None
    shots = rest[1] if len(rest) > 1 else None
    encoded_values = None
    if values is not None:
        arr = np.asarray(values, dtype=np.float64)
        encoded_values = encode_array(arr) if arr.size or arr.ndim > 1 else None
    return Pub(
        circuit=encode_circuit(circuit) if table is None else table.index(circuit),
        parameter_values=encoded_values,
        shots=None if shots is None else int(shots),
    )


class BaseClient:
    """Configuration and request building; the sync and async twins add only I/O."""

    def __init__(self, url: str | None = None, api_key: str | None = None) -> None:
        url = url or os.environ.get("QFLEET_URL")
        if not url:
            raise QfleetError("no service URL: pass url= or set QFLEET_URL")
        self.url = url.rstrip("/")
        self.api_key = api_key or os.environ.get("QFLEET_API_KEY")
        if not self.api_key:
            raise QfleetError("no API key: pass api_key= or set QFLEET_API_KEY")

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "User-Agent": "qfleet-python/0.1"}

    @staticmethod
    def _job_request(
        pubs: Iterable[Any],
        backend: str,
        precision: float | None,
        shots: int | None,
        seed: int | None,
        gradient: str | None,
        priority: str = "normal",
        noise: bool | None = None,
        primitive: str = "estimator",
    ) -> dict[str, Any]:
        table = CircuitTable()
        encode = encode_sampler_pub if primitive == "sampler" else encode_pub
        encoded = [encode(p, table) for p in pubs]
        request = JobRequest(
            backend=backend,
            primitive=primitive,  # type: ignore[arg-type]
            circuits=table.circuits,
            pubs=encoded,
            options=JobOptions.model_validate(
                {
                    "precision": precision,
                    "shots": shots,
                    "seed": seed,
                    "gradient": gradient,
                    "priority": priority,
                    "noise": noise,
                }
            ),
        )
        return request.model_dump(mode="json", exclude_none=True)

    @staticmethod
    def _check(response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.is_error:
            raise error_from_response(response.status_code, body, response.headers.get("Retry-After"))
        return body
