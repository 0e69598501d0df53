-- wrk script: Dovetail appends of one message each
-- (POST /v1/users/<user>/mailboxes/INBOX/messages), a GUID no other request uses, users in
-- turn so the load spreads over the groups. Used by scripts/bench-vs-etcd.sh.
--   DOVETAIL_CLIENT_TOKEN=... wrk ... -s dovetail-append.lua http://127.0.0.1:7301 \
--     -- <run nonce: 8 hex digits> <process number> <user prefix> <users>
-- The users "<user prefix><i>", i in 0..users-1, must have an INBOX already.
-- GUID (32 hex digits): nonce (8) .. process (4) .. thread (4) .. 8 zeros .. counter (8).

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

local nonce, proc, user_prefix, users
local counter = 0
local headers

function init(args)
  nonce = args[1] or "00000000"
  proc = tonumber(args[2] or "0")
  user_prefix = args[3] or "wrk-"
  users = tonumber(args[4] or "1")
  local token = os.getenv("DOVETAIL_CLIENT_TOKEN") or ""
  headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }
end

function request()
  counter = counter + 1
  -- Threads start at different users, so their first requests do not all hit one group.
  local user = user_prefix .. ((counter + thread_id * 7 + proc * 3) % users)
  local guid = nonce .. string.format("%04x%04x00000000%08x", proc, thread_id, counter)
  local body = '{"messages":[{"guid":"' .. guid .. '","size":4096}]}'
  return wrk.format("POST", "/v1/users/" .. user .. "/mailboxes/INBOX/messages", headers, body)
end
