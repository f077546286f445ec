-- milter_protocol.lua - miltertest cases for switchyard's capture milter,
-- negotiated as Sendmail does (all steps and actions offered).
-- Run by tests/integration/test_milter_protocol.py:
--   miltertest -D SOCK=inet:PORT@127.0.0.1 -s milter_protocol.lua
-- With SMFIP_HDR_LEADSPC negotiated, miltertest puts one space in front of
-- every header value itself (as an MTA that received "Name: value" does):
-- values are written here without it.
-- Each case prints "ok NAME"; the Python side then checks what the capture
-- transport wrote (byte-exact content, one envelope per message).
-- Header fields over a few KB crash this miltertest (a fixed stack buffer):
-- the 200 KB and 1 MB header cases use the raw client in
-- test_milter_protocol.py instead.
-- Debian's miltertest exits 1 on a Lua error without printing it: the body
-- runs under pcall() and prints "FAIL: ..." itself.

local sock = SOCK or "inet:8891@127.0.0.1"
mt.set_timeout(60)

local function check(cond, what)
  if not cond then error(what, 2) end
end

-- an mt.* step unless the filter negotiated it away (SMFIP_NO*)
local function step(conn, noflag, fn, ...)
  if noflag ~= nil and mt.test_option(conn, noflag) then return end
  local r = fn(conn, ...)
  if r ~= nil then error("milter step failed: " .. tostring(r), 2) end
end

local function open(with_info)
  local conn = mt.connect(sock, 50, 0.1)
  check(conn ~= nil, "mt.connect(" .. sock .. ") failed")
  check(mt.negotiate(conn, nil, nil, nil) == nil, "negotiate failed")
  check(mt.test_option(conn, SMFIP_HDR_LEADSPC), "HDR_LEADSPC not negotiated")
  check(mt.test_action(conn, SMFIF_DELRCPT), "DELRCPT not requested")
  if with_info ~= false then
    mt.macro(conn, SMFIC_CONNECT, "{daemon_name}", "sendmail-test", "j", "mta.example")
    check(mt.conninfo(conn, "client.example", "127.0.0.1") == nil, "conninfo")
  else
    check(mt.conninfo(conn, nil, "unspec") == nil, "conninfo unspec")
  end
  step(conn, SMFIP_NOHELO, mt.helo, "client.example")
  return conn
end

local function envelope(conn, qid, rcpts)
  if qid ~= nil then
    mt.macro(conn, SMFIC_MAIL, "i", qid, "{auth_authen}", "alice")
  end
  check(mt.mailfrom(conn, "<sender@example.org>") == nil, "mailfrom")
  check(mt.getreply(conn) == SMFIR_CONTINUE, "MAIL not continued")
  for _, r in ipairs(rcpts) do
    if qid ~= nil then mt.macro(conn, SMFIC_RCPT, "i", qid) end
    check(mt.rcptto(conn, "<" .. r .. ">") == nil, "rcptto " .. r)
    check(mt.getreply(conn) == SMFIR_CONTINUE, "RCPT not continued: " .. r)
  end
  step(conn, SMFIP_NODATA, mt.data)
end

local function hdr(conn, name, value)
  step(conn, SMFIP_NOHDRS, mt.header, name, value)
end

local function finish(conn)
  step(conn, SMFIP_NOEOH, mt.eoh)
end

local function eom_reply(conn)
  check(mt.eom(conn) == nil, "eom")
  return mt.getreply(conn)
end

local function main()
  -- 1. abort in mid-message, then a new message on the same connection:
  -- nothing of the first (recipient, bytes) may reach the second.
  local c = open()
  envelope(c, "QABORT1", {"abort1@example.net"})
  hdr(c, "Subject", "aborted")
  finish(c)
  step(c, SMFIP_NOBODY, mt.bodystring, "never stored\r\n")
  check(mt.abort(c) == nil, "abort")
  envelope(c, "QAFTER1", {"after-abort@example.net"})
  hdr(c, "Subject", "after abort")
  hdr(c, "Message-ID", "<after-abort@example.org>")
  finish(c)
  step(c, SMFIP_NOBODY, mt.bodystring, "second message\r\n")
  check(eom_reply(c) == SMFIR_DISCARD, "after abort: expected DISCARD")
  mt.echo("ok abort-then-new")

  -- 2. a second message on the same connection (as after RSET)
  envelope(c, "QSECOND", {"second@example.net"})
  hdr(c, "Subject", "second on connection")
  finish(c)
  step(c, SMFIP_NOBODY, mt.bodystring, "third\r\n")
  check(eom_reply(c) == SMFIR_DISCARD, "second message: expected DISCARD")
  mt.disconnect(c)
  mt.echo("ok same-connection")

  -- 3. no macros at all, unknown client address family
  c = open(false)
  envelope(c, nil, {"nomacros@example.net"})
  hdr(c, "Subject", "no macros")
  finish(c)
  step(c, SMFIP_NOBODY, mt.bodystring, "no macros\r\n")
  check(eom_reply(c) == SMFIR_DISCARD, "no macros: expected DISCARD")
  mt.disconnect(c)
  mt.echo("ok missing-macros")

  -- 4. 1,000 header fields (the default max_headers): stored byte-exact,
  -- leading white space and folding kept
  c = open()
  envelope(c, "QHDR1000", {"headers1000@example.net"})
  hdr(c, "Subject", " two spaces, then\r\n\tfolded")
  hdr(c, "X-No-Space", "value")
  for i = 3, 1000 do hdr(c, "X-H" .. i, tostring(i)) end
  finish(c)
  step(c, SMFIP_NOBODY, mt.bodystring, "many headers\r\n")
  check(eom_reply(c) == SMFIR_DISCARD, "1000 headers: expected DISCARD")
  mt.disconnect(c)
  mt.echo("ok 1000-headers")

  -- 5. one more than that: 552 5.3.4
  c = open()
  envelope(c, "QHDR1001", {"headers1001@example.net"})
  local r = nil
  for i = 1, 1001 do
    mt.header(c, "X-H" .. i, tostring(i))
    r = mt.getreply(c)
    if r ~= SMFIR_CONTINUE then break end
  end
  check(r == SMFIR_REPLYCODE, "1001 headers: expected REPLYCODE, got " .. tostring(r))
  mt.disconnect(c)
  mt.echo("ok 1001-headers-refused")

  -- 6. many small body chunks
  c = open()
  envelope(c, "QCHUNKS", {"chunks@example.net"})
  hdr(c, "Subject", "chunks")
  finish(c)
  for i = 1, 3000 do
    step(c, SMFIP_NOBODY, mt.bodystring, "line " .. i .. "\r\n")
  end
  check(eom_reply(c) == SMFIR_DISCARD, "chunks: expected DISCARD")
  mt.disconnect(c)
  mt.echo("ok many-chunks")

  -- 7. a body with CRLF.CRLF inside and bare LF (split across chunks)
  c = open()
  envelope(c, "QDOTLF", {"dotlf@example.net"})
  hdr(c, "Subject", "dot and LF")
  finish(c)
  step(c, SMFIP_NOBODY, mt.bodystring, "before\r\n.\r\nafter dot\nbare lf\r")
  step(c, SMFIP_NOBODY, mt.bodystring, "\nsplit crlf\n.\nend")
  check(eom_reply(c) == SMFIR_DISCARD, "dot/LF: expected DISCARD")
  mt.disconnect(c)
  mt.echo("ok dot-and-bare-lf")
end

local ok, err = pcall(main)
if not ok then
  mt.echo("FAIL: " .. tostring(err))
  error(err)
end
mt.echo("all passed")
