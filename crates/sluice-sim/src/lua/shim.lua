-- An Envoy-like stream handle for running sluice's filters outside Envoy
-- (unit tests and the simulator). It follows the Lua filter API of Envoy
-- 1.40 for what the filters use: headers() get/add/replace/remove/pairs,
-- body() with getBytes/length/setBytes, respond() (which ends the script),
-- filterContext():get(), streamInfo():dynamicMetadata() set/get,
-- streamInfo():downstreamRemoteAddress(), clearRouteCache(), timestamp(),
-- importPublicKey()/verifySignature() (RS256), log*().
--
-- Scope, as in Envoy: the objects the handle gives out (headers(),
-- streamInfo() and its dynamicMetadata()) die when the script yields, and
-- body() yields while Envoy waits for the body of a message that has one.
-- Any call on such an object after the first body() then raises Envoy's
-- "object used outside of proper scope"; h:headers() after the wait gives a
-- fresh, live one. A message without a body (nil or "") makes body()
-- return nil at once, without a yield, as Envoy does when the headers end
-- the stream.
--
-- A request's transfer-encoding is hidden, as Envoy's HTTP/1 codec takes it
-- off before any filter runs (the upstream codec frames the body anew): a
-- script sees a chunked request as one without a length, and only body()
-- tells whether it has a body.
--
-- make_handle(state) where state = {
--   headers = { {name, value}, ... },   -- names are lower-cased, as in Envoy
--   request = true for the request phase,
--   body = "..." or nil, context = {...} or nil, remote = "ip:port",
--   now_ms = milliseconds since the epoch (for timestamp()),
--   metadata = {}, log = {} }
-- After the call, state holds the modified headers/body, state.response =
-- {headers = {...}, body = "..."} if respond() was called, and
-- state.route_cache_cleared.

local RESPONDED = setmetatable({}, { __tostring = function() return "sluice-shim: responded" end })

local DEAD = "object used outside of proper scope"

-- Makes every method of `obj` raise Envoy's error once `alive()` is false.
local function scoped(obj, alive)
  local function guard(f)
    return function(...)
      if not alive() then error(DEAD, 2) end
      return f(...)
    end
  end
  -- `next`, not `pairs`: a header map's __pairs walks its headers.
  for k, f in next, obj do
    if type(f) == "function" then obj[k] = guard(f) end
  end
  local mt = getmetatable(obj)
  if mt and mt.__pairs then mt.__pairs = guard(mt.__pairs) end
  return obj
end

local function header_map(state)
  local m = {}
  function m:get(name)
    name = name:lower()
    for _, kv in ipairs(state.headers) do
      if kv[1] == name then return kv[2] end
    end
    return nil
  end
  function m:add(name, value)
    table.insert(state.headers, { name:lower(), tostring(value) })
  end
  function m:remove(name)
    name = name:lower()
    local kept = {}
    for _, kv in ipairs(state.headers) do
      if kv[1] ~= name then kept[#kept + 1] = kv end
    end
    state.headers = kept
  end
  function m:replace(name, value)
    name = name:lower()
    for _, kv in ipairs(state.headers) do
      if kv[1] == name then
        kv[2] = tostring(value)
        -- replace sets the first and drops the others, as Envoy does
        local first, kept = false, {}
        for _, x in ipairs(state.headers) do
          if x[1] ~= name then kept[#kept + 1] = x
          elseif not first then kept[#kept + 1] = x; first = true end
        end
        state.headers = kept
        return
      end
    end
    self:add(name, value)
  end
  setmetatable(m, { __pairs = function()
    local i = 0
    return function()
      i = i + 1
      local kv = state.headers[i]
      if kv then return kv[1], kv[2] end
    end
  end })
  return m
end

local function buffer(state)
  local b = {}
  function b:length() return #(state.body or "") end
  function b:getBytes(start, len)
    local s = state.body or ""
    return s:sub(start + 1, start + len)
  end
  function b:setBytes(s) state.body = s end
  return b
end

local function without_transfer_encoding(headers)
  local kept = {}
  for _, kv in ipairs(headers) do
    if kv[1] ~= "transfer-encoding" then kept[#kept + 1] = kv end
  end
  return kept
end

function make_handle(state)
  state.metadata = state.metadata or {}
  state.log = state.log or {}
  if state.request then state.headers = without_transfer_encoding(state.headers) end
  local h = {}
  -- Bumped when the script yields for the body; an object is live while
  -- the scope it was made in is the current one.
  local scope, waited = 1, false
  local function made_now()
    local born = scope
    return function() return born == scope end
  end
  local headers, info = nil, nil
  function h:headers()
    if headers == nil then headers = scoped(header_map(state), made_now()) end
    return headers
  end
  function h:body()
    if state.body == nil or state.body == "" then return nil end
    if not waited then
      waited = true
      scope = scope + 1
      headers, info = nil, nil
    end
    return buffer(state)
  end
  function h:respond(hdrs, body)
    local list = {}
    for k, v in pairs(hdrs) do list[#list + 1] = { k:lower(), tostring(v) } end
    table.sort(list, function(a, b) return a[1] < b[1] end)
    state.response = { headers = list, body = body or "" }
    -- Envoy suspends the script's coroutine and never resumes it.
    coroutine.yield(RESPONDED)
  end
  function h:filterContext()
    local ctx = state.context or {}
    return { get = function(_, key) return ctx[key] end }
  end
  function h:streamInfo()
    if info == nil then
      local alive = made_now()
      local meta = scoped({
        set = function(_, ns, key, value)
          state.metadata[ns] = state.metadata[ns] or {}
          state.metadata[ns][key] = value
        end,
        get = function(_, ns) return state.metadata[ns] end,
      }, alive)
      info = scoped({
        dynamicMetadata = function() return meta end,
        downstreamRemoteAddress = function() return state.remote end,
      }, alive)
    end
    return info
  end
  function h:clearRouteCache() state.route_cache_cleared = true end
  function h:timestamp() return state.now_ms or 0 end
  -- RSA verification is done by the host (Rust), like Envoy does in C++.
  function h:importPublicKey(der, len)
    local valid = type(der) == "string" and #der == len and __sluice_is_rsa_key(der)
    return { get = function() return valid and der or nil end }
  end
  function h:verifySignature(hash, key, sig, siglen, data, datalen)
    if hash ~= "sha256" or type(key) ~= "string" then return false, "unsupported" end
    local ok = __sluice_verify_rs256(key, sig:sub(1, siglen), data:sub(1, datalen))
    return ok, ok and nil or "Failed to verify digest"
  end
  for _, level in ipairs({ "Trace", "Debug", "Info", "Warn", "Err", "Critical" }) do
    h["log" .. level] = function(_, msg) table.insert(state.log, level:lower() .. ": " .. msg) end
  end
  return h
end

-- Runs `fn(handle)` as Envoy does, in a coroutine: respond() yields and
-- the coroutine is never resumed; an error ends it (Envoy logs it and lets
-- the request continue).
function run_with(fn, state)
  local co = coroutine.create(fn)
  local ok, err = coroutine.resume(co, make_handle(state))
  if not ok then
    state.error = tostring(err)
  end
  -- Empty tables would read back as lists; drop them.
  if next(state.metadata) == nil then state.metadata = nil end
  if next(state.log) == nil then state.log = nil end
  state.context = nil
  state.request = nil
  return state
end
