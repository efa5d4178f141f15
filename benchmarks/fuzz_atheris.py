"""Coverage-guided fuzzing of the decoder and the response parser with atheris (libFuzzer).

The seed corpus is the vendor's 200 example and a page of the fake server, and a dictionary of
JSON tokens and the model's field names guides the mutations. For every input:

- ``decode_page(body)`` returns a page, which is then read in full, or raises
  ``ModelDecodeError``;
- ``parse_response(status, headers, body)`` (status and Retry-After taken from the input's
  first bytes) returns a page or raises a ``CommboxError``.

Anything else is a crash: libFuzzer stops, prints the input and exits non-zero. Bodies that
are not valid UTF-8 are repaired before use unless ``--raw-utf8`` is given, because invalid
UTF-8 inside a JSON string is a known open bug (see docs/reliability.md) that would stop every
run at once.

Usage (atheris is not a project dependency: ``.venv/bin/pip install atheris``)::

    .venv/bin/python benchmarks/fuzz_atheris.py --runs 200000

libFuzzer's closing "Done N runs in S second(s)" is the number of inputs tried.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

try:
    import atheris
except ImportError:  # pragma: no cover - optional tool
    print("atheris is not installed: .venv/bin/pip install atheris", file=sys.stderr)
    sys.exit(2)

with atheris.instrument_imports(include=["commbox_async"]):
    from commbox_async import CommboxError, parse_response
    from commbox_async._models import ModelDecodeError, decode_page
    from commbox_async.testing import conversation

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "tests" / "fixtures" / "seed_example_200.json"
STATUSES = (200, 200, 200, 200, 400, 401, 404, 429, 500, 501, 502, 503, 504, 418, 599)
RETRY_AFTERS = (None, "0", "-1", "1e999", "soon", "99999999999", "Wed, 21 Oct 2015 07:28:00 GMT")
TOKENS = [
    "null", "true", "false", "-1", "1e999", "9223372036854775808", '""', '"\\u0000"',
    '"\\ud800"', "{", "}", "[", "]", ",", ":", '"content"', '"data"', '"childs"', '"user"',
    '"identity"', '"statusId"', '"createdTime"', '"2026-02-12T15:01:02Z"',
    '"2026-02-12T15:01:02"', '"totalUnreadChatMessages"', '"unreadMessages"', '"objectId"',
    '"activityLogs"', '"{\\"a\\":1}"',
]  # fmt: skip
RAW_UTF8 = False
TRIED = 0


def fake_page() -> bytes:
    data = [conversation(558355, i, childs=2, activity_log=True) for i in range(2)]
    return json.dumps({"totalUnreadChatMessages": 3, "status": 200, "data": data}).encode()


def read_everything(page: object) -> None:
    total = page.unread_total  # type: ignore[attr-defined]
    assert isinstance(total, int)
    for item in page.data:  # type: ignore[attr-defined]
        _ = item.content
        if item.user is not None:
            _ = item.user.content
        for child in item.childs:
            _ = child.content


def one_input(data: bytes) -> None:
    global TRIED
    TRIED += 1
    if len(data) < 2:
        return
    status = STATUSES[data[0] % len(STATUSES)]
    retry_after = RETRY_AFTERS[data[1] % len(RETRY_AFTERS)]
    body = data[2:]
    if not RAW_UTF8:
        body = body.decode("utf-8", "replace").encode("utf-8")
    try:
        page = decode_page(body)
    except ModelDecodeError:
        pass
    else:
        read_everything(page)
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    try:
        page = parse_response(status, headers, body, identity_id=1)
    except CommboxError:
        return
    read_everything(page)


def main() -> None:
    global RAW_UTF8
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000, help="inputs to try")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--raw-utf8", action="store_true", help="keep invalid UTF-8 as is")
    args, rest = parser.parse_known_args()
    RAW_UTF8 = args.raw_utf8
    work = Path(tempfile.mkdtemp(prefix="commbox-fuzz-"))
    corpus = work / "corpus"
    corpus.mkdir()
    seeds = [fake_page()] + ([SEED.read_bytes()] if SEED.exists() else [])
    for n, seed in enumerate(seeds):
        (corpus / f"seed{n}").write_bytes(b"\x00\x00" + seed)
    dictionary = work / "json.dict"
    dictionary.write_text("".join(f"{json.dumps(t)}\n" for t in TOKENS))
    max_len = max(len(s) for s in seeds) + 4096
    argv = [
        sys.argv[0],
        f"-runs={args.runs}",
        f"-seed={args.seed}",
        f"-max_len={max_len}",
        f"-dict={dictionary}",
        "-print_final_stats=1",
        f"-artifact_prefix={work}/",
        *rest,
        str(corpus),
    ]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
