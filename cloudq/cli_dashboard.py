"""``cloudq dashboard``: serve the web dashboard (``cloudq/dashboard``) with uvicorn.

The Starlette stack is the ``cloudq[dashboard]`` extra: its absence is one line naming it. The
socket is bound here, before uvicorn starts, so ``--port 0`` prints the port it got.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import click

from .registry import extra_for, require_extra

TOKEN_ENV = "CLOUDQ_DASHBOARD_TOKEN"


def register(
    main: click.Group,
    app_option: Callable[[Any], Any],
    load_app: Callable[[str], Any],
    user_errors: Callable[[Any], Any],
) -> None:
    """Add ``dashboard`` to ``main`` (cli.py passes its shared helpers)."""

    @main.command()
    @app_option
    @click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
    @click.option("--port", type=click.IntRange(0, 65535), default=5555, show_default=True, help="0: any free port.")
    @click.option(
        "--token",
        envvar=TOKEN_ENV,
        show_envvar=True,
        help="Enables redrive, purge and revoke for whoever logs in with it; without it the dashboard only shows.",
    )
    @click.option("--read-only", is_flag=True, help="Only show, even with a token.")
    @click.option("-l", "--loglevel", default="warning", show_default=True, help="uvicorn's log level.")
    @user_errors
    def dashboard(app_path: str, host: str, port: int, token: str | None, read_only: bool, loglevel: str) -> None:
        """Serve a web dashboard of the app's queues, tasks, dead letters and workers."""
        require_extra("dashboard", "cloudq dashboard", extra_for("dashboard"))
        import uvicorn

        from .dashboard.app import create_app

        app = load_app(app_path)
        web = create_app(app, token=token or None, read_only=read_only)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        mode = "read-only" if read_only else ("actions need the token" if token else "view only: no token")
        click.echo(f"cloudq dashboard: http://{shown}:{bound}/ ({mode})", nl=True)
        if host not in ("127.0.0.1", "localhost", "::1"):
            click.echo(f"warning: listening on {host}, reachable from other machines; serve it behind HTTPS", err=True)
        config = uvicorn.Config(web, log_level=loglevel.lower(), access_log=False, server_header=False)
        uvicorn.Server(config).run(sockets=[sock])
