"""https through a real proxy's CONNECT tunnel (``HTTPS_PROXY``, ``proxy=``), and a custom CA.

The fake server serves https on loopback with a throwaway certificate of a throwaway CA
(trustme); the client trusts that CA through ``verify_tls=<ssl.SSLContext>``, as a user behind
a corporate proxy that inspects TLS trusts the proxy's CA. The proxy is Debian's tinyproxy
(tests/tinyproxy_server.py), not one of ours.

How aiohttp picks a proxy (aiohttp/client.py ``_request``, helpers.py
``get_env_proxy_for_url``): the session's ``proxy=`` is used for every request, whatever the
host and whatever ``NO_PROXY`` says; without one, and only with ``trust_env=True``, it asks
``urllib.request.proxy_bypass(host)``, which on Linux reads ``no_proxy``/``NO_PROXY`` only
(loopback is *not* bypassed by default), then takes the proxy for the URL's scheme from
``getproxies()`` (``https_proxy`` before ``HTTPS_PROXY``: the lowercase name wins, so the
tests clear both). An https URL through an http proxy is a ``CONNECT host:port`` tunnel, with
the TLS handshake to the server inside it: the proxy sees the host and port, never the path,
the headers or the token.
"""

from __future__ import annotations

import base64
import logging
import ssl
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING

import aiohttp
import pytest
import pytest_asyncio
import trustme
from server_process import free_port

from commbox_async import AsyncCommbox, CommboxConnectionError, InvalidArgumentError, Retries
from commbox_async.testing import FakeCommbox, fast_client_settings

if TYPE_CHECKING:
    from tinyproxy_server import TinyProxy

# The start_tinyproxy fixture (it skips without the binary, and fails so under CI=true).
pytest_plugins = ["tinyproxy_server"]

TOKEN = "proxy-connect-secret-7f3a9c"
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A throwaway CA: it signs the server's certificate, and the client trusts it only."""
    return trustme.CA()


@pytest.fixture
def trusting(ca: trustme.CA) -> ssl.SSLContext:
    """The client's context: the default checks (hostname, chain), with the test CA only."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No proxy variable of the machine's (either case) leaks into a test."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    yield monkeypatch


@pytest_asyncio.fixture
async def tls_server(ca: trustme.CA) -> AsyncIterator[FakeCommbox]:
    """The fake server over https on 127.0.0.1, its certificate for IP 127.0.0.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    async with FakeCommbox(token=TOKEN, ssl_context=context) as server:
        yield server


def client(server: FakeCommbox, **settings: object) -> AsyncCommbox:
    return AsyncCommbox(token=TOKEN, base_url=server.url, **fast_client_settings(**settings))


def tunnels(proxy: TinyProxy) -> list[str]:
    return [request for request in proxy.requests() if request.startswith("CONNECT ")]


# --- verify_tls=<ssl.SSLContext>: a custom CA ---------------------------------------------------


async def test_verify_tls_takes_a_context_that_trusts_a_custom_ca(
    tls_server: FakeCommbox, trusting: ssl.SSLContext
) -> None:
    """The default client refuses the test CA's certificate; a context that trusts it works."""
    assert tls_server.url.startswith("https://127.0.0.1:")
    async with client(tls_server, retries=Retries(tries=1)) as commbox:
        with pytest.raises(CommboxConnectionError):
            await commbox.get_user_objects(1)
    assert tls_server.count() == 0  # no request got past the handshake
    async with client(tls_server, verify_tls=trusting) as commbox:
        page = await commbox.get_user_objects(1)
    assert len(page.data) == 10
    assert tls_server.count("ok", identity_id=1) == 1


@pytest.mark.parametrize("value", ["/etc/ssl/certs/ca.pem", 1, None], ids=repr)
def test_verify_tls_takes_a_bool_or_a_context_only(value: object) -> None:
    """A CA's path (a common guess) or a number is refused when the client is built."""
    with pytest.raises(InvalidArgumentError, match=r"verify_tls must be a bool or an ssl\."):
        AsyncCommbox(token=TOKEN, base_url="https://api.commbox.io", verify_tls=value)  # type: ignore[arg-type]


async def test_a_context_that_checks_nothing_logs_the_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A context with CERT_NONE is verification off, and says so as verify_tls=False does."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    caplog.set_level(logging.WARNING, logger="commbox_async")
    async with AsyncCommbox(token=TOKEN, base_url="https://api.commbox.io", verify_tls=context):
        pass
    assert "TLS certificate verification is OFF" in caplog.text
    assert TOKEN not in caplog.text
    caplog.clear()
    async with AsyncCommbox(
        token=TOKEN, base_url="https://api.commbox.io", verify_tls=ssl.create_default_context()
    ):
        pass
    assert "verification is OFF" not in caplog.text


async def test_a_context_that_checks_no_host_name_logs_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """check_hostname=False with CERT_REQUIRED accepts any certificate a trusted CA signed,
    for any host: as good as off against anyone who can get such a certificate, so it warns."""
    context = ssl.create_default_context()
    context.check_hostname = False
    assert context.verify_mode == ssl.CERT_REQUIRED
    caplog.set_level(logging.WARNING, logger="commbox_async")
    async with AsyncCommbox(token=TOKEN, base_url="https://api.commbox.io", verify_tls=context):
        pass
    assert "TLS host name checking is OFF for https://api.commbox.io" in caplog.text
    assert "any host" in caplog.text
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    "verify_tls", [False, ssl.create_default_context()], ids=["False", "SSLContext"]
)
async def test_verify_tls_with_the_callers_session_is_refused(verify_tls: object) -> None:
    """The caller's session brings its own connector, whose TLS settings verify_tls cannot
    change: refused when the client is built, as proxy= is, rather than ignored (and a
    verify_tls=False must not log "verification is OFF" for a session that does verify)."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(InvalidArgumentError) as caught:
            AsyncCommbox(
                token=TOKEN, base_url="https://api.commbox.io", session=session,
                verify_tls=verify_tls,  # type: ignore[arg-type]
            )  # fmt: skip
        assert "verify_tls= applies to the owned session" in str(caught.value)
        assert TOKEN not in str(caught.value)
        # The default (True) goes with session=: the session's own settings apply.
        async with AsyncCommbox(token=TOKEN, base_url="https://api.commbox.io", session=session):
            pass
        assert not session.closed


# --- through tinyproxy's CONNECT tunnel ----------------------------------------------------------


async def test_https_proxy_from_the_environment_tunnels_by_connect(
    tls_server: FakeCommbox,
    trusting: ssl.SSLContext,
    start_tinyproxy: Callable[..., TinyProxy],
    clean_environment: pytest.MonkeyPatch,
) -> None:
    """HTTPS_PROXY with trust_env=True: every request goes through a CONNECT tunnel to the
    server's port; the proxy's log has the host and port only, never the token or a path."""
    proxy = start_tinyproxy(connect_ports=[tls_server.port])
    clean_environment.setenv("HTTPS_PROXY", proxy.url)
    async with client(tls_server, verify_tls=trusting) as commbox:
        await commbox.get_user_objects(1)  # trust_env off (the default): straight there
    assert proxy.requests() == []
    async with client(tls_server, verify_tls=trusting, trust_env=True) as commbox:
        first = await commbox.get_user_objects(2)
        second = await commbox.get_user_objects(3)
    assert (len(first.data), len(second.data)) == (10, 10)
    assert tls_server.count("ok") == 3
    requests = proxy.requests()
    assert requests, "nothing went through the proxy"
    assert set(requests) == {f"CONNECT 127.0.0.1:{tls_server.port}"}
    log = proxy.log()
    assert TOKEN not in log and "/v2/" not in log


async def test_proxy_argument_tunnels_https_by_connect_whatever_no_proxy_says(
    tls_server: FakeCommbox,
    trusting: ssl.SSLContext,
    start_tinyproxy: Callable[..., TinyProxy],
    clean_environment: pytest.MonkeyPatch,
) -> None:
    """proxy= with an https base URL is a CONNECT tunnel too; aiohttp uses the session's
    proxy for every request, so NO_PROXY (read with trust_env=True) does not bypass it."""
    proxy = start_tinyproxy(connect_ports=[tls_server.port])
    clean_environment.setenv("NO_PROXY", "127.0.0.1")
    async with client(tls_server, verify_tls=trusting, proxy=proxy.url, trust_env=True) as cb:
        page = await cb.get_user_objects(4)
    assert len(page.data) == 10
    assert tls_server.count("ok", identity_id=4) == 1
    assert tunnels(proxy) == [f"CONNECT 127.0.0.1:{tls_server.port}"]
    assert TOKEN not in proxy.log()


async def test_no_proxy_bypasses_the_environment_proxy(
    tls_server: FakeCommbox,
    trusting: ssl.SSLContext,
    start_tinyproxy: Callable[..., TinyProxy],
    clean_environment: pytest.MonkeyPatch,
) -> None:
    """NO_PROXY covering 127.0.0.1 sends the requests straight to the server."""
    proxy = start_tinyproxy(connect_ports=[tls_server.port])
    clean_environment.setenv("HTTPS_PROXY", proxy.url)
    clean_environment.setenv("NO_PROXY", "localhost,127.0.0.1")
    async with client(tls_server, verify_tls=trusting, trust_env=True) as commbox:
        await commbox.get_user_objects(5)
    assert tls_server.count("ok", identity_id=5) == 1
    assert proxy.requests() == []


async def test_a_tunnel_the_proxy_refuses_is_a_connection_error(
    tls_server: FakeCommbox,
    trusting: ssl.SSLContext,
    start_tinyproxy: Callable[..., TinyProxy],
    clean_environment: pytest.MonkeyPatch,
) -> None:
    """A proxy whose ConnectPort list leaves out the server's port answers CONNECT 403: the
    call fails with a CommboxConnectionError that says so (could_not_connect: the server was
    never reached), without the token, and nothing reaches the server."""
    proxy = start_tinyproxy(connect_ports=[443])
    async with client(tls_server, verify_tls=trusting, proxy=proxy.url, retries=1) as commbox:
        with pytest.raises(CommboxConnectionError) as caught:
            await commbox.get_user_objects(6)
    error = caught.value
    assert "the proxy refused the tunnel: 403" in str(error)
    assert error.could_not_connect and error.reason == "proxy answered 403"
    assert TOKEN not in repr(error) and TOKEN not in str(error)
    assert tunnels(proxy) == [f"CONNECT 127.0.0.1:{tls_server.port}"]
    assert "Refused CONNECT" in proxy.log()
    assert tls_server.count() == 0


PROXY_USER, PROXY_PASSWORD = "corp-user", "proxy-pass-5d81e2"


def leaks(error: BaseException, *secrets: str) -> list[str]:
    """Where along ``error``'s cause/context chain (str, repr, traceback) any secret shows."""
    found = []
    seen: BaseException | None = error
    while seen is not None:
        texts = (str(seen), repr(seen), "".join(traceback.format_exception(seen)))
        found += [f"{type(seen).__name__}: {s}" for s in secrets for t in texts if s in t]
        seen = seen.__cause__ or seen.__context__
    return found


@pytest.fixture
def auth_proxy(
    tls_server: FakeCommbox,
    start_tinyproxy: Callable[..., TinyProxy],
    clean_environment: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> TinyProxy:
    """A tinyproxy that wants PROXY_USER's credentials (BasicAuth), tunnelling to
    ``tls_server``; every log record kept, down to DEBUG, for the tests to search."""
    caplog.set_level(logging.DEBUG)
    return start_tinyproxy(connect_ports=[tls_server.port], basic_auth=(PROXY_USER, PROXY_PASSWORD))


async def test_a_proxy_that_wants_credentials_refuses_the_tunnel_407(
    tls_server: FakeCommbox,
    trusting: ssl.SSLContext,
    auth_proxy: TinyProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A proxy with BasicAuth refuses CONNECT without credentials (407) or with wrong ones: a
    CommboxConnectionError that says so, could_not_connect, with neither the token nor the
    proxy's password (nor its base64 in Proxy-Authorization) anywhere along its chain or in
    the log."""
    proxy = auth_proxy
    wrong = "wrong-pass-0c44b7"
    with_wrong = f"http://{PROXY_USER}:{wrong}@127.0.0.1:{proxy.port}"
    secrets = (
        TOKEN, PROXY_PASSWORD, wrong,
        base64.b64encode(f"{PROXY_USER}:{wrong}".encode()).decode(),
    )  # fmt: skip
    # No credentials: 407 Proxy Authentication Required. Wrong ones: tinyproxy (1.11) answers
    # 401 Unauthorized; either way the tunnel is refused and the server never reached.
    for proxy_url, status in ((proxy.url, 407), (with_wrong, 401)):
        async with client(tls_server, verify_tls=trusting, proxy=proxy_url, retries=1) as cb:
            with pytest.raises(CommboxConnectionError) as caught:
                await cb.get_user_objects(7)
        error = caught.value
        assert f"the proxy refused the tunnel: {status}" in str(error)
        assert error.could_not_connect and error.reason == f"proxy answered {status}"
        assert leaks(error, *secrets) == []
    assert TOKEN not in proxy.log()
    assert not [s for s in secrets if s in caplog.text]
    assert tls_server.count() == 0


async def test_credentials_in_the_proxy_url_open_the_tunnel(
    tls_server: FakeCommbox,
    trusting: ssl.SSLContext,
    auth_proxy: TinyProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """http://user:pass@host:port: aiohttp sends them as Proxy-Authorization on the CONNECT,
    and the request goes through; the password is in no log line."""
    proxy = auth_proxy
    proxy_url = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}"
    async with client(tls_server, verify_tls=trusting, proxy=proxy_url) as commbox:
        page = await commbox.get_user_objects(8)
        assert PROXY_PASSWORD not in repr(commbox)
    assert len(page.data) == 10
    assert tls_server.count("ok", identity_id=8) == 1
    assert tunnels(proxy) == [f"CONNECT 127.0.0.1:{tls_server.port}"]
    assert PROXY_PASSWORD not in caplog.text and TOKEN not in caplog.text


async def test_an_unreachable_proxy_with_credentials_keeps_them_out_of_the_error(
    tls_server: FakeCommbox, trusting: ssl.SSLContext, clean_environment: pytest.MonkeyPatch
) -> None:
    """Nothing listens at the proxy's address: a connection error that says so, with the
    proxy's password nowhere along its chain (aiohttp's own error holds it in its repr)."""
    proxy_url = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{free_port()}"
    async with client(tls_server, verify_tls=trusting, proxy=proxy_url, retries=1) as commbox:
        with pytest.raises(CommboxConnectionError) as caught:
            await commbox.get_user_objects(9)
    assert caught.value.could_not_connect
    assert leaks(caught.value, PROXY_PASSWORD, TOKEN) == []
    assert tls_server.count() == 0
