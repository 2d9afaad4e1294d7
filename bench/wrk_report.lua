-- Prints a JSON line with the figures the benchmark records (wrk's own output lacks p95).
-- Optional: WRK_METHOD, WRK_BODY_FILE, WRK_AUTH, WRK_CTYPE, WRK_PATHS (comma-separated, rotated).
local method = os.getenv("WRK_METHOD") or "GET"
local auth = os.getenv("WRK_AUTH")
local ctype = os.getenv("WRK_CTYPE")
local body = nil
local body_file = os.getenv("WRK_BODY_FILE")
if body_file then
  local f = assert(io.open(body_file, "rb")); body = f:read("*a"); f:close()
end
local paths = {}
for p in string.gmatch(os.getenv("WRK_PATHS") or "", "([^,]+)") do table.insert(paths, p) end
local i = 0

request = function()
  local headers = {}
  if auth then headers["Authorization"] = "Bearer " .. auth end
  if ctype then headers["Content-Type"] = ctype end
  local path = nil
  if #paths > 0 then i = i % #paths + 1; path = paths[i] end
  return wrk.format(method, path, headers, body)
end

done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout
  io.write(string.format('BENCH {"requests": %d, "duration_s": %.3f, "errors": %d, "non2xx": %d, "p50_ms": %.2f, "p95_ms": %.2f, "p99_ms": %.2f}\n',
    summary.requests, summary.duration / 1e6, errors, summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
