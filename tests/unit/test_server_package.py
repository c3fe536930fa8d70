"""The server installs one top-level package, qfleet_server, from the project's source folders
(service/, worker/, examples/, bench/): nothing named ``service`` or ``worker`` lands in
site-packages, where it would collide with other projects' modules."""

import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {
    "service": "qfleet_server",
    "worker": "qfleet_server.worker",
    "examples": "qfleet_server.examples",
    "bench": "qfleet_server.bench",
}


def setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_source_package_is_listed() -> None:
    config = setuptools_config()
    assert config["package-dir"] == {name: folder for folder, name in SOURCES.items()}
    found = set()
    for folder, name in SOURCES.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            if "__pycache__" not in rel:
                found.add(".".join((name, *rel)))
    assert found == set(config["packages"])


def test_no_source_imports_the_folder_names() -> None:
    """Modules import each other as qfleet_server.*: a module imported under two names runs twice."""
    bad = []
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                words = line.split()
                if len(words) > 1 and words[0] in ("from", "import") and words[1].split(".")[0] in SOURCES:
                    bad.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert bad == []


def test_wheel_holds_one_top_level_package(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("qfleet_server-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"qfleet_server"}
    for needed in (
        "qfleet_server/cli.py",
        "qfleet_server/worker/runner.py",
        "qfleet_server/examples/adapter/main.py",
        "qfleet_server/bench/workloads.py",
        "qfleet_server/devices/wukong72_calibration.json",
    ):
        assert needed in names
    assert any(n.startswith("qfleet_server/dashboard/templates/") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "qfleet = qfleet_server.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
