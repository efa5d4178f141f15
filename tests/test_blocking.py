"""The blocking client: the same calls without await, from many threads, closed once, fork-aware."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from commbox_async import (
    ClientClosedError,
    FanOutProgress,
    InvalidArgumentError,
    LocalLimiter,
    NotFoundError,
    RateLimit,
    RateLimitError,
    Retries,
)
from commbox_async.blocking import Commbox
from commbox_async.testing import FakeCommbox, fast_client_settings, unread_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from waiting import until

from benchmarks.queues import ServerThread

TOKEN = "blocking-token-7d21"


@pytest.fixture
def served() -> Iterator[tuple[ServerThread, FakeCommbox]]:
    """A fake server on its own loop thread, so that the test's thread may block."""
    with ServerThread() as servers:
        yield servers, servers.start(FakeCommbox(token=TOKEN, not_found=[404404]))


@pytest.fixture
def server(served: tuple[ServerThread, FakeCommbox]) -> FakeCommbox:
    """The fake server of ``served``."""
    return served[1]


def blocking(server: FakeCommbox, **options: object) -> Commbox:
    """A blocking client for ``server`` with the fast test settings."""
    return Commbox(token=TOKEN, base_url=server.url, **fast_client_settings(**options))


def test_the_calls_answer_without_await(server: FakeCommbox) -> None:
    """get_user_objects, unread_counts and iter_user_objects return what the async ones do."""
    with blocking(server) as commbox:
        page = commbox.get_user_objects(558355)
        assert page.unread_total == unread_of(558355, 10)
        assert commbox.unread_counts([1, 2]) == {1: unread_of(1, 10), 2: unread_of(2, 10)}
        assert len(list(commbox.iter_user_objects(7, page_size=4))) == 10
        assert commbox.stats.requests >= 5


def test_errors_are_the_async_clients_own(server: FakeCommbox) -> None:
    """A 404 raises NotFoundError; a bad argument raises before any request."""
    with blocking(server) as commbox:
        with pytest.raises(NotFoundError):
            commbox.get_user_objects(404404)
        with pytest.raises(InvalidArgumentError):
            commbox.fetch_many([1], concurrency=0)
    assert server.count() == 1  # the 404 only


def test_fetch_many_yields_one_result_per_id(server: FakeCommbox) -> None:
    """Every id yields exactly one result, failures as values."""
    with blocking(server) as commbox:
        results = list(commbox.fetch_many([*range(1, 51), 404404], concurrency=8))
    assert sorted(r.identity_id for r in results) == [*range(1, 51), 404404]
    assert [r.identity_id for r in results if r.error is not None] == [404404]


def test_fetch_many_reads_ids_lazily_and_stops_at_break(server: FakeCommbox) -> None:
    """Memory stays bounded: five results read few ids, and a break stops the fan-out."""
    read = 0

    def ids() -> Iterator[int]:
        nonlocal read
        for ident in range(1, 1_000_000):
            read += 1
            yield ident

    with blocking(server) as commbox:
        results = commbox.fetch_many(ids(), concurrency=4)
        for count, _ in enumerate(results, 1):
            if count == 5:
                break
        results.close()  # type: ignore[attr-defined]  # what a break does on CPython's refcount
        read_at_stop = read
        assert commbox.get_user_objects(1).unread_total == unread_of(1, 10)  # still usable
    assert read_at_stop < 50 and read == read_at_stop  # no id read after the stop
    assert server.count() <= read + 1


def test_an_iterator_closed_inside_a_call_does_not_hang(server: FakeCommbox) -> None:
    """An abandoned iterator in a reference cycle is closed by the garbage collector in
    whichever thread collects, possibly inside another call's hold on the client's lock (here
    taken by hand, where a collection would fall): its close must not wait for that lock."""
    with blocking(server) as commbox:
        pages = commbox.iter_user_objects(5, page_size=1)
        next(pages)  # started: closing it closes its async generator on the loop
        closed = threading.Event()

        def collect_inside_a_call() -> None:
            with commbox._lock:
                pages.close()  # type: ignore[attr-defined]
            closed.set()

        worker = threading.Thread(target=collect_inside_a_call, daemon=True)
        worker.start()
        worker.join(30.0)  # (a hang guard: with a plain lock this thread never ends)
        if not closed.is_set():
            commbox._lock.release()  # a plain Lock, held for ever: free it so close() can run
            pytest.fail("closing an iterator inside a call's hold on the lock hung")
        assert commbox.get_user_objects(1).unread_total == unread_of(1, 10)


def test_many_threads_share_one_client(server: FakeCommbox) -> None:
    """Eight threads calling at once all get their pages, through one client and limiter."""
    errors: list[BaseException] = []
    totals: list[int] = []

    with blocking(server) as commbox:

        def work(first: int) -> None:
            try:
                totals.extend(
                    commbox.get_user_objects(i).unread_total for i in range(first, first + 20)
                )
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(1 + 100 * n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert commbox.stats.requests == 160
    assert errors == [] and len(totals) == 160


def test_a_closed_client_refuses_with_a_clear_error(server: FakeCommbox) -> None:
    """After close, calls raise ClientClosedError; close twice is fine; the thread has ended."""
    commbox = blocking(server)
    commbox.get_user_objects(1)
    commbox.close()
    commbox.close()
    assert commbox.closed
    assert not any(t.name == "commbox-blocking" and t.is_alive() for t in threading.enumerate())
    with pytest.raises(ClientClosedError, match="closed; create a new one"):
        commbox.get_user_objects(1)
    with pytest.raises(ClientClosedError):
        list(commbox.fetch_many([1]))
    assert commbox.stats.requests == 1  # still readable


def test_a_call_waiting_at_close_raises_client_closed(
    served: tuple[ServerThread, FakeCommbox],
) -> None:
    """A call blocked in another thread when the client closes raises ClientClosedError."""
    servers, server = served
    server.latency = 60.0  # the answer stalls until the server stops
    outcome: list[BaseException] = []
    commbox = blocking(server)

    def call() -> None:
        try:
            commbox.get_user_objects(1)
        except BaseException as exc:  # asserted below
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    # Waited for on the server's own loop, where the counter lives (a hang guard, not a timing).
    servers.run(until(lambda: server.stalling > 0, "the call reaches the server"))
    commbox.close()
    caller.join()
    assert len(outcome) == 1 and isinstance(outcome[0], ClientClosedError)


def test_a_call_from_the_loop_thread_refuses_instead_of_hanging(server: FakeCommbox) -> None:
    """A blocking call from on_progress (the loop's own thread) raises instead of waiting."""
    refused: list[BaseException] = []

    with blocking(server) as commbox:

        def on_progress(progress: FanOutProgress) -> None:
            try:
                commbox.get_user_objects(1)
            except RuntimeError as exc:
                refused.append(exc)

        assert len(list(commbox.fetch_many([1, 2], on_progress=on_progress))) == 2
    assert len(refused) == 2 and "own event loop thread" in str(refused[0])


def test_limiter_factory_runs_on_the_loop_and_is_closed_with_the_client(
    server: FakeCommbox,
) -> None:
    """The factory's limiter is built on the client's loop thread and closed at close()."""
    seen: list[str] = []

    class Recording(LocalLimiter):
        async def aclose(self) -> None:
            seen.append("closed")
            await super().aclose()

    def factory() -> LocalLimiter:
        seen.append(threading.current_thread().name)
        return Recording(RateLimit(max_rate=1000))

    with blocking(server, limiter_factory=factory) as commbox:
        commbox.get_user_objects(1)
        assert seen == ["commbox-blocking"]
    assert seen == ["commbox-blocking", "closed"]


def test_arguments_that_cannot_work_are_refused(server: FakeCommbox) -> None:
    """session= and limiter= with limiter_factory= are refused; the token is in no repr."""
    with pytest.raises(InvalidArgumentError, match="session"):
        Commbox(token=TOKEN, base_url=server.url, session=object())
    with pytest.raises(InvalidArgumentError, match="not both"):
        Commbox(token=TOKEN, limiter=LocalLimiter(RateLimit(max_rate=1)), limiter_factory=dict)
    with pytest.raises(InvalidArgumentError):
        Commbox(token="has space", base_url=server.url)
    with blocking(server) as commbox:
        assert TOKEN not in repr(commbox) and "open" in repr(commbox)
    assert not any(t.name == "commbox-blocking" and t.is_alive() for t in threading.enumerate())


def _run_script(code: str, server: FakeCommbox) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FAKE_URL": server.url, "FAKE_TOKEN": TOKEN}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_client_left_open_is_closed_at_interpreter_exit(server: FakeCommbox) -> None:
    """A script that never closes its Commbox exits cleanly, its limiter closed at exit."""
    done = _run_script(
        """
        import os
        from commbox_async import LocalLimiter, RateLimit
        from commbox_async.blocking import Commbox

        class Noisy(LocalLimiter):
            async def aclose(self):
                print("limiter closed", flush=True)

        commbox = Commbox(token=os.environ["FAKE_TOKEN"], base_url=os.environ["FAKE_URL"],
                          limiter_factory=lambda: Noisy(RateLimit(max_rate=100)))
        print("total", commbox.get_user_objects(5).unread_total, flush=True)
        """,
        server,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"total {unread_of(5, 10)}", "limiter closed"]
    assert "Unclosed" not in done.stderr and "Task was destroyed" not in done.stderr


def test_after_a_fork_the_parents_client_refuses_and_a_new_one_works(server: FakeCommbox) -> None:
    """In a forked child the parent's Commbox raises a fork error; one made there works."""
    done = _run_script(
        """
        import os, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads, on purpose
        from commbox_async import ClientClosedError
        from commbox_async.blocking import Commbox

        def make():
            return Commbox(token=os.environ["FAKE_TOKEN"], base_url=os.environ["FAKE_URL"])

        parents = make()
        parents.get_user_objects(1)
        pid = os.fork()
        if pid == 0:
            try:
                parents.get_user_objects(1)
            except ClientClosedError as exc:
                print("refused:", "fork" in str(exc), flush=True)
            with make() as own:
                print("child total", own.get_user_objects(5).unread_total, flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        print("parent total", parents.get_user_objects(5).unread_total, flush=True)
        parents.close()
        """,
        server,
    )
    assert done.returncode == 0, done.stderr
    total = unread_of(5, 10)
    assert done.stdout.splitlines() == [
        "refused: True",
        f"child total {total}",
        f"parent total {total}",
    ]


def test_a_view_serves_another_account_over_the_same_loop(
    served: tuple[ServerThread, FakeCommbox],
) -> None:
    """``with_token`` gives another account's calls over the one loop and pool: its requests
    carry its key and count in its own stats; the view ends with its Commbox."""
    servers, _ = served
    server = servers.start(FakeCommbox(token=TOKEN, record=True))
    other = server.add_token("blocking-token-other-5c3e")
    with blocking(server) as commbox:
        view = commbox.with_token("blocking-token-other-5c3e")
        assert view.get_user_objects(3).unread_total == unread_of(3, 10)
        assert dict(view.unread_counts([4])) == {4: unread_of(4, 10)}
        assert [r.account for r in server.requests] == [other, other]
        assert view.stats.requests == 2 and commbox.stats.requests == 0
        assert "blocking-token-other" not in repr(view)
        server.add_token("blocking-token-plan-8d0a")
        planned = commbox.with_token("blocking-token-plan-8d0a", rate_limit=3)
        planned.get_user_objects(3)
        assert planned.stats.current_rate == 3  # the account's own limit, not the client's
    with pytest.raises(ClientClosedError):
        view.get_user_objects(3)


def test_a_commbox_with_no_account_of_its_own(server: FakeCommbox) -> None:
    """accounts_only=True: the facade's own calls are refused before any request; its
    views serve their accounts."""
    commbox = Commbox(base_url=server.url, accounts_only=True, **fast_client_settings())
    with commbox:
        with pytest.raises(InvalidArgumentError, match="with_token"):
            commbox.get_user_objects(3)
        assert commbox.with_token(TOKEN).get_user_objects(3).unread_total == unread_of(3, 10)
    assert server.count("ok") == 1


def test_pause_remaining_reads_an_accounts_pause(server: FakeCommbox) -> None:
    """After a 429 with Retry-After, the account's view reports its pause; another account and
    the client's own are not paused (a task reads it to give its worker back)."""
    server.add_token("blocking-token-paused-3b9f")
    server.script(3, (429, {"Retry-After": "60"}, b""))
    # The server's Retry-After as given (not the fast settings' cap), and no retry of a 429.
    with blocking(server, retries=Retries(throttled_tries=1)) as commbox:
        paused = commbox.with_token("blocking-token-paused-3b9f")
        assert paused.pause_remaining() == 0
        with pytest.raises(RateLimitError):
            paused.get_user_objects(3)
        assert 30 < paused.pause_remaining() < 120  # Retry-After 60, give or take its jitter
        assert commbox.with_token("blocking-token-other-5c3e").pause_remaining() == 0
        assert commbox.pause_remaining() == 0
    with pytest.raises(ClientClosedError):
        paused.pause_remaining()
