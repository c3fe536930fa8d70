"""The client is thin: it imports without the server's dependencies, its public names are locked,
and its wheel carries what users' type checkers and pip need."""

import email
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import qfleet
import tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_public_names_are_locked() -> None:
    assert sorted(qfleet.__all__) == [
        "APIError",
        "AsyncClient",
        "AsyncJob",
        "AuthError",
        "Client",
        "InvalidRequestError",
        "InvalidTypeError",
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
        "TransportError",
        "__version__",
    ]


def test_client_imports_without_server_dependencies() -> None:
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"fastapi", "redis", "rq", "qiskit_aer", "qiskit", "uvicorn", "qfleet_server"}:
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


def test_wheel_ships_py_typed_and_extras_install_what_they_import(tmp_path: Path) -> None:
    source = shutil.copytree(ROOT / "client", tmp_path / "client", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    out = tmp_path / "dist"
    subprocess.run(  # the venv's setuptools, so that the build needs no network
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("qfleet-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = email.message_from_bytes(zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))))
    assert "qfleet/py.typed" in names
    assert {"qfleet/_jobs.py", "qfleet/client.py", "qfleet/errors.py", "qfleet/wire.py"} <= set(names)
    requires = meta.get_all("Requires-Dist") or []
    # qfleet.torch imports qiskit (circuits, parameters): the torch extra must bring it
    assert any(r.startswith("qiskit") and 'extra == "torch"' in r for r in requires), requires
    assert any(r.startswith("torch") and 'extra == "torch"' in r for r in requires), requires


def test_the_server_pins_a_compatible_client() -> None:
    server = tomllib.loads((ROOT / "pyproject.toml").read_text())
    client = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())
    (dep,) = [
        d for d in server["project"]["dependencies"] if d.split(">")[0].split("=")[0].split("<")[0].strip() == "qfleet"
    ]
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(dep.removeprefix("qfleet"))
    assert client["project"]["version"] in spec and "9.0" not in spec and spec  # bounded both ways
