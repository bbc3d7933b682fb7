-- `GET /api/keys/{key_id}` at vault, round-robin over `keys` (pairs of key id and access
-- token, prepended by loadgen): secrets stored without max_reads, so every read succeeds, and
-- many of them, so concurrent reads do not all queue on one row's read counter.
local next_key = 0

function request()
  next_key = next_key % #keys + 1
  local key = keys[next_key]
  return wrk.format("GET", "/api/keys/" .. key[1], { ["Authorization"] = "Bearer " .. key[2] })
end
