"""Who may see the dashboard: a token login, a signed session cookie, Host and CSRF checks.

Every page lives under a secret path prefix (``/d/<128 random bits>``): browsers send a
cookie to every port of a host, so the cookie's Path is that prefix, and a server on another
port of 127.0.0.1 never gets it. The server makes one random access token;
``GET PREFIX/login?token=...`` turns it into an HttpOnly, SameSite=Strict session cookie.
The cookie is a random session id and its HMAC under a per-server key, so checking it needs
no table and every comparison is constant-time; the session's CSRF token is an HMAC of the
id too. A Host header other than the bound host or a loopback name is refused (DNS
rebinding); a POST needs the CSRF token and, when the browser sends an Origin, the
dashboard's own (host and port).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterable

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

__all__ = ["Guard", "Keys", "SECURITY_HEADERS", "SERVER_ID_HEADER", "allowed_hosts", "csrf_ok"]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; frame-src 'none'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
SERVER_ID_HEADER = "X-Pollinate-Dashboard"
"""Names the server in its answers to a session: live.js takes a fragment only with its page's."""
_OPEN_LOGIN_URL = (
    "Open the login URL that `pollinate dashboard` (or `pollinate run --dashboard`, "
    "`pollinate link --dashboard`) printed when it started: it ends in /login?token=...\n"
)
_NOT_LOGGED_IN = "Not logged in. " + _OPEN_LOGIN_URL
_NOT_HERE = "No dashboard page at this address. " + _OPEN_LOGIN_URL


class Keys:
    """The server's secrets: its path prefix, its login URL's access token, its session key.

    The session cookie's name is random too: browsers keep cookies per host, not per
    port, so a name another server on this host could guess (say, from the port) would let
    it set a cookie of that name that shadows the real one and logs the operator out.
    """

    def __init__(self) -> None:
        self.prefix = "/d/" + secrets.token_hex(16)
        self.server_id = secrets.token_hex(16)
        self.token = secrets.token_urlsafe(32)
        self.cookie = f"pollinate_{secrets.token_hex(8)}"
        self._key = secrets.token_bytes(32)

    def token_ok(self, given: str) -> bool:
        """Whether ``given`` is the access token (constant-time)."""
        return hmac.compare_digest(given.encode(), self.token.encode())

    def new_session(self) -> str:
        """A fresh session cookie value: ``<id>.<signature>``."""
        session = secrets.token_urlsafe(24)
        return f"{session}.{self._sign('session', session)}"

    def session_of(self, cookie: str | None) -> str | None:
        """The session id a cookie proves, or None for a missing or forged one."""
        session, _, signature = (cookie or "").partition(".")
        if not session or not hmac.compare_digest(
            signature.encode(), self._sign("session", session).encode()
        ):
            return None
        return session

    def csrf(self, session: str) -> str:
        """The CSRF token of a session."""
        return self._sign("csrf", session)

    def csrf_ok(self, session: str, given: str) -> bool:
        """Whether ``given`` is that session's CSRF token (constant-time)."""
        return hmac.compare_digest(given.encode(), self.csrf(session).encode())

    def _sign(self, purpose: str, value: str) -> str:
        return hmac.new(self._key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def allowed_hosts(host: str) -> frozenset[str]:
    """Host header names that reach this server: the bound host and the loopback names.

    Bound to every interface (0.0.0.0, ::), the machine's own names and addresses too.
    """
    names = [host, *LOOPBACK_NAMES]
    if host in ("0.0.0.0", "::", ""):
        names.extend(_own_names())
    return frozenset(name.strip("[]").lower() for name in names)


def _own_names() -> list[str]:
    """The machine's host name, its fully qualified name, and the addresses they resolve to."""
    names = [socket.gethostname(), socket.getfqdn()]
    for name in list(names):
        try:
            names.extend(str(info[4][0]) for info in socket.getaddrinfo(name, None))
        except OSError:
            continue
    return names


def _host_name(header: str) -> str:
    """The name in a Host header, without its port: ``[::1]:80`` -> ``::1``."""
    if header.startswith("["):
        return header[1:].partition("]")[0].lower()
    return header.rpartition(":")[0].lower() if header.count(":") == 1 else header.lower()


class Guard(BaseHTTPMiddleware):
    """Checks every request (Host, login, session, POST origin) and adds the security headers."""

    def __init__(self, app: object, keys: Keys, hosts: Iterable[str]) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self.keys = keys
        self.hosts = frozenset(hosts)

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Refuse, log in, or pass the request on; every answer gets the security headers.

        Only a session's answers name the server: whoever takes its port after it stopped
        cannot learn the id and so cannot feed an open tab.
        """
        response = self._check(request)
        if response is None:
            response = await call_next(request)
            response.headers[SERVER_ID_HEADER] = self.keys.server_id
        response.headers.update(SECURITY_HEADERS)
        return response

    def _check(self, request: Request) -> Response | None:
        if _host_name(request.headers.get("host", "")) not in self.hosts:
            return PlainTextResponse("Bad Host header: open the dashboard by its URL.\n", 400)
        path, prefix = request.url.path, self.keys.prefix
        if path != prefix and not path.startswith(prefix + "/"):
            return PlainTextResponse(_NOT_HERE, 404)
        if path == prefix + "/login":
            return self._login(request)
        session = self.keys.session_of(request.cookies.get(self.keys.cookie))
        if session is None:
            return PlainTextResponse(_NOT_LOGGED_IN, 401)
        request.state.session = session
        request.state.csrf = self.keys.csrf(session)
        if request.method not in ("GET", "HEAD", "POST"):
            return PlainTextResponse("Method not allowed.\n", 405)
        if request.method == "POST" and not self._same_origin(request):
            return PlainTextResponse("Cross-origin request refused.\n", 403)
        return None

    def _login(self, request: Request) -> Response:
        if not self.keys.token_ok(request.query_params.get("token", "")):
            return PlainTextResponse("Wrong or missing login token.\n" + _NOT_LOGGED_IN, 401)
        prefix = self.keys.prefix
        response = RedirectResponse(prefix + "/", status_code=303)
        response.set_cookie(
            self.keys.cookie, self.keys.new_session(), httponly=True, samesite="strict", path=prefix
        )
        return response

    def _same_origin(self, request: Request) -> bool:
        """No sign of another site: Sec-Fetch-Site and Origin, where the browser sends them.

        Under ``Referrer-Policy: no-referrer`` a browser sends ``Origin: null`` with its own
        forms; the CSRF token and the SameSite cookie still hold then. Another Origin must be
        this server's: the Host it was asked by, port included (another port is another site's).
        """
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin", "null")
        if origin == "null":
            return True
        scheme, _, rest = origin.partition("://")
        return scheme == "http" and rest.lower() == request.headers.get("host", "").lower()


async def csrf_ok(request: Request) -> bool:
    """Whether a POST carries its session's CSRF token (form field ``csrf`` or X-CSRF-Token)."""
    given = request.headers.get("x-csrf-token")
    if given is None:
        form = await request.form()
        value = form.get("csrf")
        given = value if isinstance(value, str) else ""
    return bool(request.state.session) and request.app.state.keys.csrf_ok(
        request.state.session, given
    )
