-- Shared by etcd-put.lua and dovetail-append.lua (loaded with dofile from the same directory).
--
-- Thread ids: setup() runs once per wrk thread in wrk's setup environment and hands each thread
-- its number, so request() can build keys and GUIDs no other thread (or wrk process: see
-- BENCH_PROC) uses.
--
-- done() writes the run's numbers to $WRK_SUMMARY_FILE for scripts/bench-vs-etcd.sh: the
-- request and error counts and a grid of latency percentiles (every 1% up to 99, every 0.1% to
-- 99.9, every 0.01% to 99.99, then the maximum; microseconds, from wrk's own histogram). The
-- grid lets the script merge the percentiles of several wrk processes (one per node).

local common = {}

local next_thread = 0

function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Standard base64 with padding (etcd's JSON gateway takes keys and values as base64 bytes).
function common.base64(data)
  local out = {}
  for i = 1, #data, 3 do
    local a, b, c = data:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(n / 262144) % 64
    local c2 = math.floor(n / 4096) % 64
    local c3 = math.floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = alphabet:sub(c1 + 1, c1 + 1) .. alphabet:sub(c2 + 1, c2 + 1)
      .. (b and alphabet:sub(c3 + 1, c3 + 1) or "=")
      .. (c and alphabet:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

function done(summary, latency, requests)
  local path = os.getenv("WRK_SUMMARY_FILE")
  if not path then
    return
  end
  local f = assert(io.open(path, "w"))
  local e = summary.errors
  f:write(string.format("requests %d\nduration_us %d\n", summary.requests, summary.duration))
  f:write(string.format("errors_connect %d\nerrors_read %d\nerrors_write %d\n", e.connect, e.read, e.write))
  f:write(string.format("errors_status %d\nerrors_timeout %d\n", e.status, e.timeout))
  local grid = {}
  for p = 1, 99 do grid[#grid + 1] = p end
  for i = 1, 9 do grid[#grid + 1] = 99 + i / 10 end
  for i = 1, 9 do grid[#grid + 1] = 99.9 + i / 100 end
  for _, p in ipairs(grid) do
    f:write(string.format("p %.2f %d\n", p, latency:percentile(p)))
  end
  f:write(string.format("p 100.00 %d\n", latency.max))
  f:close()
end

return common
