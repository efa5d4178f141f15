"""The guard around every command: ``main``, the entry point of the ``commbox-async`` command.

It parses the arguments, checks that the extra a command needs is installed, runs the command's
coroutine with Ctrl-C, SIGTERM and SIGHUP turned into a clean cancellation, and turns every way
a command can end into a one-line message and an exit status: 0 all ok, 1 some identities
failed, 2 usage or configuration error, 129 hung up (SIGHUP), 130 interrupted (Ctrl-C), 143
terminated (SIGTERM).
No traceback is ever printed (a traceback could show the token), and the token is masked in
every message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn

from .._errors import AuthenticationError, CommboxError, InvalidArgumentError
from ._errors import (
    EXIT_FAILED,
    EXIT_HUNG_UP,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    CliExit,
    in_cli_terms,
)

__all__ = ["main"]

PROG = "commbox-async"
INSTALL_HINT = "pip install 'commbox-async[cli]'"
UVLOOP_HINT = "pip install 'commbox-async[uvloop]'"


def _secrets(argv: Sequence[str]) -> list[str]:
    """Every token value this process knows of: the environment's and any --token argument."""
    found = [os.environ.get("COMMBOX_TOKEN", "")]
    for i, arg in enumerate(argv):
        if arg == "--token" and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif arg.startswith("--token="):
            found.append(arg.partition("=")[2])
    return [s for s in found if len(s) >= 4]  # masking "a" would mangle every message


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _say(message: str, secrets: Sequence[str]) -> None:
    print(f"{PROG}: {_redact(message, secrets)}", file=sys.stderr, flush=True)


def _redacting_parser(secrets: Sequence[str]) -> type[argparse.ArgumentParser]:
    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            super().error(_redact(message, secrets))

    return Parser


#: The signals that end a command cleanly: Ctrl-C, SIGTERM (docker stop, Kubernetes,
#: ``timeout``) and SIGHUP (the terminal or the ssh session closed; nohup-less cron wrappers).
#: Each cancels the command, so it ends the same way: whole lines, the summary, the resume
#: hint. SIGHUP does not exist on Windows.
_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
#: How a command stopped by a signal other than Ctrl-C says so, and its exit status.
_STOPPED_BY = {
    getattr(signal, name): (word, status)
    for name, word, status in (
        ("SIGTERM", "terminated", EXIT_TERMINATED),
        ("SIGHUP", "hung up (SIGHUP)", EXIT_HUNG_UP),
    )
    if hasattr(signal, name)
}


async def _interruptible(command: Coroutine[Any, Any, int], stopped_by: list[int]) -> int:
    """Run a command; the first stop signal cancels it (clean-up runs), a second one stops at
    once. The signal that stopped it is appended to ``stopped_by``."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def on_signal(signum: int) -> None:
        for each in _STOP_SIGNALS:  # back to the default action for a second signal
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(each)
        stopped_by.append(signum)
        task.cancel()

    # Not on Windows, nor outside the main thread: Ctrl-C is then a plain KeyboardInterrupt.
    for signum in _STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await command
    except asyncio.CancelledError:
        raise CliExit("interrupted", EXIT_INTERRUPTED) from None
    finally:
        for signum in _STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)


_Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _command(name: str) -> _Command:
    # Imported here, one command's module only: most import rich (the 'cli' extra), and only
    # mock and demo import the fake server (aiohttp.web and the rest of commbox_async.testing).
    if name == "get":
        from ._get import get_command

        return get_command
    if name == "fetch":
        from ._fetch import fetch_command

        return fetch_command
    if name == "mock":
        from ._mock import mock_command

        return mock_command
    from ._demo import demo_command

    return demo_command


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    secrets = _secrets(args_list)
    from ._args import build_parser

    parser = build_parser(parser_class=_redacting_parser(secrets))
    args = parser.parse_args(args_list)
    try:
        command = _command(args.command)
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] != "rich":
            raise
        _say(f"the command line needs the 'cli' extra: {INSTALL_HINT}", secrets)
        return EXIT_USAGE
    run: Callable[[Coroutine[Any, Any, int]], int] = asyncio.run
    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            _say(f"--uvloop needs the 'uvloop' extra: {UVLOOP_HINT}", secrets)
            return EXIT_USAGE
        run = uvloop.run
    stopped_by: list[int] = []
    try:
        return run(_interruptible(command(args), stopped_by))
    except CliExit as exc:
        if exc.status == EXIT_INTERRUPTED and stopped_by and stopped_by[0] in _STOPPED_BY:
            word, status = _STOPPED_BY[stopped_by[0]]
            _say(exc.message.replace("interrupted", word, 1), secrets)
            return status
        _say(exc.message, secrets)
        return exc.status
    except (KeyboardInterrupt, asyncio.CancelledError):
        _say("interrupted", secrets)
        return EXIT_INTERRUPTED
    except (InvalidArgumentError, AuthenticationError) as exc:
        _say(in_cli_terms(str(exc)), secrets)
        return EXIT_USAGE
    except CommboxError as exc:
        _say(str(exc), secrets)
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader of stdout went away (| head): stop quietly, and keep Python's final
        # flush of stdout from failing again.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:  # the last guard: one line, never a traceback
        _say(f"unexpected error: {type(exc).__name__}: {exc}", secrets)
        return EXIT_FAILED
