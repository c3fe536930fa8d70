"""The ``qfleet`` command: ``up``, ``worker``, ``api``, ``keys`` and ``demo``."""

from __future__ import annotations

import os
import secrets
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .settings import Settings

if TYPE_CHECKING:
    from .stack import Stack
from .store import Store, connect

cli = typer.Typer(help="qfleet: a quantum job-batching service for training loops.", no_args_is_help=True)
keys_cli = typer.Typer(help="Manage tenants' API keys.", no_args_is_help=True)
cli.add_typer(keys_cli, name="keys")


def app_from_env():  # type: ignore[no-untyped-def]
    """uvicorn factory: ``uvicorn service.cli:app_from_env --factory``."""
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


@cli.command()
def up(
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    host: Annotated[str, typer.Option(help="API address.")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(help="Number of warm worker processes.")] = 2,
) -> None:
    """Start Redis (unless QFLEET_REDIS_URL is set), the API and N workers in the foreground.
    Ctrl-C or SIGTERM stops all of it."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stack = _start_stack(host=host, port=port, workers=workers)
    typer.echo(f"qfleet is up at {stack.url} with {workers} workers (redis {stack.redis_url}, logs {stack.log_dir})")
    typer.echo(f"dev API key: {stack.api_key}")
    try:
        while not stop.wait(0.5):
            dead = [n for n, p in stack.procs.items() if p.poll() is not None]
            if dead:
                typer.echo(f"qfleet: {', '.join(dead)} exited; stopping (logs in {stack.log_dir})", err=True)
                break
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
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
    """Run one warm worker (needs QFLEET_REDIS_URL)."""
    from worker.main import run_worker

    from .logs import configure

    settings = Settings()
    configure(settings.log_json, "DEBUG" if verbose else settings.log_level)
    run_worker(settings, backend or None, burst=burst, name=name)


@cli.command()
def api(
    port: Annotated[int, typer.Option()] = 8000,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
) -> None:
    """Run only the API (needs QFLEET_REDIS_URL)."""
    import uvicorn

    uvicorn.run("service.cli:app_from_env", factory=True, host=host, port=port, log_level="warning")


def _store() -> Store:
    settings = Settings()
    return Store(connect(settings), settings.key_prefix)


@keys_cli.command("create")
def keys_create(
    tenant: Annotated[str, typer.Argument(help="Tenant the key belongs to.")],
    admin: Annotated[bool, typer.Option(help="Give the key the admin role.")] = False,
) -> None:
    """Create an API key; it is printed once, and only its hash is stored."""
    key = "qf_" + secrets.token_urlsafe(32)
    _store().add_api_key(key, tenant=tenant, role="admin" if admin else "user")
    typer.echo(key)


@keys_cli.command("list")
def keys_list() -> None:
    """List keys by prefix (the keys themselves are not stored)."""
    for digest, rec in sorted(_store().api_keys().items(), key=lambda kv: kv[1].created_at):
        typer.echo(f"{rec.prefix}…  tenant={rec.tenant}  role={rec.role}  sha256={digest[:16]}…")


@keys_cli.command("revoke")
def keys_revoke(prefix: Annotated[str, typer.Argument(help="The key's prefix as listed, or its full sha256.")]) -> None:
    """Revoke a key."""
    gone = _store().revoke_api_key(prefix)
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

    from examples.adapter.main import Config, run

    from .stack import free_port

    config = replace(Config.quick() if quick else Config(), backend=backend)
    device = backend not in ("aer", "lightning")  # shots and parameter shift, not exact and adjoint
    if device:
        config = config.for_device()
    if url:
        raise typer.Exit(run(url, os.environ.get("QFLEET_API_KEY", ""), config, out))
    if device:
        # admission prices a row with its whole parameter-shift gradient (41 circuits, each of the
        # 4 Z observables a run) at ~8.6 s on wukong72, over the 5 s default; it takes ~1.7 s here
        os.environ.setdefault("QFLEET_TENANT_MAX_CIRCUIT_SECONDS", "60")
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
