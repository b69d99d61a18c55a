"""The dashboard server: login, sessions, Host and CSRF checks, headers, start and stop."""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import time

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pollinate.dashboard import DashboardServer, run_routes
from pollinate.dashboard._auth import allowed_hosts, csrf_ok
from pollinate.errors import PollinateError


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


async def change(request: Request) -> Response:
    return PlainTextResponse("changed" if await csrf_ok(request) else "refused", 200)


async def broken(request: Request) -> Response:
    raise RuntimeError("a bug with a secret path /home/x")


ROUTES = [Route("/", hello), Route("/change", change, methods=["POST"]), Route("/broken", broken)]


def test_without_the_cookie_every_page_is_401_and_says_how_to_log_in(client):
    test = client(ROUTES, login=False)
    for path in ("/", "/static/live.js", "/nothing"):
        answer = test.get(path)
        assert answer.status_code == 401
        assert "login URL" in answer.text


def test_login_sets_a_strict_httponly_cookie_and_redirects(client):
    test = client(ROUTES, login=False)
    answer = test.get(f"/login?token={test.server.keys.token}", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == f"{test.root}/"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert test.get("/").text == "hello"


def test_wrong_token_and_forged_cookie_are_refused(client):
    test = client(ROUTES, login=False)
    assert test.get("/login?token=wrong").status_code == 401
    assert test.get("/login").status_code == 401
    test.cookies.set(test.server.keys.cookie, "abc.def")
    assert test.get("/").status_code == 401


def test_a_session_of_another_server_is_refused(client):
    first, second = client(ROUTES), client(ROUTES, login=False)
    second.cookies.set(second.server.keys.cookie, first.cookies[first.server.keys.cookie])
    assert second.get("/").status_code == 401


def test_a_foreign_host_header_is_refused(client):
    test = client(ROUTES)
    assert test.get("/", headers={"host": "evil.example:8123"}).status_code == 400
    assert test.get("/", headers={"host": "localhost:8123"}).status_code == 200
    assert test.get("/", headers={"host": "[::1]:8123"}).status_code == 200


def test_post_needs_the_csrf_token_and_a_same_origin(client):
    test = client(ROUTES)
    assert test.post("/change", data={"csrf": "nope"}).text == "refused"
    assert test.post("/change").text == "refused"
    token = test.server.keys.csrf(
        test.server.keys.session_of(test.cookies[test.server.keys.cookie])
    )
    assert test.post("/change", data={"csrf": token}).text == "changed"
    assert test.post("/change", headers={"x-csrf-token": token}).text == "changed"
    foreign = test.post("/change", data={"csrf": token}, headers={"origin": "http://evil.example"})
    assert foreign.status_code == 403
    cross_site = test.post(
        "/change", data={"csrf": token}, headers={"sec-fetch-site": "cross-site"}
    )
    assert cross_site.status_code == 403
    own_form = test.post("/change", data={"csrf": token}, headers={"origin": "null"})
    assert own_form.text == "changed"  # what a browser sends under Referrer-Policy no-referrer
    assert test.put("/change").status_code == 405


def test_every_answer_has_the_security_headers(client):
    test = client(ROUTES)
    for answer in (test.get("/"), test.get("/login?token=x"), test.get("/static/live.js")):
        headers = answer.headers
        policy = headers["content-security-policy"]
        assert policy.startswith("default-src 'none'; script-src 'self'")
        assert "frame-src 'none'" in policy and "unsafe" not in policy
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


def test_a_crashing_page_is_logged_and_shows_no_traceback(client, caplog):
    test = client(ROUTES, raise_errors=False)
    with caplog.at_level(logging.ERROR, logger="pollinate.dashboard"):
        answer = test.get("/broken")
    assert answer.status_code == 500
    assert "secret" not in answer.text and "Traceback" not in answer.text
    assert "dashboard page /broken failed" in caplog.text


def test_server_starts_on_a_free_port_serves_and_stops():
    with DashboardServer(ROUTES) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.port > 0
        with httpx.Client(follow_redirects=True, timeout=10) as browser:
            assert browser.get(server.login_url).text == "hello"  # logged in, sent to /
        assert httpx.get(server.url + "/", timeout=10).status_code == 401
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/", timeout=2)


def test_a_port_in_use_is_one_clear_error():
    with (
        DashboardServer(ROUTES) as server,
        pytest.raises(
            PollinateError, match=r"cannot listen on 127\.0\.0\.1:.*choose another --port"
        ),
    ):
        DashboardServer(ROUTES, port=server.port)


def test_a_network_host_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="pollinate.dashboard"):
        server = DashboardServer(ROUTES, host="0.0.0.0")
    server.stop()
    assert "reachable from the network" in caplog.text


def test_bound_to_every_interface_the_machine_s_own_name_is_a_good_host(caplog):
    hosts = allowed_hosts("0.0.0.0")
    assert socket.gethostname().lower() in hosts and "127.0.0.1" in hosts
    assert "evil.example" not in hosts
    assert allowed_hosts("127.0.0.1") == {"127.0.0.1", "localhost", "::1"}


def test_two_dashboards_on_one_machine_keep_their_own_sessions():
    with (
        DashboardServer(ROUTES) as first,
        DashboardServer(ROUTES) as second,
        httpx.Client(follow_redirects=True, timeout=10) as browser,  # one cookie jar
    ):
        assert browser.get(first.login_url).text == "hello"
        assert browser.get(second.login_url).text == "hello"
        assert browser.get(first.url + "/").text == "hello"  # still logged in to the first


def test_a_cookie_of_the_same_name_set_by_another_port_cannot_shadow_the_session():
    with DashboardServer(ROUTES) as server, httpx.Client(timeout=10) as browser:
        name = server.keys.cookie
        assert str(server.port) not in name and len(name) >= 16  # not guessable from outside
        browser.get(server.login_url)
        real = browser.cookies[name]
        # What a browser sends when another server on 127.0.0.1 set a cookie of that name
        # with Path=/: the longer path first, then the tossed one (starlette keeps the last).
        tossed = {"cookie": f"{name}={real}; {name}=x"}
        answer = httpx.get(server.url + "/", headers=tossed, timeout=10)
        assert answer.status_code == 401  # a guessed name would log the operator out like this


def test_a_cookie_with_a_non_ascii_character_is_a_plain_401(client, caplog):
    test = client(ROUTES, login=False)
    cookie = test.server.keys.cookie
    with caplog.at_level(logging.ERROR, logger="pollinate.dashboard"):
        answer = test.get("/", headers={"cookie": f"{cookie}=x.\u00e9".encode()})
    assert answer.status_code == 401 and "login URL" in answer.text
    assert "failed" not in caplog.text


def test_a_crashing_page_has_the_security_headers_too(client):
    answer = client(ROUTES, raise_errors=False).get("/broken")
    assert answer.status_code == 500
    assert answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


def test_pages_live_under_a_secret_prefix_that_scopes_the_cookie(client):
    test = client(ROUTES, login=False)
    server = test.server
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/d/[0-9a-f]{32}", server.url)
    assert server.login_url == f"{server.url}/login?token={server.keys.token}"
    prefix = server.url.partition(str(server.port))[2]
    login = test.get(f"/login?token={server.keys.token}", follow_redirects=False)
    assert login.headers["location"] == f"{prefix}/"
    assert f"Path={prefix};" in login.headers["set-cookie"] + ";"
    assert test.get("/").text == "hello"
    for outside in ("/", "/login?token=" + server.keys.token, "/d/" + "0" * 32 + "/"):
        answer = test.get("http://127.0.0.1:8123" + outside)
        assert answer.status_code == 404 and "login URL" in answer.text
        assert answer.headers["x-frame-options"] == "DENY"


def test_a_post_from_another_port_of_the_same_host_is_refused(client):
    test = client(ROUTES)
    keys = test.server.keys
    token = keys.csrf(keys.session_of(test.cookies[keys.cookie]))
    other = test.post("/change", data={"csrf": token}, headers={"origin": "http://127.0.0.1:9"})
    assert other.status_code == 403
    own = test.post("/change", data={"csrf": token}, headers={"origin": "http://127.0.0.1:8123"})
    assert own.text == "changed"


def _half_sent_request(server: DashboardServer) -> socket.socket:
    """A connection that sends part of a request's headers and then nothing."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (an end of file, or a reset: it had unread data)."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def test_a_request_whose_headers_never_end_is_closed(monkeypatch):
    monkeypatch.setattr("pollinate.dashboard._server._HEADER_TIMEOUT_S", 0.2)
    with DashboardServer(ROUTES) as server, _half_sent_request(server) as sock:
        assert _closed_by_server(sock)  # before our 30 s timeout


def test_a_client_that_never_reads_its_answers_is_cut_off(monkeypatch):
    monkeypatch.setattr("pollinate.dashboard._server._HEADER_TIMEOUT_S", 0.3)
    requests = b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 100  # pipelined, never read
    with DashboardServer(ROUTES) as server, socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        assert _cut_off(sock, requests)


def _cut_off(sock: socket.socket, requests: bytes) -> bool:
    """Send ``requests`` until the buffers fill, read nothing: whether the server aborts."""
    try:
        sock.settimeout(1.0)
        with contextlib.suppress(TimeoutError):  # the buffers are full: the server waits on us
            for _ in range(5000):
                sock.sendall(requests)
        time.sleep(1.0)
        sock.settimeout(10.0)
        while sock.recv(1 << 16):  # a server that let us be would answer every request
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    return False


def test_connections_past_the_cap_are_closed_at_once(monkeypatch):
    monkeypatch.setattr("pollinate.dashboard._server._MAX_CONNECTIONS", 3)
    with DashboardServer(ROUTES) as server:
        held = [_half_sent_request(server) for _ in range(3)]
        try:
            with _half_sent_request(server) as extra:
                assert _closed_by_server(extra)
            held[0].settimeout(0.3)
            with pytest.raises(TimeoutError):  # the first three are still served
                held[0].recv(100)
        finally:
            for sock in held:
                sock.close()


def test_logged_in_answers_carry_the_server_id_that_pages_name(make_run, client):
    test = client(run_routes(make_run()), login=False)
    assert "x-pollinate-dashboard" not in test.get("/").headers  # not to just anyone
    test.get(f"/login?token={test.server.keys.token}")
    page = test.get("/")
    server_id = page.headers["x-pollinate-dashboard"]
    assert len(server_id) == 32 and server_id == test.server.keys.server_id
    assert f'<meta name="pollinate-dashboard" content="{server_id}">' in page.text
    assert test.get("/fragment").headers["x-pollinate-dashboard"] == server_id


def test_listening_beyond_loopback_warns_to_use_an_ssh_tunnel(caplog):
    with caplog.at_level(logging.WARNING, logger="pollinate.dashboard"):
        DashboardServer(ROUTES, host="0.0.0.0").stop()
    assert "plain HTTP" in caplog.text and "ssh -L" in caplog.text
