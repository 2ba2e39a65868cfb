-- http: request helpers shared by the sluice filters.
--
-- Query strings, percent-decoding, base64 (for HTTP Basic), JSON error
-- responses, and templates. A template is plain text with `${...}`
-- placeholders filled from request data (`${method}`, `${path}`,
-- `${header.NAME}`, `${query.NAME}`, `${consumer}`, `${plan}`); it is
-- substituted as data, never evaluated as code.

local M = {}

local json = ...

function M.percent_decode(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- Splits ":path" into the path and a table of query parameters (first value
-- of each name wins, as most frameworks do).
function M.split_path(full)
  local path, qs = full:match("^([^?]*)%??(.*)$")
  local query = {}
  for pair in qs:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k = M.percent_decode(k)
    if query[k] == nil then query[k] = M.percent_decode(v) end
  end
  return path, query, qs
end

local b64 = {}
do
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  for i = 1, 64 do b64[alphabet:byte(i)] = i - 1 end
end

-- Strict base64 decode; nil for malformed input.
function M.base64_decode(s)
  if #s % 4 ~= 0 or s:find("[^%w+/=]") or s:find("=[^=]") then return nil end
  local out, n = {}, 0
  for i = 1, #s, 4 do
    local a, b, c, d = s:byte(i, i + 3)
    local va, vb = b64[a], b64[b]
    if va == nil or vb == nil then return nil end
    local vc, vd = b64[c], b64[d]
    n = n + 1
    out[n] = string.char(bit.bor(bit.lshift(va, 2), bit.rshift(vb, 4)))
    if c ~= 61 then
      if vc == nil then return nil end
      n = n + 1
      out[n] = string.char(bit.band(bit.bor(bit.lshift(vb, 4), bit.rshift(vc, 2)), 255))
      if d ~= 61 then
        if vd == nil then return nil end
        n = n + 1
        out[n] = string.char(bit.band(bit.bor(bit.lshift(vc, 6), vd), 255))
      end
    end
  end
  return table.concat(out)
end

-- Ends the request with a JSON error body.
function M.reject(h, status, err, message, extra_headers)
  local headers = { [":status"] = tostring(status), ["content-type"] = "application/json" }
  for k, v in pairs(extra_headers or {}) do headers[k] = v end
  local body = json.encode({ error = err, message = message }) or '{"error":"internal"}'
  h:respond(headers, body)
end

-- Fills a template from `vars` (a table with method, path, query,
-- header(name) -> value or nil, consumer, plan). Unknown placeholders
-- become empty strings.
function M.expand(template, vars)
  return (template:gsub("%${([^}]*)}", function(key)
    local kind, name = key:match("^(%a+)%.(.+)$")
    if kind == "header" then
      return vars.header(name) or ""
    elseif kind == "query" then
      return vars.query[name] or ""
    elseif key == "method" or key == "path" or key == "consumer" or key == "plan" then
      return vars[key] or ""
    end
    return ""
  end))
end

return M
