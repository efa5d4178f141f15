"""The wire of ``RedisLimiter``: the Lua scripts, the arguments each takes, the reply each returns
and the messages they publish, each read or written in one named place here.

``ACQUIRE`` reserves the next slot of the shared schedule (and carries this process's reports
for the pacing leader); ``THROTTLE`` records a pause; ``TICK`` renews or takes the pacing
leader's lease, hands it the reports and writes the rate it decided; ``RELEASE`` gives the
lease up. Each script runs atomically on Redis, on Redis's clock. ``RedisLimiter``
(``_redis.py``) says what they are for. No I/O here: the replies and messages are parsed from
what redis-py returns, so that they are tested without a server.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

__all__ = [
    "ACQUIRE_SCRIPT",
    "RELEASE_SCRIPT",
    "THROTTLE_SCRIPT",
    "TICK_SCRIPT",
    "AcquireArgs",
    "AcquireReply",
    "KeySpace",
    "PauseMessage",
    "RateMessage",
    "RateWrite",
    "Role",
    "Script",
    "ThrottleReply",
    "TickArgs",
    "TickReply",
    "read_message",
    "throttle_args",
]


class Script:
    """A script's text and the SHA-1 that ``EVALSHA`` names it by."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class KeySpace:
    """The Redis names of one limiter key: the hash (schedule, pause, rate), the list of
    reports for the pacing leader, the leader's lease, and the channel of pauses and rates."""

    hash: str
    outcomes: str
    lease: str
    channel: str

    @classmethod
    def of(cls, key: str) -> KeySpace:
        return cls(key, f"{key}:outcomes", f"{key}:leader", f"{key}:pause")


def _text(raw: bytes | str) -> str:
    # Written by a pacing leader (ours); a foreign byte is shown, never raised on.
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


# The shared rate as every process paces at it: the rate the pacing leader wrote, within this
# process's bounds (a rate left by another configuration or a past job is clamped), its maximum
# when none is written. One rule, written once and in Lua, because the slot script must apply it
# in the atomic step that books the slot; TICK returns it too, so Python never clamps again.
_SHARED_RATE = """
local function shared_rate(stored, min_rate, max_rate)
  return math.min(math.max(tonumber(stored) or max_rate, min_rate), max_rate)
end
"""

# KEYS: the hash, the outcome list
# ARGV: max_rate, min_rate, ttl_ms, pace, max_events, then this process's events (sends and
#       outcomes for the pacing leader: they ride along with the slot, at no extra round trip)
# Returns the slot and Redis's time (the caller waits slot - now), the rate, the pause's end, the
# end of the schedule granted so far, why the rate is what it is (written by the leader), and
# the schedule's epoch (one more at each rebooking): read by AcquireReply.
_ACQUIRE = (
    _SHARED_RATE
    + """
local key = KEYS[1]
local function f(x) return string.format('%.6f', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local s = redis.call('HMGET', key, 'tat', 'pause', 'rate', 'why', 'evidence', 'epoch')
local max_rate, min_rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local ttl, pace = ARGV[3], tonumber(ARGV[4])
local tat = tonumber(s[1]) or 0
local pause = tonumber(s[2]) or 0
local rate = shared_rate(s[3], min_rate, max_rate)
local slot = math.max(now, tat, pause)
-- A slot later than the caller can wait (ARGV[5], seconds; negative: any) is not booked:
-- the schedule stays as it was, for a caller who can use it (-1 tells the caller).
local max_wait = tonumber(ARGV[5])
local refused = max_wait >= 0 and slot - now > max_wait
if not refused then
  tat = slot + pace / rate
end
if #ARGV > 6 then
  local list = KEYS[2]
  redis.call('RPUSH', list, unpack(ARGV, 7, #ARGV))
  redis.call('LTRIM', list, -tonumber(ARGV[6]), -1)
  redis.call('PEXPIRE', list, ttl)
end
-- Only the schedule is written here: the rate is the pacing leader's.
if not refused then
  redis.call('HSET', key, 'tat', f(tat))
end
redis.call('PEXPIRE', key, ttl)
if refused then
  slot = -1
end
return {f(slot), f(now), f(rate), f(pause), f(tat), s[4] or '', s[5] or '', s[6] or '0'}
"""
)


@dataclass(frozen=True, slots=True)
class AcquireArgs:
    """ACQUIRE's ARGV: the bounds of the shared rate, the state's lifetime, the slots' spacing
    (``pace / rate``), the longest wait the caller accepts, the outcome list's length, then the
    events."""

    max_rate: float
    min_rate: float
    ttl_ms: int
    pace: float
    max_events: int

    def encode(self, events: Sequence[str], max_wait: float = -1.0) -> list[str]:
        """``max_wait``: the latest slot the caller can use, in seconds from now (negative:
        any); a later one is not booked, and the reply's slot is -1."""
        fixed = [repr(self.max_rate), repr(self.min_rate), str(self.ttl_ms), repr(self.pace)]
        return [*fixed, repr(max_wait), str(self.max_events), *events]


@dataclass(frozen=True, slots=True)
class AcquireReply:
    """ACQUIRE's reply; every time on Redis's clock."""

    slot: float  # when the slot granted is due
    now: float
    rate: float  # the shared rate, clamped (see _SHARED_RATE)
    pause_end: float
    booked_to: float  # the end of the schedule granted so far (to every process)
    why: str  # the pacing leader's reason for the rate ('' before any leader wrote one)
    evidence: str
    epoch: int  # the schedule's rebookings so far

    @classmethod
    def parse(cls, raw: Sequence[bytes]) -> AcquireReply:
        slot, now, rate, pause_end, booked_to, why, evidence, epoch = raw
        return cls(
            float(slot),
            float(now),
            float(rate),
            float(pause_end),
            float(booked_to),
            _text(why),
            _text(evidence),
            int(epoch),
        )


# KEYS: the hash
# ARGV: ttl_ms, pause length, channel. The pause length comes capped and jittered by
#       ``PausePolicy`` (``_pacing.py``): the Retry-After rule is written once, in Python, and
#       shared with the in-process limiter and the retry decision; this script takes it as given.
# Publishes a PauseMessage; returns the pause's end and Redis's time (read by ThrottleReply).
_THROTTLE = """
local key = KEYS[1]
local function f(x) return string.format('%.6f', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local s = redis.call('HMGET', key, 'tat', 'pause')
local tat = tonumber(s[1]) or 0
local pause = tonumber(s[2]) or 0
local new_end = now + tonumber(ARGV[2])
if new_end > pause then pause = new_end end
-- No slot is granted inside the pause: the schedule resumes at its end.
if pause > tat then tat = pause end
redis.call('HSET', key, 'tat', f(tat), 'pause', f(pause))
redis.call('PEXPIRE', key, ARGV[1])
redis.call('PUBLISH', ARGV[3], f(pause) .. ' ' .. f(now))
return {f(pause), f(now)}
"""


def throttle_args(ttl_ms: int, pause: float, channel: str) -> list[str]:
    """THROTTLE's ARGV; ``pause`` is ``PausePolicy.pause_for``'s (capped, jittered)."""
    return [str(ttl_ms), repr(pause), channel]


@dataclass(frozen=True, slots=True)
class ThrottleReply:
    """THROTTLE's reply: the shared pause's end (a longer one may have been in force already)
    and Redis's time."""

    pause_end: float
    now: float

    @classmethod
    def parse(cls, raw: Sequence[bytes]) -> ThrottleReply:
        pause_end, now = raw
        return cls(float(pause_end), float(now))


# KEYS: the hash, the outcome list, the lease
# ARGV: this process's id ('' when closing), lease_ms, ttl_ms, max_events, rate to write ('' for
#       none), why, evidence, channel, keep, max_rate, min_rate, then this process's events
# Appends the events; takes or renews the lease when free or ours; the leader writes the rate
# (and its heartbeat) and takes every event reported since its last call; a rate written is
# published as a RateMessage.
# Returns Redis's time, the role (see Role), the rate field as stored, the shared rate (clamped,
# to 17 digits: exactly the double the bounds and the stored rate give), why, evidence, the last
# heartbeat of a leader, and (for a leader) the events: read by TickReply.
_TICK = (
    _SHARED_RATE
    + """
local key, list, lease = KEYS[1], KEYS[2], KEYS[3]
local me, lease_ms, ttl = ARGV[1], ARGV[2], ARGV[3]
local max_rate, min_rate = tonumber(ARGV[10]), tonumber(ARGV[11])
local function f(x) return string.format('%.6f', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if #ARGV > 11 then
  redis.call('RPUSH', list, unpack(ARGV, 12, #ARGV))
  redis.call('LTRIM', list, -tonumber(ARGV[4]), -1)
  redis.call('PEXPIRE', list, ttl)
end
local holder = redis.call('GET', lease)
local role = 0
if me == '' then
  -- A closing process: its last events only.
elseif not holder then
  redis.call('SET', lease, me, 'PX', lease_ms)
  role = 2
elseif holder == me then
  redis.call('PEXPIRE', lease, lease_ms)
  role = 1
end
local s = redis.call('HMGET', key, 'rate', 'why', 'evidence', 'lead_at', 'tat', 'pause')
local events = {}
if role > 0 then
  if role == 1 and ARGV[5] ~= '' then
    local new, old = tonumber(ARGV[5]), tonumber(s[1])
    redis.call('HSET', key, 'rate', ARGV[5], 'why', ARGV[6], 'evidence', ARGV[7])
    local tat = tonumber(s[5])
    local rebook, epoch = '0', '0'
    if old and new ~= old and tat then
      -- Slots booked beyond `from` at the old rate are given back by their holders (they
      -- learn of the change, and of `from`, from the channel): the schedule resumes there at
      -- the new rate. A rise keeps the next `keep` seconds; a fall during a pause rebooks
      -- from its end: slots granted at the old pace between the 429 and this new rate would
      -- otherwise all go out together when the pause ends.
      local pause = tonumber(s[6]) or 0
      local from = math.max(now, pause) + tonumber(ARGV[9])
      if new < old and pause > now then from = pause end
      if tat > from then
        redis.call('HSET', key, 'tat', f(from))
        rebook = f(from)
        epoch = tostring(redis.call('HINCRBY', key, 'epoch', 1))
      end
    end
    local message = {'r', ARGV[5], rebook, epoch, ARGV[6], ARGV[7]}
    redis.call('PUBLISH', ARGV[8], table.concat(message, ' '))
    s[1], s[2], s[3] = ARGV[5], ARGV[6], ARGV[7]
  end
  redis.call('HSET', key, 'lead_at', f(now))
  redis.call('PEXPIRE', key, ttl)
  events = redis.call('LRANGE', list, 0, -1)
  redis.call('DEL', list)
end
local shared = string.format('%.17g', shared_rate(s[1], min_rate, max_rate))
return {f(now), tostring(role), s[1] or '', shared, s[2] or '', s[3] or '', s[4] or '', events}
"""
)


@dataclass(frozen=True, slots=True)
class RateWrite:
    """A rate the pacing leader writes (six decimals, as the hash holds it), and why."""

    rate: str
    why: str
    evidence: str


@dataclass(frozen=True, slots=True)
class TickArgs:
    """TICK's ARGV but this process's id, the rate to write and the events: the lease's length,
    the state's lifetime, the outcome list's length, the channel, how much of the schedule a
    rise keeps, and the bounds of the shared rate (ACQUIRE's)."""

    lease_ms: int
    ttl_ms: int
    max_events: int
    channel: str
    keep: float
    max_rate: float
    min_rate: float

    def encode(self, me: str, write: RateWrite | None, events: Sequence[str]) -> list[str]:
        """``me`` is '' for a closing process; ``write`` None writes no rate."""
        rate, why, evidence = (write.rate, write.why, write.evidence) if write else ("", "", "")
        args = [me, str(self.lease_ms), str(self.ttl_ms), str(self.max_events), rate, why]
        args += [evidence, self.channel, repr(self.keep)]
        return [*args, repr(self.max_rate), repr(self.min_rate), *events]


class Role(enum.IntEnum):
    """What TICK made this process: the lease is another's, was ours, or is ours from now."""

    FOLLOWER = 0
    LEADER = 1
    NEW_LEADER = 2


@dataclass(frozen=True, slots=True)
class TickReply:
    """TICK's reply; every time on Redis's clock."""

    now: float
    role: Role
    stored_rate: float  # the rate field as the hash holds it; NaN when none
    rate: float  # the shared rate, clamped (see _SHARED_RATE)
    why: str
    evidence: str
    lead_at: float  # a leader's last heartbeat; -inf when none
    events: list[bytes]  # for a leader, every event reported since its last call

    @classmethod
    def parse(cls, raw: Sequence[object]) -> TickReply:
        now, role, stored, rate, why, evidence, lead_at, events = cast("Sequence[bytes]", raw)
        return cls(
            float(now),
            Role(int(role)),
            float(stored) if stored else math.nan,
            float(rate),
            _text(why),
            _text(evidence),
            float(lead_at) if lead_at else -math.inf,
            cast("list[bytes]", events),
        )


# KEYS: the lease. ARGV: this process's id. Gives the lease up if it is ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


@dataclass(frozen=True, slots=True)
class PauseMessage:
    """THROTTLE's message on the channel, ``"<pause end> <Redis time>"``: a 429 somewhere."""

    end: float
    now: float

    @classmethod
    def parse(cls, data: bytes) -> PauseMessage:
        """Raises ValueError when malformed."""
        end, now = data.split()
        return cls(float(end), float(now))


@dataclass(frozen=True, slots=True)
class RateMessage:
    """TICK's message on the channel when the leader writes a rate,
    ``"r <rate> <rebooked from> <epoch> <why> <evidence>"``; ``rebooked_from`` 0: the schedule
    was not rebooked."""

    rate: float
    rebooked_from: float
    epoch: int
    why: str
    evidence: str

    @classmethod
    def parse(cls, data: bytes) -> RateMessage:
        """Raises ValueError when malformed (a missing reason or evidence reads as '')."""
        _, rate, rebooked_from, epoch, why, evidence = [*data.decode().split(" ", 5), "", ""][:6]
        return cls(float(rate), float(rebooked_from), int(epoch), why, evidence)


def read_message(data: bytes) -> PauseMessage | RateMessage:
    """A message of the key's channel; raises ValueError when malformed."""
    return RateMessage.parse(data) if data.startswith(b"r ") else PauseMessage.parse(data)


ACQUIRE_SCRIPT = Script(_ACQUIRE)
THROTTLE_SCRIPT = Script(_THROTTLE)
TICK_SCRIPT = Script(_TICK)
RELEASE_SCRIPT = Script(_RELEASE)
