"""The client is thin: it imports without the server's dependencies, and its public names are locked."""

import subprocess
import sys
import textwrap

import qfleet


def test_public_names_are_locked() -> None:
    assert sorted(qfleet.__all__) == [
        "APIError",
        "AsyncClient",
        "AsyncJob",
        "AuthError",
        "Client",
        "InvalidRequestError",
        "Job",
        "JobCancelledError",
        "JobFailedError",
        "JobResult",
        "JobTimeoutError",
        "NotFoundError",
        "PubResult",
        "QfleetError",
        "RateLimitedError",
        "ServerError",
        "__version__",
    ]


def test_client_imports_without_server_dependencies() -> None:
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"fastapi", "redis", "rq", "qiskit_aer", "qiskit", "uvicorn", "service", "worker"}:
                    raise ImportError(f"blocked: {name}")
        sys.meta_path.insert(0, Block())
        import qfleet
        from qfleet import Client, AsyncClient, InvalidRequestError
        from qfleet._base import encode_pub
        pub = encode_pub(('OPENQASM 3.0; qubit[1] q;', 'Z', [[0.1]]))
        assert pub.circuit.format == 'qasm3' and pub.observables == 'Z'
        assert issubclass(InvalidRequestError, ValueError)
        print('ok', sorted(m for m in sys.modules if m.split('.')[0] in {'fastapi','redis','rq','qiskit_aer','qiskit'}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok []"
