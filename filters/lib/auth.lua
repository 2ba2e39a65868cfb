-- auth: who is calling, and may they? (Client address rules are enforced
-- before this, by Envoy's native RBAC filter.)
--
-- auth.request(h, cfg, req) -> true to continue, false when it answered.
-- cfg (from the route's filter context, built by sluice from the rules):
--   api_key  = { header = "x-api-key", query = "api_key", json_field = "api_key",
--                keys = { ["<sha256 hex of key>"] = { consumer = "...", plan = "..." } } }
--   basic    = { realm = "...", users = { ["<user>"] = { password_sha256 = "...",
--                                                       consumer = "...", plan = "..." } } }
--   jwt      = { header = "authorization", issuer = "...", audiences = {...},
--                keys = { ["<kid>" or "*"] = "<base64 DER public key>" },
--                consumer_claim = "sub", plan_claim = "plan", skew_seconds = 60 }
--              RS256 only, verified with Envoy's importPublicKey/verifySignature.
--   headers  = { consumer = "x-sluice-consumer", plan = "x-sluice-plan" }
-- Missing credentials → 401, wrong ones → 403, malformed → 400; each a JSON
-- body. On success the consumer and plan go into request headers (any
-- client-sent copies are removed first) and dynamic metadata `sluice`.

local json, sha256, http = ...

local M = {}

-- Digests of recently presented secrets. The VM lives as long as the
-- Envoy worker, so a client's key is hashed once, not on every request;
-- the table is dropped whole when full, bounding memory whatever clients
-- send.
local digests, digest_count, DIGEST_LIMIT = {}, 0, 1024

local function digest(secret)
  local d = digests[secret]
  if d == nil then
    d = sha256.hex(secret)
    if digest_count >= DIGEST_LIMIT then
      digests, digest_count = {}, 0
    end
    digests[secret] = d
    digest_count = digest_count + 1
  end
  return d
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
      if not json.is_object(doc) then return nil, 400, "request body is not a JSON object" end
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
  local who = cfg.keys and cfg.keys[digest(key)]
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
  if entry == nil or entry.password_sha256 ~= digest(pass) then
    http.reject(h, 403, "forbidden", "invalid credentials")
    return nil
  end
  return entry
end

local function b64url_decode(s)
  local pad = #s % 4
  if pad == 1 then return nil end
  s = s:gsub("-", "+"):gsub("_", "/") .. string.rep("=", (4 - pad) % 4)
  return http.base64_decode(s)
end

local function has(list, value)
  for _, v in ipairs(list or {}) do
    if v == value then return true end
  end
  return false
end

local function check_jwt(h, cfg)
  local name = cfg.header or "authorization"
  local value = h:headers():get(name)
  if value == nil or value == "" then
    http.reject(h, 401, "unauthorized", "missing bearer token", { ["www-authenticate"] = "Bearer" })
    return nil
  end
  local token = value
  if name == "authorization" then token = value:match("^[Bb]earer%s+(%S+)%s*$") end
  local hb, pb, sb = (token or ""):match("^([%w_-]+)%.([%w_-]+)%.([%w_-]+)$")
  local header = hb and json.decode(b64url_decode(hb) or "")
  local claims = pb and json.decode(b64url_decode(pb) or "")
  local sig = sb and b64url_decode(sb)
  if type(header) ~= "table" or type(claims) ~= "table" or sig == nil then
    http.reject(h, 400, "bad_request", "malformed bearer token")
    return nil
  end
  local function deny(why)
    http.reject(h, 403, "forbidden", why)
    return nil
  end
  -- Only RS256: "none" and HMAC algorithms must never be accepted.
  if header.alg ~= "RS256" then return deny("unsupported token algorithm") end
  -- A key configured without a kid is stored under "*" and matches any.
  local keys = cfg.keys or {}
  local der = (header.kid and keys[header.kid]) or keys["*"]
  if der == nil and header.kid == nil then
    local only, count = nil, 0
    for _, v in pairs(keys) do only, count = v, count + 1 end
    if count == 1 then der = only end
  end
  if der == nil then return deny("unknown signing key") end
  local raw = http.base64_decode(der)
  -- Envoy 1.40: importPublicKey returns a wrapper whose get() is the key
  -- handle verifySignature takes (nil for a key it cannot parse).
  local wrapper = raw and h:importPublicKey(raw, #raw)
  local key = wrapper and wrapper:get()
  if key == nil then return deny("unusable signing key") end
  local signed = hb .. "." .. pb
  local ok = h:verifySignature("sha256", key, sig, #sig, signed, #signed)
  if not ok then return deny("invalid token signature") end
  local now = math.floor(h:timestamp() / 1000)
  local skew = cfg.skew_seconds or 60
  if type(claims.exp) ~= "number" or claims.exp + skew < now then return deny("token expired") end
  if type(claims.nbf) == "number" and claims.nbf - skew > now then return deny("token not yet valid") end
  if cfg.issuer and claims.iss ~= cfg.issuer then return deny("wrong token issuer") end
  if cfg.audiences and #cfg.audiences > 0 then
    local aud = claims.aud
    local okaud = (type(aud) == "string" and has(cfg.audiences, aud))
    if type(aud) == "table" then
      for _, a in ipairs(aud) do
        if has(cfg.audiences, a) then okaud = true end
      end
    end
    if not okaud then return deny("wrong token audience") end
  end
  local consumer = claims[cfg.consumer_claim or "sub"]
  if type(consumer) ~= "string" or consumer == "" then return deny("token has no consumer claim") end
  local plan = cfg.plan_claim and claims[cfg.plan_claim]
  return { consumer = consumer, plan = type(plan) == "string" and plan or nil }
end

function M.request(h, cfg, req)
  local names = cfg.headers or {}
  local consumer_header = names.consumer or "x-sluice-consumer"
  local plan_header = names.plan or "x-sluice-plan"
  -- Never trust identity headers from the client.
  h:headers():remove(consumer_header)
  h:headers():remove(plan_header)

  local who = nil
  if cfg.api_key then
    who = check_api_key(h, cfg.api_key, req)
    if who == nil then return false end
  elseif cfg.basic then
    who = check_basic(h, cfg.basic)
    if who == nil then return false end
  elseif cfg.jwt then
    who = check_jwt(h, cfg.jwt)
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
