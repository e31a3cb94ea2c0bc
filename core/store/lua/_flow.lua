-- The endpoint's pace as a control loop (prepended to complete.lua after _lib.lua).
--
-- The loop measures what the receiver accepts and paces just under it (as BBR does for TCP: pace
-- at the measured bottleneck rate, probe above it only briefly), instead of cutting on every
-- refusal and climbing back (the CUBIC loop before it parked a strict limiter's endpoint at 0.82 of
-- the limit, and cut a receiver that refuses a third of its requests whatever the rate to 0.03 of
-- its configured rate).
--
-- State lives in hp:ep:{eid}:flow so every worker paces from the same numbers:
--   eff_rate      the pace now (per minute), never above the endpoint's `rate` (its ceiling) nor
--                 below its `min_rate`
--   est           the estimate of what the receiver accepts (per minute); absent while none is
--                 known (the pace is then the ceiling)
--   w_max         the lowest pace refused since the estimate was last raised past it (the upper end
--                 of a probe search; shown as the rate that last failed)
--   s0            the share of answers refused whatever the pace (an unhealthy node behind a load
--                 balancer): refusals up to that share say nothing about load
--   win_ms, win_n, win_r, win_first, win_last: the measuring window: answers to requests sent
--                 from win_ms on, how many were refused, the first and last send moment counted
--   cut_ms, cut_from, cut_share, chain_from, noise_n: the last cut on a window's verdict, the pace
--                 before it and the share refused that caused it, the pace before this run of cuts,
--                 and how many windows in a row looked like refusals that are not about load
--   probe_ms, probe_rate, recover: the slot of the probe under way (0: none), its pace, and whether
--                 it goes back to a pace that held
--   gain, next_probe_ms, ramp, confirm: how far above the estimate the next probe goes and not
--                 before when; a raise waiting for a window to confirm it, and the estimate before it
--   held, held_ms, next_recover_ms, recover_gap: a pace that held for a whole long window (and when),
--                 the next probe back to it, and the intervals between such probes
--   trim_ms, last_ok_ms, last_start_ms: the last trim, the last success, the latest send answered
--   streak_fails counts overload answers since the last success; streak_rate / streak_wmax /
--   streak_est remember the pace when that streak began (restored after an outage)
--   backoff_level consecutive whole-endpoint backoff pauses (an outage)
--
-- The law (on every answer to a request sent while the rule applies):
--   * cruise at KEEP * est. A refusal beyond the usual share s0 trims: est = min(est, the pace
--     refused), once per window; right after a probe that raised the estimate, back to the
--     estimate before it (a burst allowance takes a probe it cannot keep up).
--   * every window (WIN_N answers and WIN_MS, or sooner once WIN_EARLY refusals beyond s0 came in
--     and at least EARLY_SHARE of it was refused: a drop is found within a few refusals) gives a
--     verdict. Refusals beyond s0 of at least CONGESTED share (and more than chance): the pace is
--     cut to just under the rate the receiver accepted in that window (successes over the window's
--     send span, refusals included). But when two windows in a row after a cut show that what the
--     receiver accepts fell with the pace (the refusals did not go when the pace went down), they
--     are not about load: s0 takes that share, and the pace goes back to where it was before the
--     cuts (the configured rate, or the last rate that held).
--   * probe: one shorter gap (probe_start). After a cut, a search halfway (geometrically) between
--     the estimate and the pace refused; past it, GAIN_MIN above the estimate every PROBE_GAP
--     requests, twice as far each time a raise is confirmed by a window. While the estimate is well
--     under a pace that held in the last RECOVER_FOR_MS, a probe straight back to it every
--     recover_gap intervals (twice that once refused: at most one refusal per 24 requests).
--   * outage (nothing accepted for OUTAGE_MIN_MS and OUTAGE_MIN_FAILS answers in a row): the
--     whole endpoint pauses on the exponential schedule the sender computed, and what the streak
--     taught is undone, so the pace after the outage is the pace before it.
--   * a Retry-After is a floor for the whole endpoint on top of all this.
--
-- Measured (bench/adaptive.py, and the same scripts on a virtual clock in tests/pacing_model.py):
-- BENCHMARKS.md, "Adaptive pacing, second loop".

local KEEP = 0.98           -- the pace as a share of the estimate: room for the sender's jitter
local HOLD_MS = 200         -- = the pump's booking horizon: slots booked before a change go out after it
local WIN_N = 16           -- a window: this many answers over at least WIN_MS
local WIN_MS = 1000
local WIN_EARLY = 3
local EARLY_SHARE = 0.5     -- a window closes early on this share refused beyond s0 (a drop)
local CONGESTED = 0.05      -- the share refused beyond s0 that says the pace is above what is taken
local FELL_WITH_PACE = 0.75 -- what was accepted fell this much with the pace (in log terms): not load
local SHARE_ROSE = 0.15     -- ... unless the share refused rose by more than this
local PROBE_SOON = 3         -- intervals (and answers) between the probes of a search
local GAIN_MIN, GAIN_MAX = 0.02, 0.5
local PROBE_GAP = 60        -- requests between probes once the search is over
local PROBE_GAP_MIN_MS, PROBE_GAP_MAX_MS = 2000, 20000
local RECOVER_GAP, RECOVER_GAP_MIN_MS = 12, 2000
local RECOVER_FOR_MS = 120000
local HELD_MS = 2500        -- a window this long at a pace with no refusals: a pace that held
local OUTAGE_MIN_MS = 2000
local OUTAGE_MIN_FAILS = 3

local FIELDS = {'eff_rate', 'est', 'w_max', 's0', 'win_ms', 'win_n', 'win_r', 'win_first', 'win_last',
  'cut_ms', 'cut_from', 'cut_share', 'chain_from', 'chain_share', 'noise_n', 'probe_ms', 'probe_rate', 'recover',
  'next_recover_ms', 'recover_gap', 'held', 'held_ms', 'confirm', 'ramp', 'gain', 'next_probe_ms', 'last_ok_ms',
  'last_start_ms', 'streak_fails', 'streak_rate', 'streak_wmax', 'streak_est',
  'trim_ms', 'backoff_level', 'tat', 'paused_at', 'pause_reason'}

local F = {}  -- eid -> the endpoint's flow state as numbers, loaded once per script call

local function flow_load(eid)
  local f = F[eid]
  if f then return f end
  local e = redis.call('HMGET', 'hp:ep:' .. eid, 'rate', 'min_rate')
  local v = redis.call('HMGET', 'hp:ep:' .. eid .. ':flow', unpack(FIELDS))
  local n = {}
  for i, name in ipairs(FIELDS) do n[name] = tonumber(v[i]) end
  local ceiling = tonumber(e[1]) or 60
  f = {
    ceiling = ceiling, floor = math.min(ceiling, tonumber(e[2]) or 1),
    eff = math.min(ceiling, n.eff_rate or ceiling), est = n.est, w_max = n.w_max, s0 = n.s0 or 0,
    win = n.win_ms or 0, wn = n.win_n or 0, wr = n.win_r or 0, wfirst = n.win_first or 0, wlast = n.win_last or 0,
    cut = n.cut_ms or 0, cut_from = n.cut_from, cut_share = n.cut_share or 0,
    chain_from = n.chain_from, chain_share = n.chain_share or 0, noise_n = n.noise_n or 0,
    probe = n.probe_ms or 0, probe_rate = n.probe_rate or 0, recover = n.recover or 0,
    next_recover = n.next_recover_ms or 0, recover_gap = n.recover_gap or RECOVER_GAP,
    held = n.held, held_ms = n.held_ms or 0, confirm = n.confirm, ramp = n.ramp or 0,
    gain = n.gain or GAIN_MIN, next_probe = n.next_probe_ms or 0,
    last_ok = n.last_ok_ms or 0, last_start = n.last_start_ms or 0,
    streak = n.streak_fails or 0, streak_rate = n.streak_rate, streak_wmax = n.streak_wmax,
    streak_est = n.streak_est, level = n.backoff_level or 0, tat = n.tat or 0,
    trimmed = n.trim_ms or 0,
    -- when the current backoff pause began: refusals of requests sent before it belong to it
    backoff_at = v[#FIELDS] == 'backoff' and (n.paused_at or 0) or 0,
    changed = false, pause_until = nil, pause_reason = nil, pause_code = nil, outage = false, events = {},
  }
  F[eid] = f
  return f
end

local function clamp(f, rate)
  return math.max(f.floor, math.min(f.ceiling, rate))
end

local function interval_ms(f)
  return 60000 / f.eff
end

-- Cruise just under the estimate (at the ceiling while there is none). A slower pace starts a whole
-- new interval after the last slot booked at the old one (the pacing clock is the next slot's time).
local function cruise(f)
  f.probe = 0
  local old = f.eff
  f.eff = f.est and clamp(f, KEEP * f.est) or f.ceiling
  if f.eff < old then f.tat = f.tat + 60000 / f.eff - 60000 / old end
end

-- Two standard deviations of the number of refusals among n answers at the usual share s0: more
-- than that beyond s0 * n is not chance.
local function spread(f, n)
  return 2 * math.sqrt(n * f.s0 * (1 - f.s0))
end

local function window_restart(f, at)
  f.win, f.wn, f.wr, f.wfirst, f.wlast = at, 0, 0, 0, 0
end

-- The rate the window's requests went out at: its answers over the span of their send moments.
local function window_sent_rate(f)
  return f.wn * 60000 / (math.max(0, f.wlast - f.wfirst) + interval_ms(f))
end

-- A search is under way while the estimate and the lowest pace refused since are more than two
-- least gains apart.
local function searching(f)
  return f.w_max and f.w_max > f.est * (1 + 2 * GAIN_MIN)
end

-- Down to the estimate just lowered: the pacing clock holds one (new) interval, and the endpoint's
-- timeline shows the cut.
local function cut_to_estimate(f, now)
  cruise(f)
  f.tat = math.max(f.tat, now + interval_ms(f))
  f.events[#f.events + 1] = {start_ms = now, end_ms = math.floor(f.tat), reason = 'congestion', status_code = f.code}
end

-- Requests before a probe that fails: PROBE_GAP at the estimate, within the bounds in seconds.
local function probe_gap_ms(f)
  return math.max(PROBE_GAP_MIN_MS, math.min(PROBE_GAP_MAX_MS, PROBE_GAP * 60000 / (f.est or f.eff)))
end

-- Soon: a few intervals at the pace, at least half a second.
local function probe_soon_ms(f)
  return math.max(WIN_MS / 2, PROBE_SOON * interval_ms(f))
end

-- The next probe's pace: halfway (geometrically) between the estimate and the lowest pace refused
-- since, while they are apart (a search; the estimate from a refusing window can be as low as half
-- of what a strict limiter takes); else `gain` above the estimate, a gain that doubles while probes
-- hold (a capacity that came back is found in a few probes).
local function probe_target(f)
  if searching(f) then
    return math.sqrt(f.est * f.w_max)
  end
  return f.est * (1 + f.gain)
end

-- While the estimate is well below a pace that held in the last RECOVER_FOR_MS (a capacity that
-- dropped may come back), a probe goes straight back to that pace every few intervals: one refusal
-- each while it has not come back, and the old pace at once when it has.
local function recover_gap_ms(f)
  return math.max(RECOVER_GAP_MIN_MS, f.recover_gap * interval_ms(f))
end

-- Probe by one shorter gap: the next slot not yet booked comes an interval of the probe's pace after
-- the last booked one. A strict limiter refuses exactly that request if it takes less than the
-- probe's pace; a limiter with a burst allowance takes it either way, and the cruise trim brings
-- the pace back should its burst run out. One refusal at the most, and none of the requests after it.
local function probe_start(f, now, target, recover)
  target = clamp(f, target)
  if target <= f.eff * 1.001 then return end
  if f.s0 > 0 then
    -- One answer says little where some are refused whatever the pace: raise the estimate and let
    -- the next windows judge it.
    f.est = target < f.ceiling and target or nil
    f.next_probe = now + probe_soon_ms(f)
    cruise(f)
    return
  end
  local slot = f.tat - interval_ms(f) + 60000 / target
  if slot <= now then return end  -- too late for this gap
  f.tat = slot
  f.probe, f.probe_rate, f.recover = f.tat, target, recover and 1 or 0
  if recover then f.next_recover = now + recover_gap_ms(f) end
end

-- The probe's answer.
local function probe_end(f, now, held)
  if held then
    -- Until a window at the new pace confirms it: a burst allowance takes a probe it cannot keep up.
    -- (After a probe back to a pace that held, a refusal puts the estimate halfway back, not all the
    -- way: the capacity came back, if not all of it.)
    f.confirm = f.recover == 1 and math.sqrt(f.est * f.probe_rate) or f.est
    f.est = f.probe_rate < f.ceiling and f.probe_rate or nil  -- held at the configured rate: no limit known
    if not (f.w_max and f.est and f.est < f.w_max) then
      -- Past every pace refused: the next probe goes further (twice the gain) once a window at this
      -- pace has confirmed it, so a burst allowance cannot carry the pace up step after step.
      f.w_max, f.ramp = nil, 1
    end
    f.next_probe = now + probe_soon_ms(f)
  elseif f.recover == 1 then
    -- Not back yet: the search below the pace that held before goes on as it was, and the next
    -- probe back waits twice as long.
    f.probe = 0
    f.recover_gap = math.min(2 * RECOVER_GAP, f.recover_gap * 2)
    return
  else
    f.w_max = f.probe_rate
    f.gain = GAIN_MIN
    f.next_probe = now + (searching(f) and probe_soon_ms(f) or probe_gap_ms(f))
  end
  f.probe = 0
  cruise(f)
  -- A new pace is measured afresh; after a refusal the pace is the same, and the window goes on (the
  -- probe's own answer is not counted in it).
  if held then window_restart(f, now) end
end

-- A window's verdict.
local function window_close(f, now)
  f.confirm = nil
  local n, r = f.wn, f.wr
  local share = r / n
  local excess = share - f.s0
  local ramp = f.ramp
  f.ramp = 0
  if excess < CONGESTED or r - f.s0 * n < 2 + spread(f, n) then
    if ramp == 1 then f.gain = math.min(GAIN_MAX, f.gain * 2) end
    -- The receiver took this pace. A usual share of refusals that has fallen follows it down.
    if f.s0 > 0 then
      f.s0 = 0.75 * f.s0 + 0.25 * share
      if f.s0 < 0.01 then f.s0 = 0 end
    end
    f.cut_from, f.chain_from, f.noise_n = nil, nil, 0
    -- With a backlog, over long enough that a burst allowance of half a second cannot pass for
    -- capacity: the receiver takes this pace.
    if window_sent_rate(f) >= 0.9 * f.eff and now - f.win >= HELD_MS then
      local fresh = f.held and now - f.held_ms <= RECOVER_FOR_MS
      f.held, f.held_ms = fresh and math.max(f.held, f.eff) or f.eff, now
      f.recover_gap = RECOVER_GAP
    end
    window_restart(f, now)
    return
  end
  -- Load: the receiver accepts about as much at a lower pace (its capacity). Errors that are not
  -- about load: what it accepts falls with the pace, and the share refused stays where it was (a
  -- share that rose says the window before was partly before a drop, or spent a burst allowance).
  -- One such window can still be chance, two in a row are not.
  if f.cut_from and f.eff < 0.9 * f.cut_from and share <= f.cut_share + SHARE_ROSE
      and math.log(f.cut_from * (1 - f.cut_share) / (f.eff * (1 - share)))
        >= FELL_WITH_PACE * math.log(f.cut_from / f.eff) then
    f.noise_n = f.noise_n + 1
  else
    f.noise_n = 0
  end
  -- However the windows fell: a run of cuts that took the pace to a quarter of where it began and left
  -- most of the share refused says the same (cutting does not lower the refusals).
  if f.chain_from and f.eff <= f.chain_from / 4 and share >= 0.85 * f.chain_share then f.noise_n = 2 end
  if f.noise_n >= 2 then
    -- Go back to the pace before this run of cuts (the configured rate, or the last that held), and
    -- take this share as the usual one; the refused deliveries retry at that pace. A receiver that
    -- is also limited is then cut once more, to what it accepts beyond that share.
    f.s0 = math.min(0.9, share)
    f.est = f.chain_from and f.chain_from < f.ceiling and f.chain_from or nil
    f.cut_from, f.chain_from, f.noise_n, f.w_max = nil, nil, 0, nil
    cruise(f)
    window_restart(f, now + HOLD_MS)
    return
  end
  if r == n then
    -- Nothing accepted: no measure of what the receiver takes (an outage is the outage rule's).
    window_restart(f, now)
    return
  end
  -- Congestion: pace just under what the receiver accepted in this window.
  local accepted = math.min(f.eff, window_sent_rate(f)) * (1 - share) / (1 - f.s0)
  if not f.chain_from then f.chain_from, f.chain_share = f.eff, share end
  f.cut_from, f.cut_share = f.eff, share
  f.w_max = f.eff
  f.est = math.max(f.floor, accepted)
  f.cut = now
  f.gain = GAIN_MIN
  f.probe = 0
  -- An estimate from a refusing window can be low (a strict limiter paced between one and two times
  -- its rate accepts every other request): probe again soon.
  f.next_probe = now + probe_soon_ms(f)
  cut_to_estimate(f, now)
  window_restart(f, now + HOLD_MS)
end

-- An answer (refused or not) to a request sent at `started`; `busy` when it went an interval or
-- less after the one before it (the endpoint has a backlog: only then does an answer say anything
-- about a higher pace).
local function flow_answer(f, now, started, refused)
  -- (an interval of the cruise pace: a probe's faster slots start after a cruise send)
  local busy = started - f.last_start <= 1.5 * 60000 / (f.est and clamp(f, KEEP * f.est) or f.eff)
  if f.win == 0 then window_restart(f, started) end  -- the first answer opens the first window
  f.last_start = math.max(f.last_start, started)
  f.changed = true
  if f.probe > 0 and started >= f.probe - 1 then
    if started < f.probe + interval_ms(f) / 2 then
      probe_end(f, now, not refused)
      return
    end
    -- Its answer never came (or the probe's slot went unused): probe again later.
    f.probe = 0
    f.next_probe = now + probe_soon_ms(f)
  end
  if refused and f.s0 == 0 and f.trimmed < f.win and started >= f.win then
    -- Refused in cruise: the receiver takes less than this pace; after a probe that held, less than
    -- that probe's pace (a burst allowance took it): back to the estimate before it.
    f.w_max = f.eff
    if f.confirm and f.recover == 1 then f.recover_gap = math.min(2 * RECOVER_GAP, f.recover_gap * 2) end
    f.est = math.min(f.confirm or f.est or f.eff, f.eff)
    f.confirm, f.ramp = nil, 0
    f.probe = 0
    f.trimmed = now
    f.gain = GAIN_MIN
    f.next_probe = math.max(f.next_probe, now + probe_gap_ms(f))
    cut_to_estimate(f, now)
  end
  if started < f.win then return end
  f.wn = f.wn + 1
  if refused then f.wr = f.wr + 1 end
  if f.wfirst == 0 then f.wfirst = started end
  f.wlast = math.max(f.wlast, started)
  local full = f.wn >= WIN_N and now - f.win >= WIN_MS
  local early = f.wr - f.s0 * f.wn >= WIN_EARLY + spread(f, f.wn) and f.wr / f.wn - f.s0 >= EARLY_SHARE
    and f.wn >= WIN_N / 2 and now - f.win >= WIN_MS / 2
  if full or early then
    window_close(f, now)
  elseif f.est and f.probe == 0 and busy and f.wr - f.s0 * f.wn < 1 then
    if f.held and now - f.held_ms > RECOVER_FOR_MS then f.held = nil end
    if f.held and f.est < 0.9 * f.held and now >= f.next_recover then
      probe_start(f, now, f.held, true)
    elseif now >= f.next_probe and f.wn >= PROBE_SOON and f.ramp == 0 then
      probe_start(f, now, probe_target(f), false)
    end
  end
end

-- A success to a request sent at `started`.
local function flow_success(f, now, started)
  f.last_ok, f.streak, f.level = now, 0, 0
  flow_answer(f, now, started, false)
end

-- A 429/503 to a request started at `started`. `backoff_until` is the exponential pause the sender
-- drew for an outage; `retry_after_until` the receiver's own (0 if it sent none).
local function flow_overload(f, now, started, code, backoff_until, retry_after_until)
  if f.streak == 0 then f.streak_rate, f.streak_wmax, f.streak_est = f.eff, f.w_max, f.est end
  f.streak = f.streak + 1
  f.changed = true
  f.pause_code, f.code = code, code
  if retry_after_until > 0 then
    f.pause_until = math.max(f.pause_until or 0, retry_after_until)
    f.pause_reason = 'retry_after'
  end
  if f.streak >= OUTAGE_MIN_FAILS and now - f.last_ok >= OUTAGE_MIN_MS then
    -- Nothing is getting through: an outage, not a pace to learn. Pause the endpoint and restore
    -- the pace it had before this streak of refusals.
    f.eff, f.w_max, f.est = f.streak_rate or f.eff, f.streak_wmax, f.streak_est
    f.tat = math.min(f.tat, now + 60000 / f.eff)  -- (a cut during the streak held the clock at its pace)
    f.probe = 0
    window_restart(f, now + HOLD_MS)
    -- One pause (one step of the schedule) per outage event: a request already on its way when the
    -- current pause began does not pause the endpoint again.
    if started <= f.backoff_at then return end
    f.outage = true
    if retry_after_until == 0 then
      f.pause_until = math.max(f.pause_until or 0, backoff_until)
      f.pause_reason = 'backoff'
      f.backoff_at = now
    end
    return
  end
  flow_answer(f, now, started, true)
end

local function field(fields, name, value)
  fields[#fields + 1] = name
  fields[#fields + 1] = value == nil and '' or tostring(value)
end

-- Write every endpoint's changed flow state; returns {eid, paused_until, ...} for the pauses set.
local function flow_save(now)
  local paused = {}
  for eid, f in pairs(F) do
    if f.changed then
      local fkey = 'hp:ep:' .. eid .. ':flow'
      local fields = {}
      for _, pair in ipairs({
        {'eff_rate', f.eff}, {'s0', f.s0}, {'win_ms', f.win}, {'win_n', f.wn}, {'win_r', f.wr},
        {'win_first', f.wfirst}, {'win_last', f.wlast}, {'cut_ms', f.cut}, {'cut_share', f.cut_share},
        {'chain_share', f.chain_share}, {'noise_n', f.noise_n},
        {'probe_ms', f.probe}, {'probe_rate', f.probe_rate}, {'recover', f.recover},
        {'next_recover_ms', f.next_recover}, {'recover_gap', f.recover_gap}, {'held_ms', f.held_ms}, {'ramp', f.ramp},
        {'gain', f.gain},
        {'next_probe_ms', f.next_probe}, {'last_ok_ms', f.last_ok}, {'last_start_ms', f.last_start},
        {'streak_fails', f.streak}, {'tat', f.tat}, {'backoff_level', f.level}, {'trim_ms', f.trimmed},
      }) do field(fields, pair[1], pair[2]) end
      -- Absent values are deleted, not stored empty: readers take a missing field for "none".
      local gone = {}
      for _, pair in ipairs({{'est', f.est}, {'w_max', f.w_max}, {'cut_from', f.cut_from}, {'chain_from', f.chain_from},
          {'held', f.held}, {'confirm', f.confirm},
          {'streak_rate', f.streak_rate}, {'streak_wmax', f.streak_wmax}, {'streak_est', f.streak_est}}) do
        if pair[2] then field(fields, pair[1], pair[2]) else gone[#gone + 1] = pair[1] end
      end
      if #gone > 0 then redis.call('HDEL', fkey, unpack(gone)) end
      if f.pause_until then
        local current = tonumber(redis.call('HGET', fkey, 'paused_until')) or 0
        local until_ms = math.max(current, f.pause_until)
        f.pause_until = until_ms  -- complete.lua holds the refused deliveries until then
        -- Nothing goes out before the pause ends: the pacing clock restarts there too.
        field(fields, 'paused_until', until_ms)
        field(fields, 'pause_reason', f.pause_reason)
        field(fields, 'paused_at', now)
        field(fields, 'tat', math.max(f.tat, until_ms))
        if f.outage and f.pause_reason == 'backoff' then field(fields, 'backoff_level', f.level + 1) end
        f.events[#f.events + 1] = {start_ms = now, end_ms = until_ms, reason = f.pause_reason,
          status_code = f.pause_code}
        paused[#paused + 1] = eid
        paused[#paused + 1] = until_ms
      end
      redis.call('HSET', fkey, unpack(fields))
      -- The pause log the endpoint timeline shows: newest first, the last 100.
      for _, event in ipairs(f.events) do
        redis.call('LPUSH', 'hp:ep:' .. eid .. ':pauses', cjson.encode(event))
      end
      if #f.events > 0 then redis.call('LTRIM', 'hp:ep:' .. eid .. ':pauses', 0, 99) end
    end
  end
  return paused
end
