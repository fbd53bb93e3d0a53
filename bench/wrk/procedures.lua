-- wrk script: GET /api/market/procedures/:id with a uniformly random id in 1..10000.
-- Each wrk thread has its own Lua state; seed each one differently so the
-- threads do not replay the same id sequence.
local counter = 0
local threads = {}

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
end

request = function()
  return wrk.format("GET", "/api/market/procedures/" .. math.random(1, 10000))
end
