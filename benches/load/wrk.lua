-- wrk script for benches/load/run.sh. Environment:
--   HOST_HEADER   Host header to send (outbound routes are chosen by it)
--   TOKEN         a bearer token sent on every request (the cache-hit cases)
--   TOKENS_FILE   one token per line, a different one per request (cache misses);
--                 `tokens=` in the result says how many there were, so the
--                 report can tell whether the run had to wrap around
--   REPEAT        with TOKENS_FILE: send each token this many times in a row [1]
--   DPOP_FILE     one DPoP proof per line, a different one per request, beside
--                 TOKEN sent as `Authorization: DPoP …`; a proof is spent once,
--                 so a run that outlasts the file is refused (non2xx)
--   LIMIT         stop after this many responses (instruction-count profiles)
-- Prints one line: RESULT rps=… p50_us=… p99_us=… requests=… non2xx=… errors=… tokens=…

local host = os.getenv("HOST_HEADER")
local token = os.getenv("TOKEN")
local file = os.getenv("TOKENS_FILE")
local proofs_file = os.getenv("DPOP_FILE")

if host and host ~= "" then
  wrk.headers["Host"] = host
end
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
if proofs_file and proofs_file ~= "" then
  wrk.headers["Authorization"] = "DPoP " .. token
  local proofs, m, j = {}, 0, 0
  for line in io.lines(proofs_file) do
    m = m + 1
    proofs[m] = line
  end
  function request()
    j = j % m + 1
    wrk.headers["DPoP"] = proofs[j]
    return wrk.format()
  end
end

local tokens, n, i = {}, 0, 0
local each = tonumber(os.getenv("REPEAT") or "") or 1
if file and file ~= "" then
  for line in io.lines(file) do
    n = n + 1
    tokens[n] = "Bearer " .. line
  end
  function request()
    i = i + 1
    if i > n * each then
      i = 1
    end
    wrk.headers["Authorization"] = tokens[math.floor((i - 1) / each) + 1]
    return wrk.format()
  end
end

local limit, seen = tonumber(os.getenv("LIMIT") or ""), 0
if limit then
  function response()
    seen = seen + 1
    if seen >= limit then
      wrk.thread:stop()
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.1f p50_us=%d p99_us=%d requests=%d non2xx=%d errors=%d tokens=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, n))
end
