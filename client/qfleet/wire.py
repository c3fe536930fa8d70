"""The wire protocol: request and response models shared by the client and the service.

Numeric arrays travel as :class:`Array` (``dtype``, ``shape`` and base64 of the raw
little-endian bytes) or, for small inputs, as plain JSON lists. Circuits travel as
OpenQASM 3 text or base64 QPY. Nothing on the wire is ever pickled.

The descriptions here are the REST reference: they become ``/openapi.json``, which is
enough to write a client in another language (tests/api/test_openapi_client.py does).
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
Priority = Literal["high", "normal", "low"]

# The service names, on its answer to a submission, the newest QPY version it reads; clients
# then write that version (or their own newest, if older) instead of the pinned one.
QPY_VERSION_HEADER = "Qfleet-QPY-Version"

EXAMPLE_QASM = 'OPENQASM 3.0; include "stdgates.inc"; input float[64] a; qubit[2] q; ry(a) q[0]; cx q[0], q[1];'

PAULI_ORDER = (
    "Pauli labels follow Qiskit's order: the rightmost character acts on qubit 0, so 'XZ' is Z on "
    "qubit 0 and X on qubit 1 (little-endian, as `SparsePauliOp('XZ')`). A label has one character per "
    "qubit of the circuit."
)
PARAMETER_ORDER = (
    "The last axis follows `circuit.parameters`, Qiskit's sorted order: parameters sort by name as plain "
    "strings (by code point: uppercase before lowercase, 'th10' before 'th2'), except that the elements of a "
    "`ParameterVector` (QPY circuits) sort by index ('v[2]' before 'v[10]'). An OpenQASM 3 circuit's "
    "parameters are its `input float[64]` declarations, in that sorted order, not in declaration order."
)
BROADCASTING = (
    "The PUB's shape is the numpy broadcast of the observables' shape and parameter_values.shape[:-1] "
    "(as Qiskit's EstimatorV2): e.g. observables ['ZZ', 'XI'] (shape (2,)) against values of shape (8, P) "
    "do not broadcast; send values[:, None, :] (shape (8, 1, P)) for an (8, 2) result, or observables "
    "[['ZZ'], ['XI']] for a (2, 8) one."
)
ARRAY_ENCODING = (
    "An Array object {dtype, shape, data} with data = base64 of the raw little-endian bytes in C "
    "(row-major) order, or plain JSON: a number, or nested lists of numbers (rectangular)."
)


TAGS_DESCRIPTION = (
    'Labels of your own for finding the job again, e.g. {"run": "exp7", "step": "12"}: at most '
    "16 tags, keys of 1-64 characters from letters, digits and `_.-`, values of at most 256 characters. "
    "`GET /v1/jobs?tag=run:exp7` lists the jobs that carry one."
)


class Array(BaseModel):
    """A numeric array: ``data`` is base64 of the raw little-endian bytes, C (row-major) order.

    The example is the float64 array [1.0, 2.0]. Results always use this form; requests may
    send plain JSON lists instead.
    """

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"dtype": "float64", "shape": [2], "data": "AAAAAAAA8D8AAAAAAAAAQA=="}]}
    )

    dtype: DType = Field(description="Element type; the bytes are little-endian whatever the sender's machine.")
    shape: list[int] = Field(description="Array shape; [] is a scalar. The data holds prod(shape) elements of dtype.")
    data: str = Field(description="base64 (standard alphabet, padded) of the raw little-endian bytes, C order.")


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

    model_config = ConfigDict(json_schema_extra={"examples": [{"format": "qasm3", "data": EXAMPLE_QASM}]})

    format: Literal["qasm3", "qpy"] = Field(
        description="'qasm3': OpenQASM 3 source, parameters declared as `input float[64] name;`. "
        "'qpy': a Qiskit QPY file (any version the service's Qiskit reads; the Python client writes 13)."
    )
    data: str = Field(
        description="OpenQASM 3 source, or base64 of a QPY file holding one circuit. No measurements, resets "
        "or control flow (an estimator circuit); Qiskit users call `remove_final_measurements()` first."
    )


class Pub(BaseModel):
    """One primitive unified bloc, with Qiskit EstimatorV2 semantics (or SamplerV2's, in a
    sampler job: no observables, and ``shots`` of its own)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "circuit": {"format": "qasm3", "data": EXAMPLE_QASM},
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
        description="Estimator PUBs: a Pauli label ('ZI'), a {label: real coeff} dict (a sum of Paulis), or "
        "nested lists of them; the nesting is the observables' array shape. Sampler PUBs have none. " + PAULI_ORDER,
    )
    parameter_values: Array | list[Any] | float | None = Field(
        default=None,
        description="Shape (..., P) with P the circuit's number of parameters; omit for a circuit without "
        "parameters. " + ARRAY_ENCODING + " " + PARAMETER_ORDER + " " + BROADCASTING,
    )
    precision: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="Target standard error of each expectation value; 0 is exact.",
    )
    shots: int | None = Field(default=None, ge=1, description="Sampler PUBs: shots per parameter set.")


class JobOptions(BaseModel):
    """Options for the whole job; a backend lists the ones it accepts in ``BackendInfo.options``.
    An unknown key is refused (``option_not_supported``), not ignored."""

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
    gradient: GradientMethod | None = Field(
        default=None,
        description="Also return d(evs)/d(parameter_values) in PubResultBody.gradient: 'adjoint' (exact "
        "simulation only), 'parameter-shift', or 'auto' (adjoint where possible).",
    )
    noise: bool | None = Field(default=None, description="Device models only: false turns the noise model off.")
    priority: Priority = Field(
        default="normal",
        description="Queue lane. Jobs of many tasks run one lane lower so small jobs keep a bounded wait.",
    )
    cache: bool | None = Field(
        default=None,
        description="false: compute everything again rather than reuse this tenant's identical earlier work "
        "(exact results, or shot-based ones with the same seed) from the result cache.",
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
                            "circuit": {"format": "qasm3", "data": EXAMPLE_QASM},
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
    pubs: list[Pub] = Field(min_length=1, description="Results come back one per PUB, in this order.")
    options: JobOptions = Field(default_factory=JobOptions)
    layout: list[tuple[int, int | None]] | None = Field(
        default=None,
        description="For clients that stack PUBs: one [PUB index, row] per PUB the caller meant, row null "
        "for a PUB sent as it is, else the index along that PUB's first axis. Kept with the job and "
        "returned as the result's `metadata.layout`, so any process that reads the result can split it back.",
    )
    tags: dict[str, str] = Field(
        default_factory=dict,
        description=TAGS_DESCRIPTION,
        json_schema_extra={"examples": [{"run": "exp7", "step": "12"}]},
    )


class ErrorDetail(BaseModel):
    """What went wrong: a stable code, a message that says how to fix it, and structured details."""

    code: str = Field(description="Machine-readable reason, e.g. 'parameter_count_mismatch'.")
    message: str = Field(description="What is wrong and how to fix it.")
    details: dict[str, Any] = Field(
        default_factory=dict, description="Structured context, e.g. the PUB index, a limit, the allowed values."
    )


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
    """How far a job is: the service splits a job into tasks and counts the finished ones."""

    tasks_done: int = Field(description="Tasks finished so far.")
    tasks_total: int = Field(description="Tasks the job was split into.")


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

    id: str = Field(description="The job id, e.g. 'j-6f1c2a9d0b3e4f5a'.")
    status: JobStatus = Field(description="queued, running, then one of the final done, failed, cancelled.")
    backend: str = Field(description="The backend the job runs on.")
    progress: Progress
    created_at: float = Field(description="Submission time, Unix seconds.")
    started_at: float | None = Field(default=None, description="When the first task started, Unix seconds.")
    finished_at: float | None = Field(default=None, description="When the job became final, Unix seconds.")
    error: ErrorDetail | None = Field(default=None, description="Why a failed job failed.")
    tags: dict[str, str] = Field(default_factory=dict, description="The tags given at submission.")


class JobList(BaseModel):
    """A page of ``GET /v1/jobs``: the tenant's jobs, newest first."""

    jobs: list[JobInfo] = Field(
        description="Newest first. A page may hold fewer than `limit` jobs (even none) "
        "while `next_cursor` is set: filters are applied to a bounded stretch of jobs."
    )
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page."
    )


class BitArrayData(BaseModel):
    """One classical register's samples, laid out as Qiskit's ``BitArray``: uint8 of shape
    (*PUB shape, shots, ceil(num_bits / 8)), big-endian bytes (bit 0 is the last byte's lowest)."""

    num_bits: int
    bits: Array


class PubResultBody(BaseModel):
    """One PUB's result; for an estimator PUB ``evs`` and ``stds`` have the PUB's broadcast
    shape (float64 Arrays); for a sampler PUB ``registers`` hold its samples."""

    evs: Array | None = Field(default=None, description="Estimator PUBs: expectation values, the PUB's shape.")
    stds: Array | None = Field(default=None, description="Estimator PUBs: standard errors of evs (zeros when exact).")
    registers: dict[str, BitArrayData] | None = Field(
        default=None, description="Sampler PUBs: samples per classical register, by register name."
    )
    gradient: Array | None = Field(
        default=None,
        description="d(evs)/d(parameter_values), shape evs.shape + (P,), the last axis in parameter order; "
        "present when options.gradient was set.",
    )
    mask: Array | None = Field(
        default=None,
        description="Partial results only (`?partial=true`): uint8 of the PUB's shape (estimator: evs.shape; "
        "sampler: the parameter sets' shape), 1 where the values are final. Elsewhere evs, stds and gradient "
        "hold NaN and sampler bits hold zeros.",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="shape, shots, precision, num_qubits, mode, and what the engine reports."
    )


class JobResultBody(BaseModel):
    """A finished job's results, one per PUB, in request order; or, with ``?partial=true``, the
    slices finished so far (each PUB then has a ``mask``)."""

    id: str = Field(description="The job id.")
    status: JobStatus = Field(description="'done'; a partial result has the job's status now (queued, running).")
    results: list[PubResultBody] = Field(description="One per PUB, in request order.")
    progress: Progress | None = Field(default=None, description="Partial results only: tasks done so far.")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="backend, tasks, cost_units, queued_s and running_s (seconds)."
    )


class SubmittedJob(JobInfo):
    """What ``POST /v1/jobs`` answers: the job's status and, when the request asked to wait
    (``Prefer: wait=N``) and the job finished within it, its result too."""

    result: JobResultBody | None = Field(
        default=None,
        description="The job's result, present only when the submission waited (`Prefer: wait=N`, honoured for "
        "jobs the service expects to finish within N seconds) and the job is done; otherwise fetch it with "
        "`GET /v1/jobs/{id}/result`.",
    )


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
