-- wrk script: etcd v3 puts through the JSON gateway (POST /v3/kv/put), one distinct key per
-- request, a 100-byte value. Used by scripts/bench-vs-etcd.sh.
--   wrk ... -s etcd-put.lua http://127.0.0.1:23791 -- <run nonce> <process number>
-- Key: "bench/<nonce>/<process>/<thread>/<counter>", base64-encoded like the value.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local prefix
local counter = 0
local value = common.base64(string.rep("v", 100))
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  local nonce = args[1] or "0"
  local proc = args[2] or "0"
  prefix = "bench/" .. nonce .. "/" .. proc .. "/" .. tostring(thread_id) .. "/"
end

function request()
  counter = counter + 1
  local key = common.base64(prefix .. counter)
  local body = '{"key":"' .. key .. '","value":"' .. value .. '"}'
  return wrk.format("POST", "/v3/kv/put", headers, body)
end
