"""Parsing client circuits where it cannot hurt the API: a small pool of child processes,
each under an address-space limit, each call under a deadline.

A 40-byte ``qubit[100000000]`` once held the API's GIL for half a minute and then killed it
on a failed allocation. Here the declared width is checked before anything is built
(:func:`precheck`), and what is built is built in a child: a parse that runs past its
deadline costs that child (killed and replaced) and its sender a 4xx, and one that needs
more memory than the limit dies in the child alone.

The child returns a :class:`CircuitInfo`: canonical QPY bytes plus what admission and
pricing need (width, size, depth, what gradients are possible), so the API never holds the
circuit object of a first-seen circuit.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import multiprocessing
import os
import queue
import re
import threading
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger("qfleet.api")

_ALLOWED_DIRECTIVES = {"barrier", "delay", "global_phase"}
_DECLARED = re.compile(r"\b(?:qubit|bit)\s*\[\s*(\d{1,30})\s*\]|\b(?:qreg|creg)\s+\w+\s*\[\s*(\d{1,30})\s*\]")
_SINGLE = re.compile(r"\b(?:qubit|bit)\s+[A-Za-z_]")


def qpy_version_read() -> int:
    """The newest QPY version the parsers read: they run this process's qiskit."""
    from qiskit import qpy

    return int(qpy.QPY_VERSION)


class CircuitError(Exception):
    """A circuit refused; ``code`` and ``message`` go to the client as they are."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class ParserBusy(Exception):
    """No parser child within the wait: with an owner, because that owner's own turns are all
    taken (429); without, because every child is busy (503)."""


@dataclass(frozen=True)
class Limits:
    max_qubits: int  # the backend's width (after the tenant's cap)
    max_ops: int
    max_depth: int
    primitive: str = "estimator"  # "sampler": measurements allowed
    mid_circuit: bool = False  # the backend runs resets, mid-circuit measurement, classical control
    drop_idle: bool = False  # run on the used qubits only (simulators; devices only when too wide)


@dataclass(frozen=True)
class CircuitInfo:
    qpy: bytes  # canonical QPY, written by this server's qiskit
    num_qubits: int
    num_parameters: int
    size: int
    depth: int
    shift_terms: int  # parameterized rotation angles the parameter-shift rule shifts (G)
    shift_error: str | None  # why parameter shift cannot run, or None
    adjoint_error: str | None  # why adjoint differentiation cannot run, or None
    num_clbits: int = 0
    registers: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (name, clbit indices) per classical register
    kept: tuple[int, ...] | None = None  # the used qubits, when idle ones were dropped
    width: int = 0  # the qubits the client's circuit declared (observables are written for these)


def precheck(fmt: str, data: str, max_declared_qubits: int, max_ops: int) -> None:
    """Refuse from the text alone what no backend could run: declared widths and statement counts.

    Cheap (one regex pass) and conservative: what passes is still checked after the parse."""
    if fmt != "qasm3":
        return
    declared = 0
    for match in _DECLARED.finditer(data):
        declared += int(match.group(1) or match.group(2))
    declared += len(_SINGLE.findall(data))
    if declared > max_declared_qubits:
        raise CircuitError(
            "too_many_qubits",
            f"the circuit declares {declared} qubits and bits; no backend here takes more than {max_declared_qubits}",
            num_qubits=declared,
            limit=max_declared_qubits,
        )
    statements = data.count(";")
    if statements > 2 * max_ops + 100:
        raise CircuitError(
            "circuit_too_large", f"the circuit has {statements} statements; the limit is {max_ops} operations"
        )


def parse(fmt: str, data: str, limits: Limits) -> CircuitInfo:
    """Load, check and describe one circuit. Runs in a parser child (imports qiskit)."""
    circuit = _load(fmt, data)
    width, kept = circuit.num_qubits, None
    if circuit.num_qubits and (limits.drop_idle or circuit.num_qubits > limits.max_qubits):
        reduced = drop_idle_qubits(circuit)
        if reduced is not circuit:
            kept = tuple(reduced.metadata.pop(KEPT_QUBITS))
            circuit = reduced
    _check(circuit, limits)
    info = describe(circuit)
    return replace(info, kept=kept, width=width)


def describe(circuit: Any) -> CircuitInfo:
    """A checked circuit's canonical bytes and the facts admission and pricing need."""
    from qiskit import qpy

    from .gradients import NotDifferentiable, check_adjoint, shift_terms

    buf = io.BytesIO()
    qpy.dump(circuit, buf)
    shift_count, shift_error, adjoint_error = 0, None, None
    try:
        shift_count = shift_terms(circuit)
    except NotDifferentiable as exc:
        shift_error = str(exc)
    try:
        check_adjoint(circuit)
    except NotDifferentiable as exc:
        adjoint_error = str(exc)
    registers = tuple((c.name, tuple(circuit.find_bit(b).index for b in c)) for c in circuit.cregs)
    return CircuitInfo(
        num_clbits=int(circuit.num_clbits),
        registers=registers,
        width=int(circuit.num_qubits),
        qpy=buf.getvalue(),
        num_qubits=int(circuit.num_qubits),
        num_parameters=int(circuit.num_parameters),
        size=int(circuit.size()),
        depth=int(circuit.depth()),
        shift_terms=shift_count,
        shift_error=shift_error,
        adjoint_error=adjoint_error,
    )


def _load(fmt: str, data: str) -> Any:
    from qiskit import QuantumCircuit, qasm3, qpy

    if fmt == "qasm3":
        try:
            return qasm3.loads(data)
        except qasm3.QASM3ImporterError as exc:
            text = str(exc)
            if "is not defined" in text and "gate" in text:
                raise CircuitError(
                    "unknown_gate", f"{text.strip(chr(39))} Use gates from stdgates.inc or define them."
                ) from None
            if "import" in text:
                raise CircuitError("unsupported_include", 'only include "stdgates.inc" is supported') from None
            raise CircuitError("invalid_circuit", f"OpenQASM 3 could not be converted: {text}") from None
        except MemoryError:
            raise
        except Exception as exc:  # the parser raises its own types with terse messages
            raise CircuitError("invalid_circuit", f"OpenQASM 3 did not parse: {_syntax_error(exc)}") from None
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise CircuitError("invalid_circuit", "QPY data is not valid base64") from None
    try:
        circuits = qpy.load(io.BytesIO(raw))
    except MemoryError:
        raise
    except Exception as exc:  # QPY raises many kinds on corrupt input
        raise CircuitError("invalid_circuit", f"QPY did not load ({type(exc).__name__}: {exc})") from None
    if len(circuits) != 1 or not isinstance(circuits[0], QuantumCircuit):
        raise CircuitError("invalid_circuit", "QPY data must hold exactly one circuit")
    return circuits[0]


def _syntax_error(exc: BaseException) -> str:
    """Where and what, from the ANTLR token the parser stopped at (its own message is often empty)."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        error = stack.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        token = getattr(error, "offendingToken", None)
        if token is not None:
            if token.text == "<EOF>":
                return f"line {token.line}, column {token.column + 1}: the text ends early (a missing ';' or '}}'?)"
            return f"line {token.line}, column {token.column + 1}: unexpected {token.text!r}"
        stack += [error.__cause__, error.__context__, *(a for a in error.args if isinstance(a, BaseException))]
    detail = str(exc).strip()
    return f"{type(exc).__name__}: {detail}" if detail else "check the syntax"


def _check(circuit: Any, limits: Limits) -> None:
    from .backends import STANDARD_GATES

    if circuit.num_qubits == 0:
        raise CircuitError("invalid_circuit", "the circuit has no qubits")
    check_width(circuit.num_qubits, limits.max_qubits)
    if circuit.size() > limits.max_ops:
        raise CircuitError(
            "circuit_too_large", f"the circuit has {circuit.size()} operations; the limit is {limits.max_ops}"
        )
    if circuit.depth() > limits.max_depth:
        raise CircuitError(
            "circuit_too_large", f"the circuit has depth {circuit.depth()}; the limit is {limits.max_depth}"
        )
    standard = set(STANDARD_GATES)
    _check_instructions(circuit, limits)
    for inst in circuit.data:
        op = inst.operation
        name = op.name
        if name in ("measure", "reset") or getattr(op, "blocks", None):
            continue  # checked by _check_instructions
        if name in standard or name in _ALLOWED_DIRECTIVES:
            continue
        if getattr(op, "definition", None) is None:
            raise CircuitError("unknown_gate", f"gate '{name}' is neither a standard gate nor has a definition")


_MID_CIRCUIT = "on the simulators (aer)"


def _check_instructions(circuit: Any, limits: Limits) -> None:
    """Measurements, resets and classical control: what each primitive and backend can run."""
    measured: set[int] = set()
    for inst in circuit.data:
        op = inst.operation
        name = op.name
        qubits = {circuit.find_bit(q).index for q in inst.qubits}
        if getattr(op, "blocks", None):
            if not (limits.primitive == "sampler" and limits.mid_circuit):
                raise CircuitError(
                    "unsupported_instruction",
                    f"control flow ('{name}') runs in sampler jobs {_MID_CIRCUIT}; remove it for this backend",
                )
        elif name == "measure":
            if limits.primitive != "sampler":
                raise CircuitError(
                    "unsupported_instruction",
                    "'measure' is not allowed in an estimator circuit; the estimator measures the observables "
                    "itself: call circuit.remove_final_measurements() before sending it, or send the circuit "
                    "in a sampler job (primitive 'sampler')",
                )
            measured |= qubits
        elif name == "reset":
            if not limits.mid_circuit:
                raise CircuitError("unsupported_instruction", f"'reset' runs {_MID_CIRCUIT}, not on this backend")
        elif name not in ("barrier", "delay") and measured & qubits and not limits.mid_circuit:
            raise CircuitError(
                "unsupported_instruction",
                f"'{name}' acts on a measured qubit: this backend runs final measurements only; "
                f"mid-circuit measurement runs {_MID_CIRCUIT}",
            )


KEPT_QUBITS = "qfleet_kept_qubits"


def drop_idle_qubits(circuit: Any) -> Any:
    """The circuit on its used qubits, in their order (clbits and registers as they were), with
    the kept qubits in its metadata under KEPT_QUBITS; the circuit itself when none is idle.
    Barriers and delays are not uses. Circuits with control flow are left as they are."""
    from qiskit import QuantumCircuit

    used: set[int] = set()
    for inst in circuit.data:
        if getattr(inst.operation, "blocks", None):
            return circuit  # its blocks name the original wires
        if inst.operation.name not in ("barrier", "delay"):
            used.update(circuit.find_bit(q).index for q in inst.qubits)
    if len(used) == circuit.num_qubits:
        return circuit
    order = sorted(used) or [0]
    new_index = {circuit.qubits[q]: j for j, q in enumerate(order)}
    reduced = QuantumCircuit(len(order), name=circuit.name, global_phase=circuit.global_phase)
    reduced.add_bits(circuit.clbits)
    for creg in circuit.cregs:
        reduced.add_register(creg)
    for inst in circuit.data:
        qubits = [reduced.qubits[new_index[q]] for q in inst.qubits if q in new_index]
        if inst.operation.name in ("barrier", "delay"):
            if qubits and inst.operation.name == "barrier":
                reduced.barrier(*qubits)
            continue
        reduced.append(inst.operation, qubits, inst.clbits, copy=False)
    reduced.metadata = {**(circuit.metadata or {}), KEPT_QUBITS: order}
    return reduced


def check_width(num_qubits: int, limit: int, backend: str = "") -> None:
    if num_qubits > limit:
        where = f"backend '{backend}'" if backend else "the backend"
        raise CircuitError(
            "too_many_qubits",
            f"the circuit has {num_qubits} qubits but {where} takes {limit}",
            num_qubits=num_qubits,
            limit=limit,
        )


# -- the pool -------------------------------------------------------------------------------


def _child_main(conn: Connection, memory_bytes: int) -> None:
    """A parser child: import qiskit, cap the address space, answer requests until the pipe closes."""
    import qiskit  # noqa: F401  (imported before the cap: the cap is for what a circuit costs)

    from . import gradients  # noqa: F401

    _cap_memory(memory_bytes)
    os.nice(10)  # parsing yields the cores to the API and the workers: one tenant's big text waits, not everyone
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the API is gone
        if request is None:  # a warm-up ping
            conn.send(("ok", None))
            continue
        fmt, data, limits = request
        try:
            reply: tuple[str, Any] = ("ok", parse(fmt, data, limits))
        except CircuitError as exc:
            reply = ("error", (exc.code, exc.message, exc.details))
        except MemoryError:
            reply = ("error", ("circuit_too_large", _memory_message(memory_bytes), {}))
        except RecursionError:
            reply = ("error", ("invalid_circuit", "the circuit is nested too deeply to parse", {}))
        except Exception as exc:  # any other parser failure is the input's fault, said plainly
            reply = ("error", ("invalid_circuit", f"the circuit could not be read ({type(exc).__name__}: {exc})", {}))
        conn.send(reply)


def _cap_memory(extra_bytes: int) -> None:
    try:
        import resource

        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (size + extra_bytes, size + extra_bytes))
    except (OSError, ValueError, ImportError):  # not Linux: the deadline still bounds the parse
        pass


def _memory_message(memory_bytes: int) -> str:
    return f"parsing the circuit needed more than {memory_bytes // 2**20} MiB; send a smaller circuit"


class _Child:
    def __init__(self, ctx: Any, memory_bytes: int) -> None:
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_child_main, args=(child_conn, memory_bytes), daemon=True)
        self.process.start()
        child_conn.close()
        self.warm = False  # its first answer also waits for its qiskit import

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()


class ParserPool:
    """``size`` parser children; :meth:`parse` answers within ``timeout_s`` or raises CircuitError."""

    def __init__(self, size: int, timeout_s: float, memory_bytes: int, wait_s: float = 5.0) -> None:
        self._ctx = multiprocessing.get_context("spawn")  # the API has threads: never fork it
        self._timeout_s = timeout_s
        self._memory_bytes = memory_bytes
        self._wait_s = wait_s
        self._size = size
        self._idle: queue.Queue[_Child | None] = queue.Queue()
        for _ in range(size):
            self._idle.put(None)  # started on first use
        self._lock = threading.Lock()
        self._turns: dict[str, threading.BoundedSemaphore] = {}

    def parse(self, fmt: str, data: str, limits: Limits, owner: str = "") -> CircuitInfo:
        """Parse in a child. One ``owner`` (a tenant) has at most ``size - 1`` children at once, so
        one tenant's slow texts never take every parser; its excess waits for its own turn."""
        with self._lock:
            turn = self._turns.setdefault(owner, threading.BoundedSemaphore(max(1, self._size - 1)))
        if not turn.acquire(timeout=self._wait_s):
            raise ParserBusy(owner)
        try:
            return self._parse(fmt, data, limits)
        finally:
            turn.release()

    def _parse(self, fmt: str, data: str, limits: Limits) -> CircuitInfo:
        try:
            child = self._idle.get(timeout=self._wait_s)
        except queue.Empty:
            raise ParserBusy() from None
        if child is None or not child.process.is_alive():
            child = self._spawn()
        try:
            child.conn.send((fmt, data, limits))
            if not child.conn.poll(self._timeout_s + (0.0 if child.warm else 20.0)):
                self._replace(child)
                raise CircuitError(
                    "circuit_parse_timeout",
                    f"the circuit took more than {self._timeout_s:g} s to parse; send a smaller or simpler one",
                )
            status, value = child.conn.recv()
            child.warm = True
        except (EOFError, OSError):
            self._replace(child)
            raise CircuitError("circuit_too_large", _memory_message(self._memory_bytes)) from None
        self._idle.put(child)
        if status == "error":
            code, message, details = value
            raise CircuitError(code, message, **details)
        return value  # type: ignore[no-any-return]

    def _replace(self, child: _Child) -> None:
        """Kill a child past its deadline (or dead) and start its successor in the background, so
        the next circuit does not wait for a qiskit import."""
        log.warning("parser child %s retired (deadline or memory)", child.process.pid)
        child.kill()

        def start() -> None:
            fresh: _Child | None = None
            try:
                fresh = self._spawn()
                fresh.conn.send(None)
                if fresh.conn.poll(60.0):
                    fresh.conn.recv()
                    fresh.warm = True
            except Exception as exc:  # the slot stays: the next parse starts a child itself
                log.warning("parser child could not start: %s", exc)
            self._idle.put(fresh)

        threading.Thread(target=start, name="parser-respawn", daemon=True).start()

    def warm(self) -> None:
        """Start every child and wait until each answers (they import qiskit first)."""
        children = [self._idle.get() for _ in range(self._size)]
        try:
            for j, child in enumerate(children):
                if child is None or not child.process.is_alive():
                    children[j] = child = self._spawn()
                child.conn.send(None)
            for child in children:
                assert child is not None
                if child.conn.poll(60.0):
                    child.conn.recv()
                    child.warm = True
        finally:
            for child in children:
                self._idle.put(child)

    def _spawn(self) -> _Child:
        # daemon children: they end with the API process (and on EOF of their pipe)
        return _Child(self._ctx, self._memory_bytes)


_shared: dict[tuple[int, float, int], ParserPool] = {}
_shared_lock = threading.Lock()


def shared_pool(size: int, timeout_s: float, memory_bytes: int) -> ParserPool:
    """One pool per process and configuration: every app built in a process (tests build many)
    shares its children, which end with the process."""
    key = (size, timeout_s, memory_bytes)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = ParserPool(size, timeout_s, memory_bytes)
        return _shared[key]
