"""``DashboardServer``: a starlette app behind the guard, served by uvicorn in a thread."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
from collections.abc import Sequence
from types import TracebackType

import h11
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import PollinateError
from ._auth import SECURITY_HEADERS, Guard, Keys, allowed_hosts
from ._pages import STATIC_DIR

__all__ = ["DashboardServer"]

log = logging.getLogger("pollinate.dashboard")
_STOP_TIMEOUT_S = 5
"""Seconds open requests get to finish when the server stops."""
_MAX_CONNECTIONS = 64
"""Open connections at most: more are closed at once (the process is a link or a run)."""
_HEADER_TIMEOUT_S = 10.0
"""Seconds a connection gets to send a whole request, from its opening or its last answer."""
_KEEP_ALIVE_S = 5


class DashboardServer:
    """Serves ``routes`` (plus ``/login`` and ``/static``) on ``host:port`` in a daemon thread.

    Every route is served under the server's secret path prefix (``url`` ends with it), so
    templates write links as ``{{ root }}/...``. ``port=0`` takes a free port. ``login_url``
    is the URL to open: it carries the server's access token, which a browser trades for a
    session cookie. Use as a context manager, or
    ``start()`` and ``stop()``.
    """

    def __init__(
        self,
        routes: Sequence[BaseRoute],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        title: str = "pollinate",
    ) -> None:
        self.host = host
        self._socket = _bind(host, port)
        self.port: int = self._socket.getsockname()[1]
        self.keys = Keys()
        self.app = _make_app(routes, self.keys, host, title)
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            log_level="warning",
            lifespan="off",
            http=_BoundedH11,
            backlog=_MAX_CONNECTIONS,  # asyncio accepts up to this many per turn, cap or not
            timeout_keep_alive=_KEEP_ALIVE_S,
            timeout_graceful_shutdown=_STOP_TIMEOUT_S,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            daemon=True,
            name="pollinate-dashboard",
        )
        if not _is_loopback(host):
            log.warning(
                "the dashboard listens on %s: it is reachable from the network, and its "
                "login token and session cookie cross it in plain HTTP; to watch from another "
                "machine, keep it on 127.0.0.1 and use an SSH tunnel instead "
                "(ssh -L %d:127.0.0.1:%d THIS_HOST)",
                host,
                self.port,
                self.port,
            )

    @property
    def url(self) -> str:
        """The dashboard's URL, ``http://127.0.0.1:PORT/d/<secret prefix>``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.keys.prefix}"

    @property
    def login_url(self) -> str:
        """The URL that logs a browser in: the base URL and the access token."""
        return f"{self.url}/login?token={self.keys.token}"

    def start(self) -> None:
        """Serve in the background; returns once the server accepts connections."""
        self._thread.start()
        ready = threading.Event()
        while not self._server.started and self._thread.is_alive():
            ready.wait(0.02)
        if not self._server.started:
            raise PollinateError(f"the dashboard could not start on {self.url}")

    def stop(self) -> None:
        """Stop serving and wait for the thread (open connections are closed)."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(_STOP_TIMEOUT_S * 2)
        self._socket.close()

    def __enter__(self) -> DashboardServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _BoundedH11(H11Protocol):
    """uvicorn's HTTP/1.1 with a cap on connections and a deadline for each request.

    uvicorn has neither (its ``limit_concurrency`` answers 503 only once a request's headers
    are in): without them, half-sent requests would hold this process's file descriptors.
    """

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Serve the connection, or close it if ``_MAX_CONNECTIONS`` are open already."""
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self.connections) > _MAX_CONNECTIONS:
            transport.close()
        else:
            self._arm()

    def on_response_complete(self) -> None:
        """The next request on this connection gets its own deadline."""
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadline with the connection."""
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(_HEADER_TIMEOUT_S, self._late)

    def resume_writing(self) -> None:
        """The client reads again: a slow download that makes progress gets more time."""
        super().resume_writing()
        self._arm()

    def _late(self) -> None:
        """Close a connection whose request is late, or whose client stopped reading.

        A request whose headers and body have not all arrived is closed; so is one whose
        answers wait for a client that reads nothing (pipelined requests, never read).
        """
        if self.transport.is_closing():
            return
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
            self.transport.close()
        elif self.flow.write_paused:
            self.transport.abort()  # close() would wait for the unread answers to drain


def _make_app(routes: Sequence[BaseRoute], keys: Keys, host: str, title: str) -> Starlette:
    static = Mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app = Starlette(
        routes=[Mount(keys.prefix, routes=[*routes, static])],
        middleware=[Middleware(Guard, keys=keys, hosts=allowed_hosts(host))],
        exception_handlers={Exception: _crashed},
    )
    app.state.keys = keys
    app.state.title = title
    app.state.root = keys.prefix
    return app


async def _crashed(request: Request, err: Exception) -> Response:
    """A bug in a page: logged with its traceback (not the prefix), the browser gets one line."""
    path = request.url.path.removeprefix(request.app.state.root)
    log.error("dashboard page %s failed", path, exc_info=err)
    return PlainTextResponse(
        "The dashboard failed on this page; its log says why.\n", 500, headers=SECURITY_HEADERS
    )


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (IPv4 or IPv6), or one clear error."""
    sock: socket.socket | None = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(64)
    except OSError as err:
        if sock is not None:
            sock.close()
        raise PollinateError(
            f"the dashboard cannot listen on {host}:{port}: {err.strerror or err}; "
            "choose another --port (0 takes a free one)"
        ) from err
    sock.setblocking(False)
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
