"""``qfleet.qiskit.Estimator``: a Qiskit ``BaseEstimatorV2`` that runs on qfleet.

>>> from qfleet import Client
>>> from qfleet.qiskit import Estimator
>>> estimator = Estimator(Client(url, api_key=key), backend="aer")
>>> estimator.run([(circuit, observables, values)]).result()[0].data.evs
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from qiskit.primitives import BaseEstimatorV2, BasePrimitiveJob, DataBin, PrimitiveResult, PubResult
from qiskit.primitives.containers.estimator_pub import EstimatorPub, EstimatorPubLike
from qiskit.providers import JobStatus

from .client import Client, Job

_STATUS = {
    "queued": JobStatus.QUEUED,
    "running": JobStatus.RUNNING,
    "done": JobStatus.DONE,
    "failed": JobStatus.ERROR,
    "cancelled": JobStatus.CANCELLED,
}


class EstimatorJob(BasePrimitiveJob[PrimitiveResult[PubResult], JobStatus]):
    """A Qiskit primitive job over a qfleet :class:`~qfleet.Job`."""

    def __init__(self, job: Job, pubs: list[EstimatorPub], timeout: float | None) -> None:
        super().__init__(job.id)
        self._job = job
        self._pubs = pubs
        self._timeout = timeout

    def result(self) -> PrimitiveResult[PubResult]:
        result = self._job.result(timeout=self._timeout)
        pub_results = []
        for pub, item in zip(self._pubs, result):
            data = DataBin(evs=item.evs, stds=item.stds, shape=pub.shape)
            pub_results.append(PubResult(data, metadata={"target_precision": pub.precision, **item.metadata}))
        return PrimitiveResult(pub_results, metadata={"version": 2, "qfleet_job_id": self._job.id, **result.metadata})

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


class Estimator(BaseEstimatorV2):
    """Qiskit EstimatorV2 semantics, computed by a qfleet backend.

    ``options`` may hold ``default_precision`` (0 = exact), ``shots``, ``seed`` and
    ``timeout`` (seconds that ``result()`` waits).
    """

    def __init__(self, client: Client, backend: str = "aer", options: dict[str, Any] | None = None) -> None:
        self.client = client
        self.backend = backend
        self.options = {"default_precision": 0.0, "shots": None, "seed": None, "timeout": None, **(options or {})}

    def run(self, pubs: Iterable[EstimatorPubLike], *, precision: float | None = None) -> EstimatorJob:
        if precision is None:
            precision = self.options["default_precision"]
        coerced = [EstimatorPub.coerce(p, precision) for p in pubs]
        wire = [
            (
                p.circuit,
                p.observables.tolist(),
                p.parameter_values.as_array(p.circuit.parameters) if p.circuit.num_parameters else None,
                p.precision,
            )
            for p in coerced
        ]
        job = self.client.estimate(wire, backend=self.backend, shots=self.options["shots"], seed=self.options["seed"])
        return EstimatorJob(job, coerced, self.options["timeout"])


__all__ = ["Estimator", "EstimatorJob"]
