"""The ``qfleet`` command: ``up``, ``worker``, ``api``, ``keys``, ``health`` and ``demo``."""

from __future__ import annotations

import getpass
import json
import os
import secrets
import shlex
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer

from .audit import audit
from .settings import Settings

if TYPE_CHECKING:
    from .stack import Stack
from .store import Store, connect

cli = typer.Typer(help="qfleet: a quantum job-batching service for training loops.", no_args_is_help=True)
keys_cli = typer.Typer(help="Manage tenants' API keys.", no_args_is_help=True)
cli.add_typer(keys_cli, name="keys")


def app_from_env():  # type: ignore[no-untyped-def]
    """uvicorn factory: ``uvicorn qfleet_server.cli:app_from_env --factory``."""
    from .app import create_app
    from .logs import configure

    settings = Settings()
    configure(settings.log_json, settings.log_level)
    return create_app(settings)


def _start_stack(host: str, port: int, workers: int) -> Stack:
    """Start a local stack on QFLEET_REDIS_URL, or on a private redis-server; exit 1 with the reason."""
    from .stack import Stack, StackError

    stack = Stack(host=host, port=port, workers=workers, redis_url=os.environ.get("QFLEET_REDIS_URL") or None)
    try:
        return stack.start()
    except StackError as exc:
        stack.stop()
        typer.echo(f"qfleet: {exc}", err=True)
        raise typer.Exit(1) from None


def state_path() -> Path:
    """Where ``qfleet up`` records its stack for this user: ``$XDG_STATE_HOME/qfleet/stack.json``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "qfleet" / "stack.json"


def write_state(record: dict[str, Any]) -> Path:
    """Write the record readable by this user only (it holds the Redis password and an admin key)."""
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)
    return path


def read_state() -> dict[str, Any] | None:
    try:
        record = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def masked(url: str) -> str:
    """A Redis URL with its password hidden, for messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _fail(message: str) -> typer.Exit:
    typer.echo(f"qfleet: {message}", err=True)
    return typer.Exit(1)


def cli_settings() -> Settings:
    """Settings for ``keys``, ``worker`` and ``api``: QFLEET_REDIS_URL when set, else the stack that
    ``qfleet up`` recorded; Redis must answer. Anything missing exits with one line saying what to set."""
    from pydantic import ValidationError

    hint = "set QFLEET_REDIS_URL=redis://:PASSWORD@HOST:PORT/0 (or start a local stack with `qfleet up`)"
    try:
        if os.environ.get("QFLEET_REDIS_URL") or os.environ.get("QFLEET_REDIS_SENTINELS"):
            settings = Settings()
        else:
            state = read_state()
            if state is None or not state.get("redis_url"):
                raise _fail(
                    f"no Redis to use: QFLEET_REDIS_URL is unset and no stack is recorded in {state_path()}; {hint}"
                )
            from qfleet_server.worker.main import pid_running

            if not pid_running(int(state.get("pid", 0))):
                raise _fail(f"the stack recorded in {state_path()} (pid {state.get('pid')}) is not running; {hint}")
            settings = Settings(redis_url=state["redis_url"])
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _fail(f"bad setting {'.'.join(str(p) for p in first['loc']) or ''}: {first['msg']}") from None
    try:
        connect(settings).ping()
    except Exception as exc:
        where = settings.redis_sentinels or masked(settings.redis_url)
        raise _fail(f"cannot reach Redis at {where} ({type(exc).__name__}: {exc}); {hint}") from None
    return settings


@cli.command()
def up(
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    host: Annotated[str, typer.Option(help="API address.")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(help="Number of warm worker processes.")] = 2,
) -> None:
    """Start Redis (unless QFLEET_REDIS_URL is set), the API and N workers in the foreground.
    A child that dies is started again (with backoff); Ctrl-C or SIGTERM stops all of it."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stack = _start_stack(host=host, port=port, workers=workers)
    stack.say = lambda line: typer.echo(line, err=True)
    assert stack.redis_url
    path = write_state(
        {
            "pid": os.getpid(),
            "url": stack.url,
            "redis_url": stack.redis_url,
            "api_key": stack.api_key,
            "log_dir": str(stack.log_dir),
        }
    )
    typer.echo(
        f"qfleet is up at {stack.url} with {workers} workers (redis {masked(stack.redis_url)}, logs {stack.log_dir})"
    )
    typer.echo(f"dev API key: {stack.api_key}")
    typer.echo(f"# for other shells (`qfleet keys` and `qfleet worker` read {path} themselves):")
    typer.echo(f"export QFLEET_URL={shlex.quote(stack.url)}")
    typer.echo(f"export QFLEET_API_KEY={shlex.quote(stack.api_key)}")
    typer.echo(f"export QFLEET_REDIS_URL={shlex.quote(stack.redis_url)}", nl=True)
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            stack.heal()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        if (read_state() or {}).get("pid") == os.getpid():
            path.unlink(missing_ok=True)
        typer.echo("qfleet stopped")


@cli.command()
def worker(
    backend: Annotated[
        list[str] | None, typer.Option(help="Backends to serve (repeat); default all simulators.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Worker name.")] = None,
    burst: Annotated[bool, typer.Option(help="Exit when the queues are empty.")] = False,
    verbose: bool = False,
) -> None:
    """Run one warm worker on QFLEET_REDIS_URL (or the stack `qfleet up` recorded)."""
    from qfleet_server.worker.main import run_worker

    from .logs import configure

    settings = cli_settings()
    configure(settings.log_json, "DEBUG" if verbose else settings.log_level)
    run_worker(settings, backend or None, burst=burst, name=name)


@cli.command()
def health(
    max_age: Annotated[float, typer.Option(help="Seconds since an idle worker's last heartbeat.")] = 60.0,
) -> None:
    """Exit 0 when a worker of this host (container) is alive: registered, running, heartbeating or
    holding a live lease. Compose runs it as each worker container's healthcheck."""
    from qfleet_server.worker.main import local_worker_problem

    problem = local_worker_problem(cli_settings(), max_age)
    if problem:
        raise _fail(problem)
    typer.echo("ok")


@cli.command()
def api(
    port: Annotated[int, typer.Option()] = 8000,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
) -> None:
    """Run only the API on QFLEET_REDIS_URL (or the stack `qfleet up` recorded)."""
    import uvicorn

    os.environ["QFLEET_REDIS_URL"] = cli_settings().redis_url  # the factory reads the environment
    from .connections import UVICORN_OPTIONS

    uvicorn.run(
        "qfleet_server.cli:app_from_env", factory=True, host=host, port=port, log_level="warning", **UVICORN_OPTIONS
    )


def _store() -> Store:
    settings = cli_settings()
    return Store(connect(settings), settings.key_prefix)


def _cli_actor() -> str:
    """Who acts from a shell: the OS user and host (the CLI holds no API key)."""
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


@keys_cli.command("create")
def keys_create(
    tenant: Annotated[str, typer.Argument(help="Tenant the key belongs to.")],
    admin: Annotated[bool, typer.Option(help="Give the key the admin role.")] = False,
) -> None:
    """Create an API key; it is printed once, and only its hash is stored."""
    key = "qf_" + secrets.token_urlsafe(32)
    store = _store()
    record = store.add_api_key(key, tenant=tenant, role="admin" if admin else "user")
    audit(store, _cli_actor(), "create key", record.prefix, via="cli", tenant=tenant, role=record.role)
    typer.echo(key)


@keys_cli.command("list")
def keys_list() -> None:
    """List keys by prefix (the keys themselves are not stored)."""
    for digest, rec in sorted(_store().api_keys().items(), key=lambda kv: kv[1].created_at):
        typer.echo(f"{rec.prefix}…  tenant={rec.tenant}  role={rec.role}  sha256={digest[:16]}…")


@keys_cli.command("revoke")
def keys_revoke(prefix: Annotated[str, typer.Argument(help="The key's prefix as listed, or its full sha256.")]) -> None:
    """Revoke a key."""
    store = _store()
    gone = store.revoke_api_key(prefix)
    if gone:
        audit(store, _cli_actor(), "revoke key", prefix, via="cli", keys=gone)
    typer.echo(f"revoked {gone} key(s)")
    if not gone:
        raise typer.Exit(1)


@cli.command()
def demo(
    quick: Annotated[bool, typer.Option(help="A few steps only, one seed and one learning rate (CI).")] = False,
    backend: Annotated[
        str, typer.Option(help="Backend for the quantum adapter; wukong72 runs a smaller batch with shots.")
    ] = "aer",
    out: Annotated[Path, typer.Option(help="Folder for the results table, raw runs and plots.")] = Path("demo-results"),
    workers: Annotated[int, typer.Option()] = 2,
    url: Annotated[str | None, typer.Option(help="Use a running service instead of starting one.")] = None,
) -> None:
    """The main job: pretrain a small language model, then fine-tune it with LoRA and with a
    QTHA-style quantum adapter whose circuits run through qfleet; print and save the comparison."""
    from dataclasses import replace

    from qfleet_server.examples.adapter.main import Config, run

    from .stack import free_port

    config = replace(Config.quick() if quick else Config(), backend=backend)
    device = backend not in ("aer", "lightning")  # shots and parameter shift, not exact and adjoint
    if device:
        config = config.for_device()
    if url:
        raise typer.Exit(run(url, os.environ.get("QFLEET_API_KEY", ""), config, out))
    stack = _start_stack(host="127.0.0.1", port=free_port(), workers=workers)
    typer.echo(f"qfleet is up at {stack.url} with {workers} workers")
    try:
        code = run(stack.url, stack.api_key, config, out)
    finally:
        stack.stop()
    raise typer.Exit(code)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
