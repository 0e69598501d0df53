-- wrk script: Dovetail linearizable mailbox status reads
-- (GET /v1/users/<user>/mailboxes/INBOX?consistency=linearizable: the node serving it gets a read
-- index from the group's leader and waits until it has applied that far), users in turn. Used by
-- scripts/bench-vs-etcd.sh --mode reads.
--   DOVETAIL_CLIENT_TOKEN=... wrk ... -s dovetail-status.lua http://127.0.0.1:7301 \
--     -- <run nonce> <process number> <user prefix> <users>
-- The users "<user prefix><i>", i in 0..users-1, must have an INBOX already.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

local proc, user_prefix, users
local counter = 0
local headers

function init(args)
  proc = tonumber(args[2] or "0")
  user_prefix = args[3] or "wrk-"
  users = tonumber(args[4] or "1")
  headers = { ["Authorization"] = "Bearer " .. (os.getenv("DOVETAIL_CLIENT_TOKEN") or "") }
end

function request()
  counter = counter + 1
  local user = user_prefix .. ((counter + thread_id * 7 + proc * 3) % users)
  return wrk.format("GET", "/v1/users/" .. user .. "/mailboxes/INBOX?consistency=linearizable", headers)
end
