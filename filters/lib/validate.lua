-- validate: reject requests that do not fit the route's contract.
--
-- validate.request(h, cfg, req) -> true to continue, false when it answered.
-- cfg: methods = {"GET", ...}            → 405 (with Allow) otherwise
--      required_headers = {"x-id", ...}  → 400 naming the missing header
--      required_query = {"page", ...}    → 400 naming the missing parameter
--      content_types = {"application/json", ...} → 415 when a body's type differs
--      max_body_bytes = N                → 413 above N (Content-Length, else the body)

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
  if cfg.max_body_bytes then
    local declared = tonumber(headers:get("content-length") or "")
    local size = declared
    if size == nil and headers:get("transfer-encoding") ~= nil then
      local body = req.body(h)
      size = body and #body or 0
    end
    if size ~= nil and size > cfg.max_body_bytes then
      http.reject(h, 413, "payload_too_large",
        "body of " .. size .. " bytes exceeds " .. cfg.max_body_bytes)
      return false
    end
  end
  if cfg.content_types and #cfg.content_types > 0 then
    -- Again: reading the body above invalidated the earlier handle.
    headers = h:headers()
    local has_body = (tonumber(headers:get("content-length") or "0") or 0) > 0
      or headers:get("transfer-encoding") ~= nil
    if has_body then
      local ctype = (headers:get("content-type") or ""):match("^%s*([^;%s]+)") or ""
      if not contains(cfg.content_types, ctype:lower()) then
        http.reject(h, 415, "unsupported_media_type", "content type " .. ctype .. " not accepted")
        return false
      end
    end
  end
  return true
end

return M
