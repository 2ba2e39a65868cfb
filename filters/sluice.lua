-- sluice: the entry point Envoy's Lua filter runs on every request.
--
-- The filter is configured once per listener with this script; what a route
-- wants (auth, validation, transformation) arrives per route as data, in
-- LuaPerRoute.filter_context under the key "sluice" — so changing a key or a
-- header rule changes only RDS, never the listener.
--
-- Order on the way in: validate → auth → transform. On the way out:
-- transform. Each step may answer the request itself (4xx with a JSON body).
-- Depends on the modules json, sha256, http, auth, validate, transform,
-- which sluice links ahead of this file.

local function route_config(h)
  local ctx = h:filterContext()
  if ctx == nil then return nil end
  return ctx:get("sluice")
end

-- Reads a header through a fresh handle: Envoy invalidates a headers
-- object when the script yields for the body, so none is kept across steps.
local function header_reader(h)
  return function(name) return h:headers():get(name) end
end

local function request_info(h)
  local headers = h:headers()
  local full = headers:get(":path") or "/"
  local path, query, raw_query = http.split_path(full)
  local body_cache = nil
  local req = {
    method = headers:get(":method") or "GET",
    path = path,
    query = query,
    raw_query = raw_query,
    header = header_reader(h),
  }
  -- Buffers the body once, on first use.
  req.body = function(handle)
    if body_cache == nil then
      local b = handle:body()
      body_cache = b and b:getBytes(0, b:length()) or ""
    end
    return body_cache
  end
  return req
end

local function on_request(h)
  local cfg = route_config(h)
  if cfg == nil then return end
  local req = request_info(h)
  if cfg.validate and not validate.request(h, cfg.validate, req) then return end
  if cfg.auth and not auth.request(h, cfg.auth, req) then return end
  local meta = h:streamInfo():dynamicMetadata()
  meta:set("sluice", "method", req.method)
  meta:set("sluice", "path", req.path)
  if cfg.transform_request and not transform.request(h, cfg.transform_request, req) then return end
  if cfg.clear_route_cache then h:clearRouteCache() end
end

local function on_response(h)
  local cfg = route_config(h)
  if cfg == nil or cfg.transform_response == nil then return end
  local meta = h:streamInfo():dynamicMetadata():get("sluice") or {}
  local vars = {
    method = meta.method,
    path = meta.path,
    consumer = meta.consumer,
    plan = meta.plan,
    query = {},
    header = header_reader(h),
  }
  transform.response(h, cfg.transform_response, vars)
end

-- A Lua error must not let a request through unchecked: Envoy logs script
-- errors and continues the request, which would make auth fail open. The
-- request phase therefore fails closed with a 500; a response-phase error
-- leaves the response as it is.
function envoy_on_request(h)
  local ok, err = pcall(on_request, h)
  if not ok then
    h:logErr("sluice: filter error: " .. tostring(err))
    http.reject(h, 500, "internal", "request filter failed")
  end
end

function envoy_on_response(h)
  local ok, err = pcall(on_response, h)
  if not ok then
    h:logErr("sluice: response filter error: " .. tostring(err))
  end
end
