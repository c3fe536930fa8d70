"""The Lua scripts of the store: each runs as one atomic step in Redis (key names come in as KEYS)."""

# A tenant's token bucket (KEYS[1]; ARGV: rate, burst, now): takes a token, or sets ``wait``
# to the seconds until one is there. The start of RATE and ADMIT.
_TAKE_TOKEN = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
"""

RATE = _TAKE_TOKEN + "return tostring(wait)\n"

# Marks a task done once, and the job done when the last distinct task lands. A result
# for a job that is already cancelled or failed is dropped: late results never count.
# With ARGV[14] '1' (a one-task job's small result), the done event carries the job's
# started_at, finished_at and the result itself: "<job> done <started> <finished>\n<result>"
# (store/reads.py job_event), so an API holding the submission answers without reading it back.
COMPLETE_TASK = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'cancelled' or status == 'failed' or not status then return -1 end
-- a late duplicate (a worker stopped past its lease) never rewrites a slice already counted
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
local added = redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
if added == 0 then return 0 end
-- statistics, counted once per distinct task: KEYS[4] counters, KEYS[5] circuits by
-- backend|tenant, KEYS[6] task-seconds histogram, KEYS[7] recent tasks, KEYS[8] tenant usage
redis.call('HINCRBY', KEYS[4], 'tasks_done', 1)
redis.call('HINCRBY', KEYS[5], ARGV[8], ARGV[7])
redis.call('HINCRBY', KEYS[6], ARGV[9], 1)
redis.call('HINCRBY', KEYS[6], 'count', 1)
redis.call('HINCRBYFLOAT', KEYS[6], 'sum', ARGV[10])
-- KEYS[9]: the same histogram by backend (ARGV[13])
redis.call('HINCRBY', KEYS[9], ARGV[13] .. '|' .. ARGV[9], 1)
redis.call('HINCRBY', KEYS[9], ARGV[13] .. '|count', 1)
redis.call('HINCRBYFLOAT', KEYS[9], ARGV[13] .. '|sum', ARGV[10])
redis.call('LPUSH', KEYS[7], ARGV[11])
redis.call('LTRIM', KEYS[7], 0, 4999)
redis.call('HINCRBY', KEYS[8], ARGV[12] .. '|circuits', ARGV[7])
redis.call('HINCRBYFLOAT', KEYS[8], ARGV[12] .. '|seconds', ARGV[10])
redis.call('EXPIRE', KEYS[8], 8 * 86400)
local n = redis.call('SCARD', KEYS[2])
if n >= tonumber(redis.call('HGET', KEYS[1], 'tasks_total')) and status ~= 'done' then
  redis.call('HSET', KEYS[1], 'status', 'done', 'finished_at', ARGV[4])
  redis.call('HINCRBY', KEYS[4], 'jobs_done', 1)
  if ARGV[14] == '1' then
    local started = redis.call('HGET', KEYS[1], 'started_at') or ''
    redis.call('PUBLISH', ARGV[5], ARGV[6] .. ' done ' .. started .. ' ' .. ARGV[4] .. '\\n' .. ARGV[2])
  else
    redis.call('PUBLISH', ARGV[5], ARGV[6] .. ' done')
  end
  return 2
end
redis.call('PUBLISH', ARGV[5], ARGV[6] .. ' progress')
return 1
"""

# Takes a task and leases it in the same step, so a worker killed at any instant leaves each
# task either queued or leased, never neither. Lanes in order; within a lane, tenants share by
# cost: the tenant served the fewest seconds of estimated work (its virtual time, the score in
# the lane's tenant set) goes next, and is charged its task's seconds as it takes it. A task on
# RQ's list that is in no tenant's sub-queue was put back by RQ itself (a retry): it goes first
# when it sits at either end of the list, and at the latest when no sub-queue has tasks left.
# KEYS: leases, then per lane (queue list, bell, tenants, state, cost); ARGV: lease deadline,
# holder, n lanes, then per lane the key prefix of its tenants' sub-queues, then (optional) the key
# prefix of RQ's job hashes: the taken task's hash comes back with it (the worker needs no second read).
TAKE = """
local n = tonumber(ARGV[3])
for i = 1, n do
  local b = 1 + (i - 1) * 5
  local queue, bell, tenants, state, cost = KEYS[b + 1], KEYS[b + 2], KEYS[b + 3], KEYS[b + 4], KEYS[b + 5]
  local id = false
  local head = redis.call('LINDEX', queue, 0)
  if head and redis.call('HEXISTS', cost, head) == 0 then
    id = redis.call('LPOP', queue)
  else
    local tail = redis.call('LINDEX', queue, -1)
    if tail and redis.call('HEXISTS', cost, tail) == 0 then id = redis.call('RPOP', queue) end
  end
  while not id do
    local top = redis.call('ZRANGE', tenants, 0, 0, 'WITHSCORES')
    if #top == 0 then break end
    local tenant, vt = top[1], tonumber(top[2])
    local sub = ARGV[3 + i] .. tenant
    local rid = redis.call('LPOP', sub)
    if rid then
      local seconds = redis.call('HGET', cost, rid)
      redis.call('HDEL', cost, rid)
      -- a task cancelled while queued has left the queue list already: skipped, not charged
      if seconds and redis.call('LREM', queue, 1, rid) == 1 then
        id = rid
        redis.call('HSET', state, '*clock', vt)
        vt = vt + tonumber(seconds)
      end
    end
    if redis.call('LLEN', sub) == 0 then
      redis.call('ZREM', tenants, tenant)
      redis.call('HSET', state, tenant, vt)
    else
      redis.call('ZADD', tenants, vt, tenant)
    end
  end
  if not id then id = redis.call('LPOP', queue) end
  if id then
    redis.call('HDEL', cost, id)
    redis.call('LPOP', bell)
    redis.call('ZADD', KEYS[1], ARGV[1], id .. '|' .. ARGV[2])
    local prefix = ARGV[4 + n]
    return {queue, id, prefix and prefix ~= '' and redis.call('HGETALL', prefix .. id) or false}
  end
end
for i = 1, n do redis.call('DEL', KEYS[1 + (i - 1) * 5 + 2]) end
return false
"""

# Puts tasks (already on RQ's queue list) on their tenant's sub-queue of the lane, with their
# estimated seconds. A tenant not waiting yet joins at the lane's virtual time, or at its own
# if that is later (a tenant that just left does not come back with a clean slate).
# KEYS: tenants, state, cost, the tenant's sub-queue; ARGV: tenant, then (RQ job id, seconds) pairs.
FAIR_PUT = """
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  redis.call('RPUSH', KEYS[4], ARGV[i])
end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  local clock = tonumber(redis.call('HGET', KEYS[2], '*clock') or '0')
  local last = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
  redis.call('ZADD', KEYS[1], math.max(clock, last), ARGV[1])
end
return 1
"""

# A lapsed lease passes to the reaper as a lease of its own (ARGV[3], until ARGV[2]): if the
# reaper stops, or the reply is lost, before it has re-queued the task, that lease lapses in
# turn and the task is reaped again. Exactly one caller gets 1.
CLAIM = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
return 1
"""

# A failed job whose failed tasks an admin re-queues runs again; its done tasks stay done.
REOPEN = """
if redis.call('HGET', KEYS[1], 'status') ~= 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'running')
redis.call('HDEL', KEYS[1], 'error', 'finished_at')
redis.call('DEL', KEYS[2])
return 1
"""

# A counting semaphore with expiring holders (at most ARGV[1] at once) that serves its waiters
# in arrival order: a holder that releases and asks again between chunks of a long task goes
# behind those already waiting, so the device is time-sliced among them. A waiter that has
# not asked again since ARGV[5] (stopped or killed) leaves the line.
# KEYS: holders (zset: holder -> lease end), line (zset: waiter -> ticket), seen (zset:
# waiter -> last ask), ticket counter; ARGV: limit, holder, now, lease end, stale before.
ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[3])
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], 0, ARGV[5])) do
  redis.call('ZREM', KEYS[2], gone)
  redis.call('ZREM', KEYS[3], gone)
end
if not redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ARGV[2])
end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
local free = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
if free > 0 and redis.call('ZRANK', KEYS[2], ARGV[2]) < free then
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
  return 1
end
return 0
"""

MARK_STARTED = """
if redis.call('HGET', KEYS[1], 'status') == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1])
  return 1
end
return 0
"""

# Learned prices: each field keeps the least CPU seconds a row of that work took (a task that
# also compiled the circuit, or ran one row per call, measures more than the work costs).
LOWER_COSTS = """
for i = 1, #ARGV - 1, 2 do
  local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  if not current or tonumber(ARGV[i + 1]) < current then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
redis.call('EXPIRE', KEYS[1], ARGV[#ARGV])
return 1
"""

# Moves a job that is not yet final to a final status; returns 1 if it did.
FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'done' or status == 'failed' or status == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', ARGV[2], 'error', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'jobs_' .. ARGV[1], 1)
redis.call('PUBLISH', ARGV[4], ARGV[5] .. ' ' .. ARGV[1])
return 1
"""

# A tenant's work in flight, over the job ids in ``ids``: a job record's key is ``prefix`` .. id,
# its done set that key .. ``suffix``. Sets jobs (not final), tasks (their tasks not done) and
# finished (the ids of final or gone jobs). Part of ADMIT and INFLIGHT.
_INFLIGHT_SUMS = """
local jobs, tasks, finished = 0, 0, {}
for _, id in ipairs(ids) do
  local job = prefix .. id
  local fields = redis.call('HMGET', job, 'status', 'tasks_total')
  local status = fields[1]
  if not status or status == 'done' or status == 'failed' or status == 'cancelled' then
    finished[#finished + 1] = id
  else
    jobs = jobs + 1
    tasks = tasks + tonumber(fields[2]) - redis.call('SCARD', job .. suffix)
  end
end
"""

# What a submission asks first, in one step: the rate limiter's token (RATE) and, if it may go
# ahead, the tenant's work in flight (over its in-flight set) and a claim of its idempotency
# key. KEYS: rate, in-flight set, [idempotency key]; ARGV: rate, burst, now, a job record's key
# less its id, a done set's suffix to that key, the new job's id, the key's TTL.
# Returns {wait} when the submission must wait, else {'0', jobs, tasks, final job ids, claimed}.
ADMIT = (
    _TAKE_TOKEN
    + """
if wait > 0 then return {tostring(wait)} end
local ids, prefix, suffix = redis.call('SMEMBERS', KEYS[2]), ARGV[4], ARGV[5]
"""
    + _INFLIGHT_SUMS
    + """
local claimed = 1
if KEYS[3] then
  claimed = redis.call('SET', KEYS[3], ARGV[6], 'NX', 'EX', ARGV[7]) and 1 or 0
end
return {'0', jobs, tasks, finished, claimed}
"""
)

# A tenant's work in flight, as ADMIT reads it: ARGV a job record's key less its id, a done
# set's suffix, then the job ids. Returns {jobs not final, their tasks not done, final job ids}.
INFLIGHT = (
    """
local prefix, suffix, ids = ARGV[1], ARGV[2], {unpack(ARGV, 3)}
"""
    + _INFLIGHT_SUMS
    + """
return {jobs, tasks, finished}
"""
)

# What a worker does before a task, in one step: read the job's fields (ARGV[4..]), whether
# its backend is paused (KEYS[2]) and, if ARGV[2] is '1', its spec; if ARGV[3] is '1' and the
# job has one task, its whole payload (KEYS[3]: that task needs all of it); mark a queued job
# running at ARGV[1] unless its backend is paused (the task then goes back to its queue).
BEGIN_TASK = """
local names = {}
for i = 4, #ARGV do names[#names + 1] = ARGV[i] end
local fields = redis.call('HMGET', KEYS[1], unpack(names))
local status, backend = redis.call('HGET', KEYS[1], 'status'), redis.call('HGET', KEYS[1], 'backend')
local paused = backend and redis.call('SISMEMBER', KEYS[2], backend) or 0
if status == 'queued' and paused == 0 then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1])
end
local spec = false
if ARGV[2] == '1' then spec = redis.call('HGET', KEYS[1], 'spec') end
local data = false
if ARGV[3] == '1' and (status == 'queued' or status == 'running') and paused == 0
    and redis.call('HGET', KEYS[1], 'tasks_total') == '1' then
  data = redis.call('HGETALL', KEYS[3])
end
return {fields, paused, spec, data}
"""
