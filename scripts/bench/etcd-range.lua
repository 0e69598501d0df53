-- wrk script: etcd v3 linearizable reads through the JSON gateway (POST /v3/kv/range of one key,
-- serializable false: etcd's default, a read index from the leader first), keys in turn. Used by
-- scripts/bench-vs-etcd.sh --mode reads.
--   wrk ... -s etcd-range.lua http://127.0.0.1:23791 -- <run nonce> <process number> <key prefix> <keys>
-- The keys "<key prefix><i>", i in 0..keys-1, must exist already (the script puts them).

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local proc, key_prefix, keys
local counter = 0
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  proc = tonumber(args[2] or "0")
  key_prefix = args[3] or "bench-read/"
  keys = tonumber(args[4] or "1")
end

function request()
  counter = counter + 1
  -- The same order as dovetail-status.lua's users.
  local key = common.base64(key_prefix .. ((counter + thread_id * 7 + proc * 3) % keys))
  return wrk.format("POST", "/v3/kv/range", headers, '{"key":"' .. key .. '"}')
end
