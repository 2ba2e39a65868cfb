-- transform: rewrite requests on the way in and responses on the way out.
--
-- transform.headers(headers, cfg, vars)  -- both directions
--   remove  = {"name", ...}
--   rename  = {{"from", "to"}, ...}       (value kept, first value only)
--   set     = {{"name", "template"}, ...} (replace)
--   add     = {{"name", "template"}, ...} (append)
-- transform.request(h, cfg, req)  -- headers, plus:
--   query_to_header = {{"param", "header"}, ...}
--   rewrite_path    = "template"  (query string kept)
--   json            = body edits, see transform.json_body
-- transform.response(h, cfg, req) -- headers and json
-- Templates are filled by http.expand (data only, never code).

local json, http = ...

local M = {}

function M.headers(headers, cfg, vars)
  for _, name in ipairs(cfg.remove or {}) do headers:remove(name) end
  for _, pair in ipairs(cfg.rename or {}) do
    local v = headers:get(pair[1])
    if v ~= nil then
      headers:remove(pair[1])
      headers:replace(pair[2], v)
    end
  end
  for _, pair in ipairs(cfg.set or {}) do headers:replace(pair[1], http.expand(pair[2], vars)) end
  for _, pair in ipairs(cfg.add or {}) do headers:add(pair[1], http.expand(pair[2], vars)) end
end

-- Walks a dotted path ("a.b.c"); returns the parent table and last key,
-- creating intermediate objects when `create` is set.
local function walk(doc, path, create)
  local parent, last = doc, nil
  local parts = {}
  for p in path:gmatch("[^.]+") do parts[#parts + 1] = p end
  for i = 1, #parts - 1 do
    local nxt = parent[parts[i]]
    if type(nxt) ~= "table" then
      if not create then return nil end
      nxt = {}
      parent[parts[i]] = nxt
    end
    parent = nxt
  end
  last = parts[#parts]
  return parent, last
end

-- Applies cfg {set = {{path, template}}, remove = {path}, rename = {{from, to}},
-- max_bytes = N} to a JSON text. Returns the new text, or nil + reason when
-- the body is too large or not a JSON object (the caller decides).
function M.json_body(text, cfg, vars)
  if cfg.max_bytes and #text > cfg.max_bytes then return nil, "too_large" end
  local doc = json.decode(text)
  if not json.is_object(doc) then return nil, "not_object" end
  for _, pair in ipairs(cfg.rename or {}) do
    local p, k = walk(doc, pair[1], false)
    if p ~= nil and p[k] ~= nil then
      local v = p[k]
      p[k] = nil
      local q, k2 = walk(doc, pair[2], true)
      q[k2] = v
    end
  end
  for _, path in ipairs(cfg.remove or {}) do
    local p, k = walk(doc, path, false)
    if p ~= nil then p[k] = nil end
  end
  for _, pair in ipairs(cfg.set or {}) do
    local p, k = walk(doc, pair[1], true)
    p[k] = http.expand(pair[2], vars)
  end
  return json.encode(doc)
end

local function edit_body(h, cfg, vars, what)
  local body = h:body()
  local text = body and body:getBytes(0, body:length()) or ""
  if text == "" then return true end
  local new, why = M.json_body(text, cfg, vars)
  if new == nil then return false, why end
  body:setBytes(new)
  h:headers():replace("content-length", tostring(#new))
  return true
end

-- Header handles die when the script yields for the body (Envoy's rule):
-- `headers` is not used past edit_body, and templates read headers through
-- req.header, which asks for a fresh handle each time.
function M.request(h, cfg, req)
  local headers = h:headers()
  for _, pair in ipairs(cfg.query_to_header or {}) do
    local v = req.query[pair[1]]
    if v ~= nil then headers:replace(pair[2], v) end
  end
  M.headers(headers, cfg, req)
  if cfg.rewrite_path then
    local qs = req.raw_query ~= "" and ("?" .. req.raw_query) or ""
    headers:replace(":path", http.expand(cfg.rewrite_path, req) .. qs)
  end
  if cfg.json then
    local ok, why = edit_body(h, cfg.json, req, "request")
    if not ok then
      if why == "too_large" then
        http.reject(h, 413, "payload_too_large", "body exceeds " .. cfg.json.max_bytes .. " bytes")
      else
        http.reject(h, 400, "bad_request", "request body is not a JSON object")
      end
      return false
    end
  end
  return true
end

function M.response(h, cfg, req)
  M.headers(h:headers(), cfg, req)
  if cfg.json then
    local ctype = h:headers():get("content-type") or ""
    if ctype:find("json", 1, true) then
      local ok, why = edit_body(h, cfg.json, req, "response")
      if not ok then h:logWarn("sluice: response body left unchanged: " .. why) end
    end
  end
end

return M
