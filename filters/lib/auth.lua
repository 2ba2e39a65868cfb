-- auth: who is calling, and may they?
--
-- auth.request(h, cfg, req) -> true to continue, false when it answered.
-- cfg (from the route's filter context, built by sluice from the rules):
--   ip       = { allow = {"10.0.0.0/8", ...}, deny = {...} }   -- IPv4 CIDRs, exact IPv6
--   api_key  = { header = "x-api-key", query = "api_key", json_field = "api_key",
--                keys = { ["<sha256 hex of key>"] = { consumer = "...", plan = "..." } } }
--   basic    = { realm = "...", users = { ["<user>"] = { password_sha256 = "...",
--                                                       consumer = "...", plan = "..." } } }
--   headers  = { consumer = "x-sluice-consumer", plan = "x-sluice-plan" }
-- Missing credentials → 401, wrong ones → 403, malformed → 400; each a JSON
-- body. On success the consumer and plan go into request headers (any
-- client-sent copies are removed first) and dynamic metadata `sluice`.

local json, sha256, http = ...

local M = {}

local function ipv4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if a > 255 or b > 255 or c > 255 or d > 255 then return nil end
  return ((a * 256 + b) * 256 + c) * 256 + d
end

-- "1.2.3.4:5678" or "[::1]:5678" → "1.2.3.4" / "::1"
local function host_of(addr)
  if addr == nil then return nil end
  return addr:match("^%[(.*)%]:%d+$") or addr:match("^([^:]+):%d+$") or addr
end

local function in_cidr(ip, cidr)
  local net, len = cidr:match("^(.-)/(%d+)$")
  net = net or cidr
  len = tonumber(len)
  local a, n = ipv4(ip), ipv4(net)
  if a == nil or n == nil then
    return ip == net -- IPv6: exact match only
  end
  len = len or 32
  local size = 2 ^ (32 - len)
  return math.floor(a / size) == math.floor(n / size)
end

local function any_match(ip, list)
  for _, cidr in ipairs(list or {}) do
    if in_cidr(ip, cidr) then return true end
  end
  return false
end

local function check_ip(h, cfg)
  local ip = host_of(h:streamInfo():downstreamRemoteAddress())
  if ip == nil then
    http.reject(h, 403, "forbidden", "client address unknown")
    return false
  end
  if any_match(ip, cfg.deny) or (cfg.allow and #cfg.allow > 0 and not any_match(ip, cfg.allow)) then
    http.reject(h, 403, "forbidden", "client address not allowed")
    return false
  end
  return true
end

-- Returns key, or nil + status on failure (nil, nil when simply absent).
local function find_api_key(h, cfg, req)
  if cfg.header then
    local v = h:headers():get(cfg.header)
    if v ~= nil and v ~= "" then return v end
  end
  if cfg.query then
    local v = req.query[cfg.query]
    if v ~= nil and v ~= "" then return v end
  end
  if cfg.json_field then
    local body = req.body(h)
    if body ~= nil and body ~= "" then
      local doc = json.decode(body)
      if type(doc) ~= "table" then return nil, 400, "request body is not a JSON object" end
      local v = doc[cfg.json_field]
      if type(v) == "string" and v ~= "" then return v end
    end
  end
  return nil
end

local function check_api_key(h, cfg, req)
  local key, status, why = find_api_key(h, cfg, req)
  if status then
    http.reject(h, status, "bad_request", why)
    return nil
  end
  if key == nil then
    http.reject(h, 401, "unauthorized", "missing API key")
    return nil
  end
  local who = cfg.keys and cfg.keys[sha256.hex(key)]
  if who == nil then
    http.reject(h, 403, "forbidden", "invalid API key")
    return nil
  end
  return who
end

local function check_basic(h, cfg)
  local realm = cfg.realm or "sluice"
  local value = h:headers():get("authorization")
  if value == nil then
    http.reject(h, 401, "unauthorized", "missing credentials",
      { ["www-authenticate"] = 'Basic realm="' .. realm:gsub('["\\]', "") .. '"' })
    return nil
  end
  local encoded = value:match("^[Bb]asic%s+(%S+)%s*$")
  local decoded = encoded and http.base64_decode(encoded)
  local user, pass = nil, nil
  if decoded then user, pass = decoded:match("^([^:]*):(.*)$") end
  if user == nil then
    http.reject(h, 400, "bad_request", "malformed Basic authorization header")
    return nil
  end
  local entry = cfg.users and cfg.users[user]
  if entry == nil or entry.password_sha256 ~= sha256.hex(pass) then
    http.reject(h, 403, "forbidden", "invalid credentials")
    return nil
  end
  return entry
end

function M.request(h, cfg, req)
  local names = cfg.headers or {}
  local consumer_header = names.consumer or "x-sluice-consumer"
  local plan_header = names.plan or "x-sluice-plan"
  -- Never trust identity headers from the client.
  h:headers():remove(consumer_header)
  h:headers():remove(plan_header)

  if cfg.ip and not check_ip(h, cfg.ip) then return false end
  local who = nil
  if cfg.api_key then
    who = check_api_key(h, cfg.api_key, req)
    if who == nil then return false end
  elseif cfg.basic then
    who = check_basic(h, cfg.basic)
    if who == nil then return false end
  end
  if who ~= nil then
    req.consumer, req.plan = who.consumer, who.plan
    if who.consumer then h:headers():replace(consumer_header, who.consumer) end
    if who.plan then h:headers():replace(plan_header, who.plan) end
    local meta = h:streamInfo():dynamicMetadata()
    if who.consumer then meta:set("sluice", "consumer", who.consumer) end
    if who.plan then meta:set("sluice", "plan", who.plan) end
  end
  return true
end

return M
