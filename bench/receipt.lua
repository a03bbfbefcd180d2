-- wrk script for bench/receipt.sh: Magento 1 `orderflowInventoryMultiUpdate` messages, each with a
-- messageSeqId no other request of the run uses, shaped like
-- ../shared/fixtures/soap/m1-inventory-multi-update-skus.xml (and examples/common's
-- inventory_envelope): LINES SKU lines, the sequence ids listed in the reverse order of the quantities.
--
-- Configured by the environment (wrk's `init(args)` is not run in the state `done()` runs in):
--   WHARF_SESSION   the sessionId of a SOAP `login` (required)
--   SEQ_BASE        messageSeqId of thread 0's first message; thread t sends
--                   SEQ_BASE + t * 1e9 + 0, 1, 2, ...   (default 1)
--   LINES           SKU lines per message (default 10)
--   SKU_POOL        distinct SKUs the lines cycle through (default 20000)
--   RATE            messages/s for the whole run, paced with delay() (default: unpaced)
--   WRK_THREADS     wrk's -t, needed with RATE (each thread paces RATE / WRK_THREADS)
--   ACKED_FILE      with it, done() writes every acknowledged messageSeqId there, one a line
--
-- done() prints one line for the shell to read:
--   result requests=N ok=N non200=N bad200=N socket_errors=N timeouts=N secs=S rate=R p50_ms=X p99_ms=Y
-- ok: HTTP 200 carrying "Success - Message <id> Received"; non200: any other status; bad200: a 200
-- without that acknowledgement; rate: ok per second.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } wharf_timespec;
  int clock_gettime(int clk_id, wharf_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("wharf_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local function env_number(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then
    return default
  end
  local n = tonumber(v)
  if n == nil then
    error(name .. "=" .. v .. " is not a number")
  end
  return n
end

local session = os.getenv("WHARF_SESSION")
if session == nil or session == "" then
  error("WHARF_SESSION (a SOAP login's sessionId) is not set")
end
local seq_base = env_number("SEQ_BASE", 1)
local lines = env_number("LINES", 10)
local sku_pool = env_number("SKU_POOL", 20000)
local rate = env_number("RATE", 0)
local wrk_threads = env_number("WRK_THREADS", 1)
local acked_file = os.getenv("ACKED_FILE")
if acked_file == "" then
  acked_file = nil
end

-- Main state: every thread, for done() to collect their counts.
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local head = [[<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:ns1="urn:Magento" xmlns:xsd="http://www.w3.org/2001/XMLSchema"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/"
  SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">
  <SOAP-ENV:Body>
    <ns1:orderflowInventoryMultiUpdate>
      <sessionId xsi:type="xsd:string">]] .. session .. "</sessionId>\n"
local tail = "    </ns1:orderflowInventoryMultiUpdate>\n  </SOAP-ENV:Body>\n</SOAP-ENV:Envelope>\n"
local headers = {
  ["Content-Type"] = "text/xml; charset=utf-8",
  ["SOAPAction"] = '"urn:Mage_Api_Model_Server_V2_HandlerAction"',
}

-- Thread state (tid is set by setup() before init()).
local sent, next_slot, interval = 0, nil, 0
ok, non200, bad200 = 0, 0, 0
acked = {}

function init(args)
  if rate > 0 then
    interval = 1000 * wrk_threads / rate
  end
end

local function fmt(n)
  return string.format("%.0f", n)
end

function request()
  local id = seq_base + tid * 1e9 + sent
  sent = sent + 1
  local qty, seq = {}, {}
  for i = 0, lines - 1 do
    local sku = string.format("SKU-%06d", (id * lines + i) % sku_pool + 1)
    qty[#qty + 1] = '        <item xsi:type="ns1:skuQty"><key xsi:type="xsd:string">' .. sku ..
      '</key><value xsi:type="xsd:int">' .. math.random(0, 999) .. '</value></item>\n'
    table.insert(seq, 1, '        <item xsi:type="ns1:skuSeq"><key xsi:type="xsd:string">' .. sku ..
      '</key><value xsi:type="xsd:long">' .. fmt(id * lines + i) .. '</value></item>\n')
  end
  local body = table.concat({
    head,
    '      <skusQty SOAP-ENC:arrayType="ns1:skuQty[', lines, ']" xsi:type="ns1:skuQtyArray">\n',
    table.concat(qty),
    "      </skusQty>\n",
    '      <skusSeqId SOAP-ENC:arrayType="ns1:skuSeq[', lines, ']" xsi:type="ns1:skuSeqArray">\n',
    table.concat(seq),
    "      </skusSeqId>\n",
    '      <messageSeqId xsi:type="xsd:long">', fmt(id), "</messageSeqId>\n",
    tail,
  })
  return wrk.format("POST", nil, headers, body)
end

-- With RATE: each request takes the thread's next free slot, INTERVAL ms after the previous one;
-- a slot already past is taken now (no burst to catch up after a stall).
function delay()
  if interval <= 0 then
    return 0
  end
  local now = now_ms()
  if next_slot == nil or next_slot < now then
    next_slot = now
  end
  local wait = next_slot - now
  next_slot = next_slot + interval
  return math.floor(wait)
end

function response(status, _, body)
  if status ~= 200 then
    non200 = non200 + 1
    return
  end
  local id = body and body:match("Success %- Message (%d+) Received")
  if id then
    ok = ok + 1
    if acked_file then
      acked[#acked + 1] = id
    end
  else
    bad200 = bad200 + 1
  end
end

function done(summary, latency, _)
  local total_ok, total_non200, total_bad200 = 0, 0, 0
  local out
  if acked_file then
    out = assert(io.open(acked_file, "w"))
  end
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_non200 = total_non200 + t:get("non200")
    total_bad200 = total_bad200 + t:get("bad200")
    if out then
      local ids = t:get("acked")
      for i = 1, #ids do
        out:write(ids[i], "\n")
      end
    end
  end
  if out then
    out:close()
  end
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "result requests=%d ok=%d non200=%d bad200=%d socket_errors=%d timeouts=%d secs=%.2f rate=%.1f p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests, total_ok, total_non200, total_bad200, e.connect + e.read + e.write, e.timeout,
    secs, total_ok / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
