"""Results as numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .wire import JobResultBody, Progress, decode_array


@dataclass(frozen=True)
class PubResult:
    """One PUB's result: ``evs`` and ``stds`` have the PUB's broadcast shape.

    A partial result (:meth:`qfleet.Job.partial`) has ``mask``: a bool array of that shape
    (a sampler PUB: its parameter sets' shape), True where the values are final; evs, stds
    and gradient hold NaN elsewhere (sampler bits: zeros). A complete result has no mask.
    """

    evs: np.ndarray
    stds: np.ndarray
    gradient: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # sampler PUBs: register name -> (uint8 array (*shape, shots, bytes), number of bits)
    registers: dict[str, tuple[np.ndarray, int]] | None = None
    mask: np.ndarray | None = None


class JobResult(list[PubResult]):
    """The results of a job, one :class:`PubResult` per PUB in request order.

    ``status`` is ``"done"`` for a complete result; a partial one has the job's status when it
    was read and ``progress`` (tasks done out of tasks total)."""

    def __init__(
        self,
        job_id: str,
        items: list[PubResult],
        metadata: dict[str, Any],
        status: str = "done",
        progress: Progress | None = None,
    ) -> None:
        super().__init__(items)
        self.job_id = job_id
        self.metadata = metadata
        self.status = status
        self.progress = progress

    @property
    def complete(self) -> bool:
        """Whether every value is final (a partial result read after the last task also is)."""
        return all(r.mask is None or bool(r.mask.all()) for r in self)

    @classmethod
    def from_wire(cls, payload: JobResultBody) -> JobResult:
        items = [
            PubResult(
                evs=decode_array(r.evs),
                stds=decode_array(r.stds),
                gradient=None if r.gradient is None else decode_array(r.gradient),
                metadata=r.metadata,
                registers=None
                if r.registers is None
                else {k: (decode_array(v.bits, "uint8"), v.num_bits) for k, v in r.registers.items()},
                mask=None if r.mask is None else decode_array(r.mask, "uint8").astype(bool),
            )
            for r in payload.results
        ]
        return cls(payload.id, items, payload.metadata, payload.status, payload.progress)


def ungroup(result: JobResult, layout: list[tuple[int, int | None]] | None) -> JobResult:
    """The results of PUBs that travelled stacked (``_base.group_pubs``), one per PUB sent."""
    if layout is None:
        return result
    items = []
    for w, row in layout:
        r = result[w]
        if row is None:
            items.append(r)
            continue
        evs = r.evs[row]
        items.append(
            PubResult(
                evs=evs,
                stds=r.stds[row],
                gradient=None if r.gradient is None else r.gradient[row],
                metadata={**r.metadata, "shape": list(evs.shape)},
                mask=None if r.mask is None else r.mask[row],
            )
        )
    return JobResult(result.job_id, items, result.metadata, result.status, result.progress)
