-- wrk script for benches/soak/soak.sh: a mixed HTTP/1.1 load, paced by delay().
-- Environment: TOKEN (a valid RS256 token), TOKENS_FILE (unique tokens, one
-- per line), PACE_MS (pause before each request on a connection).
-- Of every 20 requests: 11 carry the cached token, 5 a unique one (each a
-- verification and a cache insert with eviction), 1 no token (401), 1 a
-- tampered token (401), 1 asks /admin without its scope (403), 1 is anonymous.
-- Prints one line: RESULT requests=… non2xx=… errors=… rps=…

local token = "Bearer " .. os.getenv("TOKEN")
local tampered = token:sub(1, -3) .. (token:sub(-2, -2) == "A" and "B" or "A") .. token:sub(-1)
local pace = tonumber(os.getenv("PACE_MS") or "10")
local tokens, n, u, i = {}, 0, 0, 0
for line in io.lines(os.getenv("TOKENS_FILE")) do
  n = n + 1
  tokens[n] = "Bearer " .. line
end

local function get(path, authorization)
  local headers = {}
  if authorization then
    headers["Authorization"] = authorization
  end
  return wrk.format("GET", path, headers)
end

function request()
  i = i + 1
  local slot = i % 20
  if slot <= 10 then
    return get("/api/cached", token)
  elseif slot <= 15 then
    u = u % n + 1
    return get("/api/unique", tokens[u])
  elseif slot == 16 then
    return get("/api/none", nil)
  elseif slot == 17 then
    return get("/api/tampered", tampered)
  elseif slot == 18 then
    return get("/admin/users", token)
  else
    return get("/public/health", nil)
  end
end

function delay()
  return pace
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d non2xx=%d errors=%d rps=%.1f\n",
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout,
    summary.requests / (summary.duration / 1e6)))
end
