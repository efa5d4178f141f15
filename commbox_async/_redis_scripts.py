"""The Lua scripts of ``RedisLimiter``: each runs atomically on Redis, on Redis's clock.

``ACQUIRE`` reserves the next slot of the shared schedule (and carries this process's reports
for the pacing leader); ``THROTTLE`` records a pause; ``TICK`` renews or takes the pacing
leader's lease, hands it the reports and writes the rate it decided; ``RELEASE`` gives the
lease up. ``RedisLimiter`` (``_redis.py``) says what they are for.
"""

from __future__ import annotations

import hashlib

__all__ = ["ACQUIRE_SCRIPT", "RELEASE_SCRIPT", "THROTTLE_SCRIPT", "TICK_SCRIPT", "Script"]

# KEYS: the hash, the outcome list
# ARGV: max_rate, min_rate, ttl_ms, pace, max_events, then this process's events (sends and
#       outcomes for the pacing leader: they ride along with the slot, at no extra round trip)
# Returns the slot and Redis's time (the caller waits slot - now), the rate, the pause's end, the
# end of the schedule granted so far, why the rate is what it is (written by the leader), and
# the schedule's epoch (one more at each rebooking).
_ACQUIRE = """
local key = KEYS[1]
local function f(x) return string.format('%.6f', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local s = redis.call('HMGET', key, 'tat', 'pause', 'rate', 'why', 'evidence', 'epoch')
local max_rate, min_rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local ttl, pace = ARGV[3], tonumber(ARGV[4])
local tat = tonumber(s[1]) or 0
local pause = tonumber(s[2]) or 0
local rate = math.min(math.max(tonumber(s[3]) or max_rate, min_rate), max_rate)
local slot = math.max(now, tat, pause)
tat = slot + pace / rate
if #ARGV > 5 then
  local list = KEYS[2]
  redis.call('RPUSH', list, unpack(ARGV, 6, #ARGV))
  redis.call('LTRIM', list, -tonumber(ARGV[5]), -1)
  redis.call('PEXPIRE', list, ttl)
end
-- Only the schedule is written here: the rate is the pacing leader's.
redis.call('HSET', key, 'tat', f(tat))
redis.call('PEXPIRE', key, ttl)
return {f(slot), f(now), f(rate), f(pause), f(tat), s[4] or '', s[5] or '', s[6] or '0'}
"""

# ARGV: ttl_ms, pause length, channel
# Returns the pause's end and Redis's time.
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

# KEYS: the hash, the outcome list, the lease
# ARGV: this process's id ('' when closing), lease_ms, ttl_ms, max_events, rate to write ('' for
#       none), why, evidence, channel, keep, then this process's events
# Appends the events; takes or renews the lease when free or ours; the leader writes the rate
# (and its heartbeat) and takes every event reported since its last call.
# Returns Redis's time, the role (0 follower, 1 leader, 2 leader from now on), the shared rate,
# why, evidence, the last heartbeat of a leader, and (for a leader) the events.
_TICK = """
local key, list, lease = KEYS[1], KEYS[2], KEYS[3]
local me, lease_ms, ttl = ARGV[1], ARGV[2], ARGV[3]
local function f(x) return string.format('%.6f', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if #ARGV > 9 then
  redis.call('RPUSH', list, unpack(ARGV, 10, #ARGV))
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
return {f(now), tostring(role), s[1] or '', s[2] or '', s[3] or '', s[4] or '', events}
"""

# KEYS: the lease. ARGV: this process's id. Gives the lease up if it is ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


class Script:
    """A script's text and the SHA-1 that ``EVALSHA`` names it by."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


ACQUIRE_SCRIPT = Script(_ACQUIRE)
THROTTLE_SCRIPT = Script(_THROTTLE)
TICK_SCRIPT = Script(_TICK)
RELEASE_SCRIPT = Script(_RELEASE)
