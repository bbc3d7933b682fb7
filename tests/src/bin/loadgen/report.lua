-- Appended to every wrk script `loadgen` runs: counts the answers that are not 2xx (each
-- thread in its own Lua state, summed in done()) and prints one line of JSON, so a run with
-- refusals is reported as such instead of as throughput. Latencies are in microseconds.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non_2xx = 0
  statuses = {}
  status_list = ""
  first_bad = ""
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
    statuses[status] = (statuses[status] or 0) + 1
    local parts = {}
    for code, count in pairs(statuses) do
      table.insert(parts, code .. "=" .. count)
    end
    status_list = table.concat(parts, ",")
    if first_bad == "" then
      first_bad = status .. " " .. string.sub(body or "", 1, 200)
    end
  end
end

local function json_string(text)
  return '"' .. string.gsub(text, '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end) .. '"'
end

function done(summary, latency, requests)
  local non_2xx, status_list, first_bad = 0, {}, ""
  for _, thread in ipairs(threads) do
    non_2xx = non_2xx + thread:get("non_2xx")
    local list = thread:get("status_list")
    if list ~= "" then
      table.insert(status_list, list)
    end
    if first_bad == "" then
      first_bad = thread:get("first_bad")
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"non_2xx":%d,"statuses":%s,' ..
    '"first_bad":%s,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    non_2xx, json_string(table.concat(status_list, ",")), json_string(first_bad),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
