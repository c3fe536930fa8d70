"""The wire protocol: request and response models shared by the client and the service.

Numeric arrays travel as :class:`Array` (``dtype``, ``shape`` and base64 of the raw
little-endian bytes) or, for small inputs, as plain JSON lists. Circuits travel as
OpenQASM 3 text or base64 QPY. Nothing on the wire is ever pickled.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"done", "failed", "cancelled"})
GradientMethod = Literal["parameter-shift", "adjoint", "auto"]
DType = Literal["float64", "float32", "int64", "int32", "uint8"]
Primitive = Literal["estimator", "sampler"]


class Array(BaseModel):
    """A numeric array: raw little-endian bytes, base64-encoded."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"dtype": "float64", "shape": [2], "data": "AAAAAAAA8D8AAAAAAAAAQA=="}]}
    )

    dtype: DType
    shape: list[int] = Field(description="Array shape; the product must match the data length.")
    data: str = Field(description="base64 of the raw little-endian bytes, C order.")


ArrayLike = Array | list[Any] | float | int


def encode_array(values: Any, dtype: str = "float64") -> Array:
    """Encode an array-like as an :class:`Array` (raw bytes, base64)."""
    arr = np.array(values, dtype=np.dtype(dtype).newbyteorder("<"), order="C")
    return Array(dtype=dtype, shape=list(arr.shape), data=base64.b64encode(arr.tobytes()).decode())  # type: ignore[arg-type]


def decode_array(value: ArrayLike | dict[str, Any] | None, dtype: str = "float64") -> np.ndarray:
    """Decode an :class:`Array`, a dict of the same form, or plain JSON lists.

    Raises ``ValueError`` with a message that says what is wrong.
    """
    if value is None:
        return np.zeros((0,), dtype=dtype)
    if isinstance(value, dict):
        value = Array.model_validate(value)
    if isinstance(value, Array):
        try:
            raw = base64.b64decode(value.data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"array data is not valid base64: {exc}") from None
        src = np.dtype(value.dtype).newbyteorder("<")
        count = int(np.prod(value.shape)) if value.shape else 1
        if any(d < 0 for d in value.shape) or len(raw) != count * src.itemsize:
            raise ValueError(
                f"array data holds {len(raw)} bytes but shape {value.shape} of {value.dtype} "
                f"needs {count * src.itemsize}"
            )
        return np.frombuffer(raw, dtype=src).reshape(tuple(value.shape)).astype(dtype)
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"array is not a rectangular list of numbers: {exc}") from None
    return arr


class Circuit(BaseModel):
    """A circuit as OpenQASM 3 text or base64 QPY."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "format": "qasm3",
                    "data": 'OPENQASM 3.0; include "stdgates.inc"; input float[64] a; '
                    "qubit[2] q; ry(a) q[0]; cx q[0], q[1];",
                }
            ]
        }
    )

    format: Literal["qasm3", "qpy"]
    data: str = Field(description="OpenQASM 3 source, or base64 of a QPY file holding one circuit.")


class Pub(BaseModel):
    """One primitive unified bloc, with Qiskit EstimatorV2 semantics (or SamplerV2's, in a
    sampler job: no observables, and ``shots`` of its own)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "circuit": {
                        "format": "qasm3",
                        "data": 'OPENQASM 3.0; include "stdgates.inc"; input float[64] a; '
                        "qubit[2] q; ry(a) q[0]; cx q[0], q[1];",
                    },
                    "observables": [["ZZ"], ["XI"]],
                    "parameter_values": [[0.1], [0.2], [0.3]],
                }
            ]
        }
    )

    circuit: Circuit | int = Field(
        description="The circuit, or the index of one in the job's `circuits` (send a shared circuit once)."
    )
    observables: Any = Field(
        default=None,
        description="Estimator PUBs: a Pauli label ('ZI'), a {label: coeff} dict, or nested lists of them; "
        "the nesting is the observables' array shape. Sampler PUBs have none.",
    )
    parameter_values: Array | list[Any] | float | None = Field(
        default=None,
        description="Shape (..., P): the last axis follows the circuit's parameters in sorted "
        "(circuit.parameters) order. Broadcast against the observables' shape.",
    )
    precision: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="Target standard error; 0 is exact."
    )
    shots: int | None = Field(default=None, ge=1, description="Sampler PUBs: shots per parameter set.")


class JobOptions(BaseModel):
    """Job options. An unknown key is refused (``option_not_supported``), not ignored."""

    model_config = ConfigDict(extra="forbid")

    precision: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="Default precision for PUBs without one; 0 or absent is exact where the backend allows.",
    )
    shots: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="Shots per circuit; implies shot-based estimates."
    )
    seed: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="Seed for shot sampling, for reproducible runs."
    )
    gradient: GradientMethod | None = Field(default=None, description="Also return d(evs)/d(parameters).")
    noise: bool | None = Field(default=None, description="Device models only: false turns the noise model off.")
    priority: Literal["high", "normal", "low"] = Field(
        default="normal",
        description="Queue lane. Jobs of many tasks run one lane lower so small jobs keep a bounded wait.",
    )


class JobRequest(BaseModel):
    """``POST /v1/jobs``: a list of PUBs for one backend."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "backend": "aer",
                    "pubs": [
                        {
                            "circuit": {
                                "format": "qasm3",
                                "data": 'OPENQASM 3.0; include "stdgates.inc"; input float[64] a; '
                                "qubit[2] q; ry(a) q[0]; cx q[0], q[1];",
                            },
                            "observables": ["ZZ", "XI"],
                            "parameter_values": [[0.1], [0.2]],
                        }
                    ],
                    "options": {},
                }
            ]
        }
    )

    backend: str = Field(default="aer", description="A name from GET /v1/backends.")
    primitive: Primitive = Field(
        default="estimator",
        description="'estimator': expectation values; 'sampler': bit strings per classical register.",
    )
    circuits: list[Circuit] = Field(
        default_factory=list, description="Circuits that PUBs name by index; a circuit shared by many PUBs goes once."
    )
    pubs: list[Pub] = Field(min_length=1)
    options: JobOptions = Field(default_factory=JobOptions)


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable reason, e.g. 'parameter_count_mismatch'.")
    message: str = Field(description="What is wrong and how to fix it.")
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    """Every error answer has this body."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "parameter_count_mismatch",
                        "message": "pubs[0]: parameter_values has 3 values per set but the circuit has 2 parameters",
                        "details": {"pub": 0},
                    }
                }
            ]
        }
    )

    error: ErrorDetail


class Progress(BaseModel):
    tasks_done: int
    tasks_total: int


class JobInfo(BaseModel):
    """A job's status, as ``GET /v1/jobs/{id}`` returns it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "j-6f1c2a9d0b3e4f5a",
                    "status": "running",
                    "backend": "aer",
                    "progress": {"tasks_done": 3, "tasks_total": 8},
                    "created_at": 1764012345.12,
                    "started_at": 1764012345.13,
                    "finished_at": None,
                    "error": None,
                }
            ]
        }
    )

    id: str
    status: JobStatus
    backend: str
    progress: Progress
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: ErrorDetail | None = None


class BitArrayData(BaseModel):
    """One classical register's samples, laid out as Qiskit's ``BitArray``: uint8 of shape
    (*PUB shape, shots, ceil(num_bits / 8)), big-endian bytes (bit 0 is the last byte's lowest)."""

    num_bits: int
    bits: Array


class PubResult(BaseModel):
    evs: Array | None = Field(default=None, description="Estimator PUBs: expectation values.")
    stds: Array | None = Field(default=None, description="Estimator PUBs: their standard errors.")
    registers: dict[str, BitArrayData] | None = Field(
        default=None, description="Sampler PUBs: samples per classical register, by register name."
    )
    gradient: Array | None = Field(default=None, description="Shape evs.shape + (P,), when asked for.")
    metadata: dict[str, Any] = Field(default_factory=dict)


class JobResult(BaseModel):
    """A finished job's results, one per PUB, in request order."""

    id: str
    status: JobStatus
    results: list[PubResult]
    metadata: dict[str, Any] = Field(default_factory=dict)


class BackendInfo(BaseModel):
    """What ``GET /v1/backends`` says of one backend."""

    name: str
    description: str
    num_qubits: int
    exact: bool = Field(description="Whether exact (precision 0) expectation values are available.")
    supports_shots: bool
    max_shots: int
    max_circuits: int
    native_gates: list[str]
    coupling_map: list[list[int]] | None = Field(
        default=None, description="Pairs of coupled qubits; null for all-to-all."
    )
    engines: list[str]
    options: list[str] = Field(description="Job options this backend accepts.")
    gradients: list[str]
    status: Literal["online", "paused", "unavailable"]
    status_reason: str | None = None
    queue_depth: int = Field(description="Tasks waiting, all lanes together.")
    queue_depth_by_priority: dict[str, int] = Field(default_factory=dict)
    estimated_wait_s: float = Field(
        default=0.0, description="Rough wait before a new task starts, from recent task times."
    )
    calibration: dict[str, Any] | None = Field(
        default=None, description="Calibration summary (device models and QPUs)."
    )
    limits: dict[str, int] = Field(default_factory=dict, description="max_qubits, max_shots, max_circuits.")
    workers: int


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    redis: bool
    workers: int
    version: str
