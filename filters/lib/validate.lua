-- validate: reject requests that do not fit the route's contract.
--
-- validate.request(h, cfg, req) -> true to continue, false when it answered.
-- cfg: methods = {"GET", ...}            → 405 (with Allow) otherwise
--      required_headers = {"x-id", ...}  → 400 naming the missing header
--      required_query = {"page", ...}    → 400 naming the missing parameter
--      content_types = {"application/json", ...} → 415 when a body's type differs
--      max_body_bytes = N                → 413 above N (Content-Length, else the body)
--
-- Whether a request has a body, and how large it is: Content-Length when
-- declared. Otherwise the headers cannot tell — Envoy takes a chunked HTTP/1
-- request's transfer-encoding off before any filter runs, and HTTP/2 needs
-- no length — so the body itself is asked for: h:body() is nil at once when
-- the headers ended the stream, and otherwise waits for the whole body in
-- Envoy's buffer (a body past Envoy's buffer limit gets Envoy's own 413).
-- The body is only waited for when an answer depends on it.

local json, http = ...

local M = {}

local function contains(list, value)
  for _, v in ipairs(list) do
    if v == value then return true end
  end
  return false
end

function M.request(h, cfg, req)
  local headers = h:headers()
  if cfg.methods and #cfg.methods > 0 and not contains(cfg.methods, req.method) then
    http.reject(h, 405, "method_not_allowed", "method " .. req.method .. " not allowed",
      { allow = table.concat(cfg.methods, ", ") })
    return false
  end
  for _, name in ipairs(cfg.required_headers or {}) do
    local v = headers:get(name)
    if v == nil or v == "" then
      http.reject(h, 400, "bad_request", "missing required header " .. name)
      return false
    end
  end
  for _, name in ipairs(cfg.required_query or {}) do
    if req.query[name] == nil then
      http.reject(h, 400, "bad_request", "missing required query parameter " .. name)
      return false
    end
  end
  -- The body's size, measured once, on first need.
  local size = nil
  local function body_size()
    if size == nil then
      size = tonumber(h:headers():get("content-length") or "") or #req.body(h)
    end
    return size
  end
  if cfg.max_body_bytes and body_size() > cfg.max_body_bytes then
    http.reject(h, 413, "payload_too_large",
      "body of " .. size .. " bytes exceeds " .. cfg.max_body_bytes)
    return false
  end
  if cfg.content_types and #cfg.content_types > 0 then
    -- A fresh handle: waiting for the body invalidated the earlier one.
    local ctype = (h:headers():get("content-type") or ""):match("^%s*([^;%s]+)") or ""
    -- An accepted type needs no look at the body.
    if not contains(cfg.content_types, ctype:lower()) and body_size() > 0 then
      http.reject(h, 415, "unsupported_media_type", "content type " .. ctype .. " not accepted")
      return false
    end
  end
  return true
end

return M
