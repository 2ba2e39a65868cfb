-- json: a small JSON codec in pure Lua 5.1 / LuaJIT (Envoy's Lua has no cjson).
--
-- json.decode(text) -> value | nil, err
--   Objects become tables; arrays become tables marked with json.array_mt so
--   that an empty array stays an array on re-encode; null becomes json.null.
-- json.is_object(value) -> true for a decoded object only
-- json.encode(value) -> text | nil, err
--   Object keys are written in sorted order, so output is deterministic.
-- Limits: nesting depth 64 (a hostile body cannot exhaust the C stack).

local M = {}

M.null = setmetatable({}, { __tostring = function() return "null" end })
M.array_mt = { __jsontype = "array" }
M.max_depth = 64

-- True for a decoded JSON object (arrays and null are tables too, but
-- carry a metatable).
function M.is_object(v)
  return type(v) == "table" and getmetatable(v) == nil
end

local byte, char, sub, find = string.byte, string.char, string.sub, string.find
local concat, floor = table.concat, math.floor

local function utf8_char(cp)
  if cp < 0x80 then
    return char(cp)
  elseif cp < 0x800 then
    return char(0xC0 + floor(cp / 0x40), 0x80 + cp % 0x40)
  elseif cp < 0x10000 then
    return char(0xE0 + floor(cp / 0x1000), 0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  else
    return char(0xF0 + floor(cp / 0x40000), 0x80 + floor(cp / 0x1000) % 0x40,
      0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  end
end

local escapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local decode_value

local function skip_ws(s, i)
  local _, e = find(s, "^[ \t\r\n]*", i)
  return e + 1
end

local function decode_string(s, i)
  -- s[i] is the opening quote
  local out, j = {}, i + 1
  while true do
    local c = byte(s, j)
    if c == nil then return nil, "unterminated string" end
    if c == 34 then -- "
      return concat(out), j + 1
    elseif c == 92 then -- backslash
      local e = sub(s, j + 1, j + 1)
      if e == "u" then
        local hex = sub(s, j + 2, j + 5)
        if not find(hex, "^%x%x%x%x$") then return nil, "bad \\u escape at " .. j end
        local cp = tonumber(hex, 16)
        local used = 6
        if cp >= 0xD800 and cp <= 0xDBFF then
          local lo = sub(s, j + 6, j + 11)
          if find(lo, "^\\u[dD][c-fC-F]%x%x$") then
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (tonumber(sub(lo, 3), 16) - 0xDC00)
            used = 12
          else
            return nil, "lone surrogate at " .. j
          end
        elseif cp >= 0xDC00 and cp <= 0xDFFF then
          return nil, "lone surrogate at " .. j
        end
        out[#out + 1] = utf8_char(cp)
        j = j + used
      elseif escapes[e] then
        out[#out + 1] = escapes[e]
        j = j + 2
      else
        return nil, "bad escape at " .. j
      end
    elseif c < 32 then
      return nil, "control character in string at " .. j
    else
      local _, e = find(s, '^[^"\\%c]+', j)
      out[#out + 1] = sub(s, j, e)
      j = e + 1
    end
  end
end

local function decode_number(s, i)
  local _, e = find(s, "^-?%d+%.?%d*[eE]?[-+]?%d*", i)
  if not e then return nil, "bad number at " .. i end
  local text = sub(s, i, e)
  if not find(text, "^-?0$") and not find(text, "^-?0[.eE]") and find(text, "^-?0") then
    return nil, "leading zero at " .. i
  end
  local n = tonumber(text)
  if n == nil then return nil, "bad number at " .. i end
  return n, e + 1
end

decode_value = function(s, i, depth)
  if depth > M.max_depth then return nil, "nesting deeper than " .. M.max_depth end
  i = skip_ws(s, i)
  local c = sub(s, i, i)
  if c == "{" then
    local obj = {}
    i = skip_ws(s, i + 1)
    if sub(s, i, i) == "}" then return obj, i + 1 end
    while true do
      if sub(s, i, i) ~= '"' then return nil, "expected key at " .. i end
      local key, ni = decode_string(s, i)
      if key == nil then return nil, ni end
      i = skip_ws(s, ni)
      if sub(s, i, i) ~= ":" then return nil, "expected ':' at " .. i end
      local val, vi = decode_value(s, i + 1, depth + 1)
      if val == nil then return nil, vi end
      obj[key] = val
      i = skip_ws(s, vi)
      local d = sub(s, i, i)
      if d == "}" then return obj, i + 1 end
      if d ~= "," then return nil, "expected ',' or '}' at " .. i end
      i = skip_ws(s, i + 1)
    end
  elseif c == "[" then
    local arr = setmetatable({}, M.array_mt)
    i = skip_ws(s, i + 1)
    if sub(s, i, i) == "]" then return arr, i + 1 end
    local n = 0
    while true do
      local val, vi = decode_value(s, i, depth + 1)
      if val == nil then return nil, vi end
      n = n + 1
      arr[n] = val
      i = skip_ws(s, vi)
      local d = sub(s, i, i)
      if d == "]" then return arr, i + 1 end
      if d ~= "," then return nil, "expected ',' or ']' at " .. i end
      i = i + 1
    end
  elseif c == '"' then
    return decode_string(s, i)
  elseif c == "t" and sub(s, i, i + 3) == "true" then
    return true, i + 4
  elseif c == "f" and sub(s, i, i + 4) == "false" then
    return false, i + 5
  elseif c == "n" and sub(s, i, i + 3) == "null" then
    return M.null, i + 4
  elseif find(c, "^[-%d]") then
    return decode_number(s, i)
  end
  return nil, "unexpected input at " .. i
end

function M.decode(s)
  if type(s) ~= "string" then return nil, "not a string" end
  local ok, val, i = pcall(decode_value, s, 1, 1)
  if not ok then return nil, tostring(val) end
  if val == nil then return nil, i end
  i = skip_ws(s, i)
  if i <= #s then return nil, "trailing data at " .. i end
  return val
end

local function encode_string(s)
  local out = s:gsub('[%c"\\]', function(c)
    local b = byte(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    if c == "\n" then return "\\n" end
    if c == "\r" then return "\\r" end
    if c == "\t" then return "\\t" end
    return string.format("\\u%04x", b)
  end)
  return '"' .. out .. '"'
end

local function is_array(t)
  if getmetatable(t) == M.array_mt then return true end
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k <= 0 or k ~= floor(k) then return false end
    n = n + 1
  end
  return n > 0 and n == #t
end

local function encode_value(v, depth, out)
  if depth > M.max_depth then error("nesting deeper than " .. M.max_depth) end
  local t = type(v)
  if v == M.null or v == nil then
    out[#out + 1] = "null"
  elseif t == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then error("cannot encode " .. tostring(v)) end
    if v == floor(v) and v >= -2 ^ 53 and v <= 2 ^ 53 then
      out[#out + 1] = string.format("%d", v)
    else
      out[#out + 1] = string.format("%.17g", v)
    end
  elseif t == "string" then
    out[#out + 1] = encode_string(v)
  elseif t == "table" then
    if is_array(v) then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode_value(v[i], depth + 1, out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do
        if type(k) ~= "string" then error("object key is not a string") end
        keys[#keys + 1] = k
      end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = encode_string(k)
        out[#out + 1] = ":"
        encode_value(v[k], depth + 1, out)
      end
      out[#out + 1] = "}"
    end
  else
    error("cannot encode a " .. t)
  end
end

function M.encode(v)
  local out = {}
  local ok, err = pcall(encode_value, v, 1, out)
  if not ok then return nil, tostring(err) end
  return concat(out)
end

return M
