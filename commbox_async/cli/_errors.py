"""How a command ends early: a one-line message and an exit status, in the command line's terms."""

from __future__ import annotations

import re

from .._errors import CommboxError, CommboxTimeoutError

__all__ = [
    "EXIT_FAILED",
    "EXIT_HUNG_UP",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CliExit",
    "InputError",
    "explain",
    "in_cli_terms",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
#: Nothing could connect to the server, so the job stopped sending (the ids are in the output).
EXIT_UNREACHABLE = 3
EXIT_HUNG_UP = 129  # 128 + SIGHUP: the terminal or the session closed
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM: docker stop, Kubernetes, timeout


class CliExit(Exception):
    """Stop the command: print ``message`` (never holding the token) and exit with ``status``."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class InputError(CliExit):
    """The input or the output file cannot be used at all (a usage error)."""


#: The library's keyword -> the flag that sets it. The library words its checks for Python
#: callers ("page_size must be ...", "pass token="); a shell user only knows the flags.
_FLAGS = {
    "base_url": "--base-url",
    "rate_limit": "--rate",
    "timeout": "--timeout",
    "retries": "--retries",
    "concurrency": "--concurrency",
    "statuses": "--status",
    **{
        name: "--" + name.replace("_", "-")
        for name in (
            "page_size",
            "page_number",
            "order",
            "stream_provider_id",
            "stream_provider_type",
            "stream_id",
            "sub_stream_id",
            "object_id",
            "module_id",
            "include_childs",
            "include_activity_log",
        )
    },
}
# "token" alone stays a word (it may come from COMMBOX_TOKEN); only "token=" is the flag.
_FLAGS["token="] = "--token"
# The flag takes no value: "allow_insecure_http=True" as a whole is the flag.
_FLAGS["allow_insecure_http=True"] = "--allow-insecure-http"
_KEYWORD = re.compile(r"(?<![\w-])(token=|" + "|".join(_FLAGS) + r")=?(?!\w)")


def in_cli_terms(message: str) -> str:
    """A library message with its keywords (``page_size``, ``token=``) named as flags."""
    return _KEYWORD.sub(lambda m: _FLAGS[m.group(1)], message)


def explain(error: CommboxError, *, host: str, timeout: float, identity: bool = True) -> str:
    """An error's message in the command line's terms: a timeout names the host and the flag
    that gives it longer. ``identity=False`` leaves out the "(identity N)" that a line which
    names the identity already says."""
    text = str(error) if identity else error.message
    if isinstance(error, CommboxTimeoutError):
        if error.could_not_connect:  # "timed out connecting to host:port"
            text += f"; check that it is reachable, or raise --timeout (now {timeout:g} s)"
        else:
            text += (
                f": no answer from {host} within {timeout:g} s per attempt; raise --timeout "
                "if the server is slow"
            )
    return text
