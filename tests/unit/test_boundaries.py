"""The house's walls: the worker loads no API code, and RQ's entry points resolve."""

import importlib
import subprocess
import sys

from qfleet_server import queueing


def test_worker_loads_neither_fastapi_nor_the_pub_validator() -> None:
    code = (
        "import sys, qfleet_server.worker.runner, qfleet_server.worker.main; "
        "bad = [m for m in ('fastapi', 'starlette', 'qfleet_server.pubs', 'qfleet_server.jobs', 'qfleet_server.planner', "
        "'qfleet_server.app', 'qiskit_qasm3_import') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_rq_entry_points_resolve_to_the_worker_functions() -> None:
    for dotted in (queueing.TASK_FUNCTION, queueing.FAILURE_CALLBACK):
        module, name = dotted.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), name))


def test_only_the_queue_boundary_imports_rq() -> None:
    out = subprocess.run(
        ["grep", "-rlE", r"^\s*(from|import) rq\b", "service", "worker"], capture_output=True, text=True
    )
    assert sorted(out.stdout.split()) == ["service/queueing.py"]


def test_only_the_store_and_the_queue_boundary_touch_the_redis_client() -> None:
    out = subprocess.run(["grep", "-rlE", r"store\.redis\b", "service", "worker"], capture_output=True, text=True)
    assert all(f == "service/queueing.py" or f.startswith("service/store/") for f in out.stdout.split())


def test_the_cli_loads_no_numpy_before_a_worker_sets_its_thread_counts() -> None:
    # `qfleet worker` sets OMP/OPENBLAS thread counts in run_worker, after qfleet_server.cli is
    # imported: numpy loaded earlier would size its BLAS pool to every core in every worker
    code = "import sys, qfleet_server.cli; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
