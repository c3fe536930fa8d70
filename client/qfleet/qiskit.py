"""Qiskit primitives that run on qfleet: ``Estimator`` (a ``BaseEstimatorV2``) and
``Sampler`` (a ``BaseSamplerV2``).

They answer as Qiskit's reference primitives do: the same PUB shapes, the same result
types and the same metadata dicts (``{"version": 2}`` for the job; ``target_precision`` or
``shots`` and ``circuit_metadata`` for each PUB). What qfleet adds (job id, engines, seeds,
calibration) is on ``result.qfleet``, a :class:`Provenance`. One extra beyond Qiskit's API:
``job.partial_result()`` reads the PUB results finished so far while the rest computes.

>>> from qfleet import Client
>>> from qfleet.qiskit import Estimator, Sampler
>>> estimator = Estimator(Client(url, api_key=key), backend="aer")
>>> estimator.run([(circuit, observables, values)]).result()[0].data.evs
>>> sampler = Sampler(Client(url, api_key=key), backend="aer", seed=7)
>>> sampler.run([measured_circuit], shots=1000).result()[0].data.meas.get_counts()
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qiskit.primitives import (
    BaseEstimatorV2,
    BasePrimitiveJob,
    BaseSamplerV2,
    DataBin,
    PrimitiveResult,
    PubResult,
    SamplerPubResult,
)
from qiskit.primitives.containers import BitArray
from qiskit.primitives.containers.estimator_pub import EstimatorPub, EstimatorPubLike
from qiskit.primitives.containers.sampler_pub import SamplerPub, SamplerPubLike
from qiskit.providers import JobStatus

from .client import Client, Job
from .results import JobResult

_STATUS = {
    "queued": JobStatus.QUEUED,
    "running": JobStatus.RUNNING,
    "done": JobStatus.DONE,
    "failed": JobStatus.ERROR,
    "cancelled": JobStatus.CANCELLED,
}


@dataclass(frozen=True)
class Provenance:
    """What qfleet says of a run, kept apart from Qiskit's metadata dicts."""

    job_id: str
    backend: str
    metadata: dict[str, Any] = field(default_factory=dict)  # the job's (tasks, timings, …)
    pubs: list[dict[str, Any]] = field(default_factory=list)  # per PUB (engine, seed, shots, …)


class QfleetPrimitiveJob(BasePrimitiveJob[PrimitiveResult[Any], JobStatus]):
    """A Qiskit primitive job over a qfleet :class:`~qfleet.Job`."""

    def __init__(self, job: Job, backend: str, timeout: float | None, build: Any) -> None:
        super().__init__(job.id)
        self._job = job
        self._backend = backend
        self._timeout = timeout
        self._build = build  # JobResult -> list of Qiskit PUB results
        self._result: PrimitiveResult[Any] | None = None

    def result(self) -> PrimitiveResult[Any]:
        if self._result is None:
            raw = self._job.result(timeout=self._timeout, progress=False)
            result: PrimitiveResult[Any] = PrimitiveResult(self._build(raw), metadata={"version": 2})
            result.qfleet = Provenance(
                self._job.id, self._backend, dict(raw.metadata), [dict(item.metadata) for item in raw]
            )
            self._result = result
        return self._result

    def partial_result(self) -> PrimitiveResult[Any]:
        """qfleet's extra, not part of Qiskit's API: the results of the tasks finished so far, at
        once. Each PUB's ``data`` has ``mask`` (bool, the PUB's shape, True where final) beside
        Qiskit's fields, which hold NaN (evs, stds) or zero bits (sampler) where it is False;
        ``result.qfleet.metadata["progress"]`` is (tasks done, tasks total).

        >>> part = job.partial_result()[0].data
        >>> part.evs[part.mask]
        """
        raw = self._job.partial()
        pubs = []
        for pub_result, item in zip(self._build(raw), raw):
            data = pub_result.data
            mask = np.asarray(item.mask, dtype=bool).reshape(data.shape)
            fields = {name: value for name, value in data.items()}
            pubs.append(type(pub_result)(DataBin(**fields, mask=mask, shape=data.shape), metadata=pub_result.metadata))
        result: PrimitiveResult[Any] = PrimitiveResult(pubs, metadata={"version": 2})
        progress = (raw.progress.tasks_done, raw.progress.tasks_total) if raw.progress else None
        result.qfleet = Provenance(
            self._job.id,
            self._backend,
            {**raw.metadata, "status": raw.status, "progress": progress},
            [dict(item.metadata) for item in raw],
        )
        return result

    def status(self) -> JobStatus:
        return _STATUS[self._job.status().status]

    def done(self) -> bool:
        return self.status() == JobStatus.DONE

    def running(self) -> bool:
        return self.status() == JobStatus.RUNNING

    def cancelled(self) -> bool:
        return self.status() == JobStatus.CANCELLED

    def in_final_state(self) -> bool:
        return self.status() in (JobStatus.DONE, JobStatus.ERROR, JobStatus.CANCELLED)

    def cancel(self) -> None:
        self._job.cancel()


EstimatorJob = QfleetPrimitiveJob  # the name earlier versions exported


def _seed_int(seed: np.random.Generator | int | None) -> int | None:
    """A wire seed: an int as it is, a Generator drawn once (so successive runs differ)."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(2**62))
    return seed


class Estimator(BaseEstimatorV2):
    """Qiskit EstimatorV2 semantics, computed by a qfleet backend.

    ``default_precision`` 0 is exact. On an exact backend (``aer``, ``lightning``) a
    precision above 0 is met as Qiskit's reference and Aer's estimators meet it: exact values
    plus normal noise of that standard deviation, drawn from ``seed`` per PUB; pass ``shots``
    to sample instead. On a device backend precision sets the shots. ``timeout`` is how long
    ``result()`` waits, in seconds. ``cache=False`` computes everything again rather than reuse
    identical earlier work from the service's result cache. ``options`` (a dict of the same
    names) is still accepted.
    """

    def __init__(
        self,
        client: Client,
        backend: str = "aer",
        options: dict[str, Any] | None = None,
        *,
        default_precision: float | None = None,
        seed: np.random.Generator | int | None = None,
        shots: int | None = None,
        timeout: float | None = None,
        cache: bool | None = None,
    ) -> None:
        self.client = client
        self.backend = backend
        given = {
            "default_precision": default_precision,
            "seed": seed,
            "shots": shots,
            "timeout": timeout,
            "cache": cache,
        }
        self.options = {
            "default_precision": 0.0,
            "shots": None,
            "seed": None,
            "timeout": None,
            "cache": True,
            **(options or {}),
            **{k: v for k, v in given.items() if v is not None},
        }
        self._exact: bool | None = None

    @property
    def default_precision(self) -> float:
        return float(self.options["default_precision"])

    @property
    def seed(self) -> np.random.Generator | int | None:
        return self.options["seed"]

    def _backend_exact(self) -> bool:
        if self._exact is None:
            self._exact = bool(self.client.backend(self.backend).exact)
        return self._exact

    def run(self, pubs: Iterable[EstimatorPubLike], *, precision: float | None = None) -> QfleetPrimitiveJob:
        if precision is None:
            precision = self.default_precision
        coerced = [EstimatorPub.coerce(p, precision) for p in pubs]
        shots = self.options["shots"]
        # Exact backends compute exact values; precision becomes noise added here (as the
        # reference primitives do) rather than shots spent on the server.
        add_noise = not shots and any(p.precision > 0 for p in coerced) and self._backend_exact()
        wire = [
            (
                p.circuit,
                p.observables.tolist(),
                p.parameter_values.as_array(p.circuit.parameters),
                0.0 if add_noise else p.precision,
            )
            for p in coerced
        ]
        seed = self.options["seed"]
        job = self.client.estimate(
            wire, backend=self.backend, shots=shots, seed=_seed_int(seed), cache=bool(self.options["cache"])
        )

        def build(raw: JobResult) -> list[PubResult]:
            out = []
            for pub, item in zip(coerced, raw):
                evs = np.asarray(item.evs, dtype=np.float64).reshape(pub.shape)
                stds = np.asarray(item.stds, dtype=np.float64).reshape(pub.shape)
                if add_noise and pub.precision > 0:
                    rng = np.random.default_rng(seed)  # per PUB: identical PUBs, identical values
                    evs = rng.normal(evs, pub.precision)
                    stds = np.full(pub.shape, pub.precision)
                data = DataBin(evs=evs, stds=stds, shape=pub.shape)
                meta = {"target_precision": pub.precision, "circuit_metadata": pub.circuit.metadata}
                out.append(PubResult(data, metadata=meta))
            return out

        return QfleetPrimitiveJob(job, self.backend, self.options["timeout"], build)


class Sampler(BaseSamplerV2):
    """Qiskit SamplerV2 semantics, computed by a qfleet backend: one ``BitArray`` per
    classical register, named as the register.

    ``default_shots`` is used for PUBs without their own; ``seed`` (an int, or a Generator
    drawn once per run) makes runs reproducible; ``timeout`` is how long ``result()`` waits;
    ``cache=False`` samples again rather than reuse an earlier run with the same int seed.
    """

    def __init__(
        self,
        client: Client,
        backend: str = "aer",
        *,
        default_shots: int = 1024,
        seed: np.random.Generator | int | None = None,
        timeout: float | None = None,
        cache: bool = True,
    ) -> None:
        self.client = client
        self.backend = backend
        self._default_shots = default_shots
        self._seed = seed
        self.timeout = timeout
        self.cache = cache

    @property
    def default_shots(self) -> int:
        return self._default_shots

    @property
    def seed(self) -> np.random.Generator | int | None:
        return self._seed

    def run(self, pubs: Iterable[SamplerPubLike], *, shots: int | None = None) -> QfleetPrimitiveJob:
        if shots is None:
            shots = self._default_shots
        coerced = [SamplerPub.coerce(p, shots) for p in pubs]
        if any(len(pub.circuit.cregs) == 0 for pub in coerced):
            warnings.warn(
                "One of your circuits has no output classical registers and so the result "
                "will be empty. Did you mean to add measurement instructions?",
                UserWarning,
                stacklevel=2,
            )
        wire = [(p.circuit, p.parameter_values.as_array(p.circuit.parameters), p.shots) for p in coerced]
        job = self.client.sample(wire, backend=self.backend, seed=_seed_int(self._seed), cache=self.cache)

        def build(raw: JobResult) -> list[SamplerPubResult]:
            out = []
            for pub, item in zip(coerced, raw):
                registers = item.registers or {}
                meas = {}
                for creg in pub.circuit.cregs:
                    bits, num_bits = registers[creg.name]
                    meas[creg.name] = BitArray(bits.reshape(pub.shape + bits.shape[-2:]), num_bits)
                meta = {"shots": pub.shots, "circuit_metadata": pub.circuit.metadata}
                out.append(SamplerPubResult(DataBin(**meas, shape=pub.shape), metadata=meta))
            return out

        return QfleetPrimitiveJob(job, self.backend, self.timeout, build)


__all__ = ["Estimator", "EstimatorJob", "Provenance", "QfleetPrimitiveJob", "Sampler"]
