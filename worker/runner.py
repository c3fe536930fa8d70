"""Running one task: load its slices, pick an engine, compute, store the result once.

The task function :func:`run_task` is what RQ calls with ids only. The :class:`Runner`
is built once per worker process (qiskit imported, engines warm) and keeps LRU caches
of job specs and prepared programs, keyed by circuit content so a training loop's
template is compiled once for all its steps.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from traceback import format_exception
from typing import TYPE_CHECKING, Any

import numpy as np
from qiskit import qpy
from qiskit.quantum_info import SparsePauliOp

from qfleet_server import queueing
from qfleet_server.backends import Backend, all_backends
from qfleet_server.devices.wukong72 import Wukong72Backend
from qfleet_server.result_cache import engine_version
from qfleet_server.settings import Settings
from qfleet_server.store import Store, TaskStats
from qfleet_server.store.cache import CacheWrite
from qfleet_server.tasks import JobSpec, PubSpec, Segment, pack_segment

from .cache import chunk_digest, pack_chunk, unpack_chunk
from .engines import Block, Engine, EngineUnsupported, Program
from .engines.aer import AerEngine
from .engines.device import DeviceEngine
from .engines.lightning import LightningEngine
from .parameter_shift import parameter_shift

if TYPE_CHECKING:  # torch is imported only where a GPU is asked for
    from .engines.torch_sv import TorchEngine

log = logging.getLogger("qfleet.worker")
BEGIN_FIELDS = ["status", "backend", "tenant", "created_at", "queue"]  # what a task reads of its job first


class _LRU(OrderedDict[Any, Any]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> Any:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
        return value

    def hit(self, key: Any) -> Any:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value


# What a GPU torch can use leaves on Linux: NVIDIA's driver (on a host, or mounted into a
# container by NVIDIA's runtime), WSL 2's GPU, or AMD's ROCm (torch's cuda is HIP there).
GPU_DEVICE_PATHS = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/dev/kfd")


def gpu_device_present(paths: tuple[str, ...] | None = None) -> bool:
    """Whether this machine shows a GPU driver at all (``paths``: GPU_DEVICE_PATHS): without
    one, torch is not imported (a worker would spend a second and some 230 MB on it only to
    find no CUDA device)."""
    return any(os.path.exists(p) for p in (GPU_DEVICE_PATHS if paths is None else paths))


def gpu_engine(settings: Settings) -> TorchEngine | None:
    """qfleet's torch engine on the GPU, when asked for (``QFLEET_GPU=auto``), the machine
    shows a GPU driver, torch is installed and it sees a CUDA device; else None and the CPU
    engines run everything."""
    if settings.gpu == "off" or not gpu_device_present():
        return None
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    from .engines.torch_sv import TorchEngine

    log.info(
        "GPU: %s; exact blocks of %d+ amplitudes (rows x 2^qubits) run on it",
        torch.cuda.get_device_name(),
        settings.gpu_min_amplitudes,
    )
    return TorchEngine("cuda", int(settings.gpu_memory_gb * 2**30))


class Runner:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.lightning = LightningEngine(settings.worker_threads)
        self.device = DeviceEngine(
            Wukong72Backend(),
            settings.worker_threads,
            semaphore=lambda: store.device_slot("wukong72", settings.device_concurrency),
            shot_time_s=settings.device_shot_time_s,
        )
        self.engines: dict[str, Engine] = {"aer": AerEngine(settings.worker_threads), "lightning": self.lightning}
        self.gpu = gpu_engine(settings)  # wide exact circuits go here first, where a GPU is present
        if self.gpu is not None:
            self.engines["gpu"] = self.gpu
        self.backends: dict[str, Backend] = all_backends(settings)
        self.lease: str | None = None  # the lease of the task this process holds, from take to end
        self._adapters: dict[str, Engine] = {}
        self._specs = _LRU(64)
        self._pubs = _LRU(8192)  # (job, pub) -> (program, values, pairs); a task may hold thousands
        self._programs = _LRU(128)  # content hash -> Program
        self._payload: dict[str, bytes | None] = {}  # the running task's prefetched payloads
        self._whole = False  # whether _payload is the job's whole payload (a field not in it is absent)
        self._begun: tuple[str, int, Any] | None = None  # (job, task, begin reply) sent before the run
        self.cache_version = engine_version(f"calibration={self.device.calibration['id']}")

    def warm_up(self) -> None:
        from qiskit import QuantumCircuit

        qc = QuantumCircuit(2)
        qc.h(0)
        qc.cx(0, 1)
        program = Program(qc, [SparsePauliOp("ZZ")])
        for engine in self.engines.values():
            engine.estimate(program, Block(values=np.zeros((1, 0))))

    def _spec(self, job_id: str, raw: str | None = None) -> JobSpec | None:
        spec = self._specs.hit(job_id)
        if spec is None:
            spec = JobSpec.from_json(raw) if raw is not None else self.store.spec(job_id)
            if spec is not None:
                self._specs.put(job_id, spec)
        return spec  # type: ignore[no-any-return]

    def _prefetch(self, job_id: str, spec: JobSpec, segments: list[Segment]) -> None:
        """Load the payloads of a task's PUBs in one round trip (a task may hold thousands of small PUBs)."""
        missing = sorted({s.pub for s in segments if (job_id, s.pub) not in self._pubs})
        if len(missing) < 2 or self._whole:
            return
        fields = [f"{kind}{i}" for i in missing for kind in "px"]
        fields += sorted({f"c{_ref(spec.pubs[i].circuit, i)}" for i in missing})
        fields += sorted({f"o{_ref(spec.pubs[i].obs, i)}" for i in missing})
        self._payload = dict(zip(fields, self.store.data(job_id, fields)))

    def _data(self, job_id: str, fields: list[str]) -> list[bytes | None]:
        if self._whole or all(f in self._payload for f in fields):
            return [self._payload.get(f) for f in fields]
        return self.store.data(job_id, fields)

    def _pub(self, job_id: str, i: int, pub: PubSpec) -> tuple[Program, np.ndarray, np.ndarray | None]:
        key = (job_id, i)
        cached = self._pubs.hit(key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        rows = pub.num_values
        c, o = _ref(pub.circuit, i), _ref(pub.obs, i)
        circuit_raw, values_raw, obs_raw, pairs_raw = self._data(job_id, [f"c{c}", f"p{i}", f"o{o}", f"x{i}"])
        if circuit_raw is None or values_raw is None or obs_raw is None:
            raise LookupError(f"payload of job {job_id} pub {i} is gone (expired or deleted)")
        digest = hashlib.sha256(circuit_raw + b"\0" + obs_raw).hexdigest()
        program = self._programs.hit(digest)
        if program is None:
            (circuit,) = qpy.load(io.BytesIO(circuit_raw))
            observables = [SparsePauliOp.from_list(list(o.items())) for o in json.loads(obs_raw)]
            program = self._programs.put(digest, Program(circuit, observables))
            program.cache["digest"] = digest
        P = program.circuit.num_parameters
        values = np.frombuffer(values_raw, dtype="<f8").reshape(rows, P)
        pairs = None if pairs_raw is None else np.frombuffer(pairs_raw, dtype="<i8").reshape(-1, 2)
        return self._pubs.put(key, (program, values, pairs))  # type: ignore[no-any-return]

    def engine_order(self, block: Block, num_qubits: int) -> list[str]:
        # Exact runs go to Lightning's kernels first: on the training ansatz they beat Aer
        # EstimatorV2 at every width measured (bench/results). Aer takes what Lightning
        # cannot compile (multi-parameter angles), and every shot-based estimate. Where a GPU
        # is present, exact blocks of gpu_min_amplitudes (rows x 2^n) or more go to the torch
        # engine before those.
        if block.shots:
            return ["aer"]
        if self.gpu is not None and len(block.values) << num_qubits >= self.settings.gpu_min_amplitudes:
            return ["gpu", "lightning", "aer"]
        return ["lightning", "aer"]

    def device_engine(self, backend: str) -> Engine:
        """The engine of a device backend: the wukong72 model, or a real-QPU adapter."""
        if backend == "wukong72":
            return self.device
        if backend not in self._adapters:  # built on first use: they may open network sessions
            if backend == "origin":
                from .engines.origin import OriginEngine

                self._adapters[backend] = OriginEngine(self.settings.origin_api_key, self.settings.origin_chip)
            else:
                from .engines.ibm import IBMEngine

                assert self.settings.ibm_token, "the ibm backend needs QFLEET_IBM_TOKEN"
                self._adapters[backend] = IBMEngine.from_token(
                    self.settings.ibm_token, self.settings.ibm_instance, self.settings.ibm_backend
                )
        return self._adapters[backend]

    def compute(
        self, program: Program, block: Block, gradient: str | None, backend: str = "aer"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
        """evs, stds, the gradient (or None) of a block, and the name of the engine that ran it:
        a device's own engine, else the first simulator engine that can run the block."""
        if self.backends[backend].is_device:
            engine = self.device_engine(backend)
            if gradient:
                return (*parameter_shift(engine, program, block), engine.name)
            return (*engine.estimate(program, block), None, engine.name)
        if gradient == "adjoint":
            if self.gpu is not None and self.engine_order(block, program.num_qubits)[0] == "gpu":
                try:  # autograd through the GPU run: exact, as adjoint differentiation is
                    return (*self.gpu.gradient(program, block), f"{self.gpu.name}-autograd")
                except EngineUnsupported as exc:
                    log.debug("GPU gradient unavailable (%s); using Lightning's adjoint", exc)
            try:
                return (*self.lightning.gradient(program, block), "lightning-adjoint")
            except EngineUnsupported as exc:
                log.debug("adjoint unavailable (%s); using parameter shift", exc)
        for name in self.engine_order(block, program.num_qubits):
            engine = self.engines[name]
            try:
                if gradient:
                    return (*parameter_shift(engine, program, block), f"{engine.name}-parameter-shift")
                return (*engine.estimate(program, block), None, engine.name)
            except EngineUnsupported as exc:
                log.debug("engine %s skipped: %s", name, exc)
        raise RuntimeError("no engine could run this block")  # Aer runs every validated circuit

    def begin_with(self, pipe: Any, job_id: str, task: int) -> Callable[[Any], None]:
        """Queue :meth:`run`'s first step in ``pipe`` (RQ's worker sends it with its own writes
        before the task); returns what keeps its reply for the run."""
        self.store.queue_begin(pipe, job_id, BEGIN_FIELDS, spec=job_id not in self._specs, data=True)

        def took(reply: Any) -> None:
            self._begun = None if isinstance(reply, Exception) else (job_id, task, self.store.begun(reply))

        return took

    def run(self, job_id: str, task: int) -> int:
        # one round trip: the job's fields, its spec (unless cached), a one-task job's payload,
        # and the job marked running; sent already with RQ's writes before the task, if it was
        early, self._begun = self._begun, None
        if early is not None and early[:2] == (job_id, task):
            fields, paused, raw_spec, payload = early[2]
        else:
            fields, paused, raw_spec, payload = self.store.begin_task(
                job_id, BEGIN_FIELDS, spec=job_id not in self._specs, data=True
            )
        status, backend, tenant, created, queue = fields
        if status in (None, "cancelled", "failed", "done"):
            return -1  # nothing to do: gone, cancelled, failed, or a late duplicate
        if paused:
            # An admin paused this backend: put the task back at the end of its lane, slowly.
            time.sleep(0.5)
            queueing.enqueue(self.store, self.settings, queue or "", job_id, [task], "paused")
            return -1
        spec = self._spec(job_id, raw_spec)
        if spec is None:
            return -1
        started = time.time()
        self._payload, self._whole = dict(payload or {}), payload is not None
        return self._run(job_id, task, spec, backend or "", tenant or "", started - float(created or started))

    def run_leased(self, job_id: str, task: int) -> int:
        """Run a task under this process's lease (taken with the task by the worker's dequeue, or
        here for an in-process run), and drop the lease once the task has ended either way."""
        if self.lease is None:
            self.lease = self.store.take_lease(job_id, task, self.settings.lease_s)
        try:
            return self.run(job_id, task)
        finally:
            lease, self.lease = self.lease, None
            try:
                if lease is not None:  # not dropped with the result
                    self.store.drop_lease(lease)
            except Exception as exc:  # Redis away: the lease lapses and the task runs again (at least once)
                log.warning("could not drop lease %s: %s", lease, exc)

    @staticmethod
    def _mergeable(pub: PubSpec) -> bool:
        # exact estimates only: shot-based segments keep a seed of their own
        return pub.mode == "product" and not pub.shots and pub.primitive == "estimator"

    def _runs(self, spec: JobSpec, segments: list[Segment]) -> list[list[Segment]]:
        """Consecutive segments whose PUBs share circuit, observables and options run together."""
        runs: list[list[Segment]] = []
        last_key: Any = None
        for seg in segments:
            pub = spec.pubs[seg.pub]
            key = None
            if self._mergeable(pub):
                key = (_ref(pub.circuit, seg.pub), _ref(pub.obs, seg.pub), pub.gradient)
            if key is not None and key == last_key:
                runs[-1].append(seg)
            else:
                runs.append([seg])
            last_key = key
        return runs

    def sample(self, program: Program, block: Block, backend: str) -> bytes:
        """Packed clbit memory of a block, (rows, shots, bytes) uint8, on the backend's sampler engine."""
        engine: Any = self.device_engine(backend) if self.backends[backend].is_device else self.engines["aer"]
        return np.ascontiguousarray(engine.sample(program, block), dtype=np.uint8).tobytes()

    def _blocks(
        self, job_id: str, spec: JobSpec, run: list[Segment]
    ) -> tuple[list[Segment], PubSpec, Program, list[Block]]:
        """A run's rows as the chunks it computes in, each about one task quantum, seeded."""
        i, start, stop = run[0]
        pub = spec.pubs[i]
        program, values, pairs = self._pub(job_id, i, pub)
        if len(run) > 1:  # PUBs sharing one program: one engine call, split afterwards
            full = Block(np.concatenate([self._pub(job_id, j, spec.pubs[j])[1][a:b] for j, a, b in run]))
        elif pub.mode == "product":
            full = Block(values[start:stop])
        else:
            rows = pairs[start:stop]  # type: ignore[index]
            full = Block(values[rows[:, 1]], rows[:, 0])
        sampler = pub.primitive == "sampler"
        step = max(1, int(self.settings.task_target_s / max(pub.row_seconds, 1e-9)))
        blocks = []
        for lo in range(0, len(full.values), step):
            hi = lo + step
            obs_index = None if full.obs_index is None else full.obs_index[lo:hi]
            block = Block(full.values[lo:hi], obs_index, shots=pub.shots, noise=spec.noise)
            # A sampler seeds each bound circuit with the job's seed, as Qiskit's reference
            # sampler does; an estimate's seed comes from the chunk's content, so identical
            # PUBs give identical values wherever they land.
            block.seed = spec.seed if sampler else block_seed(spec.seed, program, block)
            blocks.append(block)
        return run, pub, program, blocks

    def _digest(
        self, spec: JobSpec, backend: str, tenant: str, pub: PubSpec, program: Program, block: Block
    ) -> str | None:
        """A chunk's result-cache key, or None where its results must not be reused: the job opted
        out, a shot-based chunk without a seed, or a real QPU."""
        if not spec.cache or self.settings.result_cache_ttl_s <= 0 or (block.shots and spec.seed is None):
            return None
        if self.backends[backend].is_device and backend != self.device.backend.name:
            return None
        if not program.cache.get("digest"):
            return None
        return chunk_digest(
            self.cache_version,
            tenant,
            backend,
            str(program.cache.get("digest", "")),
            block,
            primitive=pub.primitive,
            gradient=pub.gradient,
            precision=pub.precision,
        )

    def renew_leases_forever(self) -> None:
        """Keeps the held task's lease alive while this process lives (a daemon thread)."""
        while True:
            time.sleep(self.settings.lease_s / 4)
            lease = self.lease
            if lease is not None:
                try:
                    self.store.renew_lease(lease, self.settings.lease_s)
                except Exception as exc:  # Redis away; the task itself will notice
                    log.debug("lease renewal failed: %s", exc)

    def _run(self, job_id: str, task: int, spec: JobSpec, backend: str, tenant: str, wait: float) -> int:
        parts: list[bytes] = []
        engines_used: list[str] = []
        meta: dict[str, Any] = {}
        t0 = time.perf_counter()
        segments = spec.tasks[task]
        self._prefetch(job_id, spec, segments)
        runs = [self._blocks(job_id, spec, run) for run in self._runs(spec, segments)]
        # The result cache: every chunk's key first, then one lookup for the whole task.
        digests = [
            [self._digest(spec, backend, tenant, pub, program, b) for b in blocks] for _, pub, program, blocks in runs
        ]
        wanted = [d for ds in digests for d in ds if d]
        found = dict(zip(wanted, self.store.cached_chunks(tenant, wanted)))
        computed: dict[str, bytes] = {}
        hits = 0
        costs: dict[str, tuple[float, int]] = {}  # cost key -> CPU seconds and rows computed (learned prices)
        for (run, pub, program, blocks), keys in zip(runs, digests):
            i = run[0].pub
            sampler = pub.primitive == "sampler"
            # Compute chunk by chunk, about one task quantum each, and stop between them once the job
            # is cancelled or failed: a long segment must not hold the worker for a job nobody waits for.
            chunks: list[Any] = []
            engine = ""
            for c, (block, digest) in enumerate(zip(blocks, keys)):
                if c and self.store.job_field(job_id, "status") in ("cancelled", "failed"):
                    log.info("task %s of job %s stopped: the job is final", task, job_id)
                    return -1
                cached = (found.get(digest) or computed.get(digest)) if digest else None
                if cached is not None:
                    value = cached if sampler else unpack_chunk(cached, len(block.values))
                    if value is not None:
                        chunks.append(value)
                        engine = engine or "result-cache"
                        hits += 1
                        continue
                cpu = time.process_time()
                if sampler:
                    chunks.append(self.sample(program, block, backend))
                    engine = f"{backend}-sampler"
                else:
                    *result, engine = self.compute(program, block, pub.gradient, backend)
                    chunks.append(result)
                if pub.cost_key:  # CPU time, not wall: a wait for the device's slot is not its cost
                    spent, rows = costs.get(pub.cost_key, (0.0, 0))
                    costs[pub.cost_key] = (spent + time.process_time() - cpu, rows + len(block.values))
                if digest:
                    computed[digest] = chunks[-1] if sampler else pack_chunk(*chunks[-1])
            block = blocks[-1]
            engines_used.append(engine)
            if sampler:
                parts.append(b"".join(chunks))
                if backend == self.device.backend.name:
                    meta[str(i)] = self.device.describe_sample(program, block)
                continue
            evs = np.concatenate([r[0] for r in chunks], axis=-1)
            stds = np.concatenate([r[1] for r in chunks], axis=-1)
            grad = None if chunks[0][2] is None else np.concatenate([r[2] for r in chunks], axis=-2)
            if len(run) == 1:
                parts.append(pack_segment(evs, stds, grad))
            else:
                pos = 0
                for _, a, b in run:
                    cols = slice(pos, pos + b - a)
                    parts.append(pack_segment(evs[:, cols], stds[:, cols], None if grad is None else grad[:, cols]))
                    pos += b - a
            if backend == self.device.backend.name:
                for j, _, _ in run:
                    meta[str(j)] = self.device.describe(program, block)
            elif spec.seed is not None and block.shots:
                meta[str(i)] = {"seed": block.seed}
        self._payload, self._whole = {}, False
        stats = TaskStats(backend, tenant, time.perf_counter() - t0, wait, spec.circuits(task))
        cache = None
        if wanted:
            settings = self.settings
            cache = CacheWrite(
                tenant, computed, hits, len(computed), settings.result_cache_ttl_s, settings.result_cache_max_share
            )
        # one round trip: the chunks for the cache, the metadata and the learned costs first, then the result
        # the lease goes in the same round trip, once the result is in (run_leased has none left to drop)
        lease, self.lease = self.lease, None
        outcome = self.store.complete_task(
            job_id,
            task,
            b"".join(parts),
            stats,
            meta=meta,
            cache=cache,
            whole=len(spec.tasks) == 1,
            lease=lease,
            costs={k: spent / rows for k, (spent, rows) in costs.items()},
        )
        log.info(
            "task done",
            extra={
                "job_id": job_id,
                "task": task,
                "tenant": tenant,
                "engines": engines_used,
                "seconds": round(time.perf_counter() - t0, 4),
                "outcome": outcome,
            },
        )
        return outcome


_runner: Runner | None = None


def install(runner: Runner) -> None:
    """Called once by the worker process before it starts taking tasks."""
    global _runner
    _runner = runner


def run_task(job_id: str, task: int) -> int:
    """The RQ entry point: ids in, result slice written to Redis, nothing returned to RQ."""
    if _runner is None:
        raise RuntimeError("worker runner not installed; start workers with `qfleet worker`")
    return _runner.run_leased(job_id, task)


def on_task_failed(job: Any, connection: Any, type: Any, value: Any, traceback: Any) -> None:
    """RQ failure callback: after its retries a task fails its job, with the reason."""
    if _runner is None or job.retries_left or queueing.is_abandoned(type):
        return  # retried by RQ; abandoned tasks are re-queued by the API's lease reaper
    job_id, task = job.args
    reason = type.__name__ if type else "error"
    backend, tenant = _runner.store.job_fields(job_id, ["backend", "tenant"])
    trace = "".join(format_exception(type, value, traceback)) if type else ""
    _runner.store.record_failure(job_id, task, backend or "", tenant or "", reason, str(value), trace)
    _runner.store.finish(job_id, "failed", "task_failed", f"task {task} failed: {reason}: {value}")


def _ref(index: int, own: int) -> int:
    """A PUB's payload blob: its own, or (index >= 0) the first PUB's with the same content."""
    return own if index < 0 else index


def block_seed(seed: int | None, program: Program, block: Block) -> int | None:
    """A block's seed from the job's seed and the block's content: identical PUBs given one
    seed give identical values, wherever the planner put them."""
    if seed is None:
        return None
    h = hashlib.sha256(str(int(seed)).encode())
    h.update(str(program.cache.get("digest", "")).encode())
    h.update(np.ascontiguousarray(block.values).tobytes())
    if block.obs_index is not None:
        h.update(np.ascontiguousarray(block.obs_index).tobytes())
    h.update(str(block.shots).encode())
    return int.from_bytes(h.digest()[:7], "little")
