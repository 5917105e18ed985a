#!/usr/bin/env bash
# modelgate — self-test of the mock model upstream (tests/mock/upstream.js):
# starts it (plain HTTP, HTTPS, HTTP/2) and checks every wire format and the
# main directives with curl; JSON assertions run in `node -e`, no jq needed.
# Ends with "mock-selftest: N passed, N failed"; exits non-zero on any failure.
#
# SPDX-License-Identifier: Apache-2.0
set -uo pipefail
cd "$(dirname "$0")"

MOCK=${MG_MOCK:-$PWD/upstream.js}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mock-selftest.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT

passed=0
failed=0
ok()  { passed=$((passed + 1)); echo "ok   - $1"; }
bad() { failed=$((failed + 1)); echo "FAIL - $1"; [ -n "${2:-}" ] && printf '       %s\n' "${2:0:600}"; }

# start_mock NAME ARGS... — starts a mock, sets PORT, remembers the pid in MOCK_PID.
start_mock() {
    local name=$1; shift
    node "$MOCK" --port 0 "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    MOCK_PID=$!
    PIDS+=("$MOCK_PID")
    for _ in $(seq 1 100); do
        grep -q listening "$TMP/$name.out" 2>/dev/null && break
        sleep 0.05
    done
    PORT=$(sed -n 's/^{"listening":\([0-9][0-9]*\)}$/\1/p' "$TMP/$name.out")
    if [ -z "$PORT" ]; then
        bad "$name mock starts and prints {\"listening\":PORT}" "$(cat "$TMP/$name.out" "$TMP/$name.err")"
        return 1
    fi
    ok "$name mock starts and prints {\"listening\":PORT}"
}

# check NAME TEXT EXPR — EXPR is JavaScript evaluated with t (the text), j (t
# parsed as JSON, or null), sse(t) -> [{event, data, json}], lines(t) -> parsed NDJSON,
# es(b) -> the AWS eventstream messages in the raw bytes b ({headers, json}; it
# throws on a bad length or CRC). checkf NAME FILE EXPR reads FILE instead of TEXT.
JS_PRELUDE='
const b = require("fs").readFileSync(0);
const t = b.toString("utf8");
const es = (buf) => {
  const { crc32 } = require("zlib");
  const out = [];
  for (let p = 0; p < buf.length;) {
    const total = buf.readUInt32BE(p), hlen = buf.readUInt32BE(p + 4);
    if (crc32(buf.subarray(p, p + 8)) !== buf.readUInt32BE(p + 8)) throw new Error("bad prelude CRC at " + p);
    if (p + total > buf.length) throw new Error("truncated message at " + p);
    if (crc32(buf.subarray(p, p + total - 4)) !== buf.readUInt32BE(p + total - 4)) throw new Error("bad message CRC at " + p);
    const headers = {};
    for (let h = p + 12; h < p + 12 + hlen;) {
      const n = buf[h]; const name = buf.toString("latin1", h + 1, h + 1 + n); h += 1 + n;
      if (buf[h] !== 7) throw new Error("header type " + buf[h]);
      const vl = buf.readUInt16BE(h + 1); headers[name] = buf.toString("utf8", h + 3, h + 3 + vl); h += 3 + vl;
    }
    out.push({ headers, json: JSON.parse(buf.toString("utf8", p + 12 + hlen, p + total - 4)) });
    p += total;
  }
  return out;
};
let j = null; try { j = JSON.parse(t); } catch {}
const sse = (s) => s.split(/\r?\n\r?\n/).filter((b) => b.trim()).map((b) => {
  const e = { event: null, data: "" };
  for (const l of b.split(/\r?\n/)) {
    if (l.startsWith("event: ")) e.event = l.slice(7);
    else if (l.startsWith("data: ")) e.data += l.slice(6);
  }
  try { e.json = JSON.parse(e.data); } catch { e.json = null; }
  return e;
});
const lines = (s) => s.split("\n").filter(Boolean).map((l) => JSON.parse(l));
const words = (s) => (s.match(/\S+/g) || []).length;
let r;
try { r = eval(process.argv[1]); } catch (e) { console.log("exception: " + e.message); process.exit(1); }
if (!r) { console.log("false for: " + t.slice(0, 500)); process.exit(1); }
'
check() {
    local name=$1 text=$2 expr=$3 out
    if out=$(node -e "$JS_PRELUDE" "$expr" <<<"$text" 2>&1); then ok "$name"; else bad "$name" "$out"; fi
}
checkf() {
    local name=$1 file=$2 expr=$3 out
    if out=$(node -e "$JS_PRELUDE" "$expr" <"$file" 2>&1); then ok "$name"; else bad "$name" "$out"; fi
}

# expect NAME ACTUAL WANTED — plain equality.
expect() {
    if [ "$2" = "$3" ]; then ok "$1"; else bad "$1" "got '$2', want '$3'"; fi
}

chat() {   # chat BODY [curl args...] — POST /v1/chat/completions
    local body=$1; shift
    curl -sN "$@" "$U/v1/chat/completions" -H 'Content-Type: application/json' -d "$body"
}

user_msg() {   # user_msg TEXT [extra JSON members] — an OpenAI chat body
    printf '{"model":"gpt-test","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"%s"}]%s}' "$1" "${2:+,$2}"
}

########################################################################### CLI
node "$MOCK" --bogus >/dev/null 2>&1
expect "unknown CLI argument exits 2" "$?" 2

start_mock plain || { echo "mock-selftest: $passed passed, $((failed + 1)) failed"; exit 1; }
U=http://127.0.0.1:$PORT
PLAIN_PID=$MOCK_PID

expect "GET /__mock/health -> 200" "$(curl -s -o /dev/null -w '%{http_code}' "$U/__mock/health")" 200

######################################################################## OpenAI
r=$(chat "$(user_msg 'Hello there friend')")
check "openai plain: shape, reply, usage" "$r" '
  j.object === "chat.completion" && typeof j.id === "string" && Number.isInteger(j.created) && j.model === "gpt-test" &&
  j.choices.length === 1 && j.choices[0].index === 0 && j.choices[0].message.role === "assistant" &&
  j.choices[0].message.content === "mock reply to: Hello there friend" && j.choices[0].finish_reason === "stop" &&
  j.usage.prompt_tokens === 6 && j.usage.completion_tokens === 6 && j.usage.total_tokens === 12'

r=$(chat "$(user_msg 'Hello there friend' '"stream":true,"stream_options":{"include_usage":true}')")
check "openai stream: role chunk, 5 content deltas, finish, usage chunk, [DONE]" "$r" '
  const ev = sse(t); const js = ev.filter((e) => e.json);
  const content = js.filter((e) => e.json.choices.length && e.json.choices[0].delta.content);
  const last = js[js.length - 1].json;
  ev[ev.length - 1].data === "[DONE]" && js.every((e) => e.json.object === "chat.completion.chunk") &&
  js[0].json.choices[0].delta.role === "assistant" && content.length === 5 &&
  content.map((e) => e.json.choices[0].delta.content).join("") === "mock reply to: Hello there friend" &&
  js[js.length - 2].json.choices[0].finish_reason === "stop" &&
  last.choices.length === 0 && last.usage.prompt_tokens === 6 && last.usage.completion_tokens === 6 && last.usage.total_tokens === 12'

r=$(chat "$(user_msg 'hi' '"stream":true')")
check "openai stream without include_usage has no usage" "$r" '
  const js = sse(t).filter((e) => e.json); js.length === 7 && js.every((e) => !("usage" in e.json))'

r=$(chat "$(user_msg 'hi [[mock:no_usage=1]]' '"stream":true,"stream_options":{"include_usage":true}')")
check "no_usage=1: no usage chunk even when asked" "$r" '
  const js = sse(t).filter((e) => e.json); js.length > 0 && js.every((e) => !e.json.usage) && t.trim().endsWith("data: [DONE]")'

r=$(chat '{"model":"mock:chunks=8","stream":true,"messages":[{"role":"user","content":"count my chunks please"}]}')
check "chunks=8 from the model name: 8 content deltas" "$r" '
  sse(t).filter((e) => e.json && e.json.choices[0] && e.json.choices[0].delta.content).length === 8'

r=$(chat "$(user_msg 'x [[mock:reply=mail me at alice%40example.com%2C thanks]]')")
check "reply=TEXT is URL-decoded" "$r" 'j.choices[0].message.content === "mail me at alice@example.com, thanks" && j.usage.completion_tokens === 5'

r=$(chat "$(user_msg 'x [[mock:big=5000]]')")
check "big=5000: reply of 5000 bytes" "$r" 'Buffer.byteLength(j.choices[0].message.content) === 5000 && j.usage.completion_tokens === words(j.choices[0].message.content)'

r=$(chat "$(user_msg 'one two three four five' '"max_tokens":2')")
check "max_tokens cuts the reply, finish_reason length" "$r" 'j.choices[0].message.content === "mock reply" && j.choices[0].finish_reason === "length" && j.usage.completion_tokens === 2'

r=$(chat "$(user_msg 'x [[mock:bogus=1]]')" -w '\n%{http_code}')
check "unknown directive -> 400 with OpenAI error shape" "$r" '
  const [b, code] = t.trim().split("\n"); const e = JSON.parse(b).error; code === "400" && /bogus/.test(e.message) && e.type && "code" in e'

r=$(chat '{not json' -w '\n%{http_code}')
check "invalid JSON body -> 400" "$r" 't.trim().endsWith("400") && t.includes("\"error\"")'

############################################################# status / failures
r=$(chat "$(user_msg 'x [[mock:status=503,retry_after=7]]')" -D "$TMP/h" -w '\n%{http_code}')
check "status=503: OpenAI error body" "$r" '
  const [b, code] = t.trim().split("\n"); const e = JSON.parse(b).error;
  code === "503" && e.type === "server_error" && typeof e.message === "string" && "code" in e && "param" in e'
expect "retry_after=7 -> Retry-After: 7" "$(tr -d '\r' <"$TMP/h" | sed -n 's/^retry-after: //Ip')" 7

codes=""
for _ in 1 2 3 4; do
    codes="$codes $(chat "$(user_msg 'x [[mock:fail_times=2,key=k1,status=429]]')" -o /dev/null -w '%{http_code}')"
done
expect "fail_times=2,key=k1,status=429: 429 429 200 200" "$codes" " 429 429 200 200"
expect "another key has its own counter" \
    "$(chat "$(user_msg 'x [[mock:fail_times=1,key=k2]]')" -o /dev/null -w '%{http_code}')" 503
r=$(curl -s "$U/__mock/stats")
check "stats show the fail counters" "$r" 'j.fail_counters.k1 === 2 && j.fail_counters.k2 === 1'

##################################################################### timing
tt=$(chat "$(user_msg 'x [[mock:delay_ms=300]]')" -o /dev/null -w '%{time_total}')
check "delay_ms=300 delays the answer" "$tt" 'Number(t) >= 0.3 && Number(t) < 3'
tt=$(chat "$(user_msg 'x [[mock:chunks=4,chunk_delay_ms=150]]' '"stream":true')" -o /dev/null -w '%{time_starttransfer} %{time_total}')
check "chunk_delay_ms=150, chunks=4: first byte early, stream takes >= 450 ms" "$tt" '
  const [first, total] = t.trim().split(" ").map(Number); first < 0.3 && total >= 0.45 && total < 3'

##################################################################### faults
curl -s -X DELETE "$U/__mock/requests" >/dev/null
for h in before_headers after_headers mid_stream; do
    : >"$TMP/hang.out"
    chat "$(user_msg "x [[mock:hang=$h]]" '"stream":true')" -m 1 -o "$TMP/hang.out" -w '%{http_code}' >"$TMP/hang.code"
    rc=$?
    body=$(cat "$TMP/hang.out")
    case $h in
        before_headers) want=000 ;;
        *) want=200 ;;
    esac
    if [ $rc -eq 28 ] && [ "$(cat "$TMP/hang.code")" = $want ]; then ok "hang=$h: no end, client times out (status $want)"
    else bad "hang=$h: no end, client times out" "curl rc=$rc code=$(cat "$TMP/hang.code")"; fi
    if [ $h = mid_stream ]; then
        check "hang=mid_stream sent the first half of the stream" "$body" '
          const n = sse(t).filter((e) => e.json && e.json.choices[0] && e.json.choices[0].delta.content).length; n === 2 && !t.includes("[DONE]")'
    fi
done
sleep 0.2
r=$(curl -s "$U/__mock/stats")
check "stats: the 3 hung requests count as client-aborted, none in flight" "$r" 'j.client_aborted === 3 && j.in_flight === 0 && j.open_connections >= 1'
r=$(curl -s "$U/__mock/requests")
check "records: hung requests have outcome client_aborted" "$r" 'j.length === 3 && j.every((x) => x.outcome === "client_aborted")'

chat "$(user_msg 'x [[mock:close_mid_stream=1]]' '"stream":true')" -o "$TMP/cut.out"
rc=$?
if [ $rc -ne 0 ] && ! grep -q DONE "$TMP/cut.out" && grep -q 'chat.completion.chunk' "$TMP/cut.out"; then ok "close_mid_stream=1 (stream): partial events, then the connection dies (curl rc=$rc)"
else bad "close_mid_stream=1 (stream)" "rc=$rc $(head -c 300 "$TMP/cut.out")"; fi
chat "$(user_msg 'x [[mock:close_mid_stream=1]]')" -o /dev/null
expect "close_mid_stream=1 (plain): body shorter than Content-Length (curl rc 18)" "$?" 18

chat "$(user_msg 'x [[mock:bad_framing=1]]')" -o /dev/null
expect "bad_framing=1: invalid chunked framing (curl rc 56)" "$?" 56
chat "$(user_msg 'x [[mock:bad_framing=cl]]' '"stream":true')" -o /dev/null
expect "bad_framing=cl (stream): Content-Length larger than the body (curl rc 18)" "$?" 18
chat "$(user_msg 'x [[mock:bad_framing=status]]')" -o /dev/null
rc=$?
if [ $rc -ne 0 ]; then ok "bad_framing=status: unparsable status line (curl rc=$rc)"; else bad "bad_framing=status" "curl accepted it"; fi
sleep 0.1
r=$(curl -s "$U/__mock/stats")
check "stats: self-inflicted cuts are server_closed, not client_aborted" "$r" 'j.server_closed === 5 && j.client_aborted === 3'

r=$(chat "$(user_msg 'x [[mock:error_mid_stream=1]]' '"stream":true')")
check "error_mid_stream=1: an error event after half the deltas, no [DONE]" "$r" '
  const ev = sse(t); const last = ev[ev.length - 1].json; last && last.error && last.error.type === "server_error" && !t.includes("[DONE]")'

r=$(chat "$(user_msg 'x [[mock:require_key=sk-right]]')" -H 'Authorization: Bearer sk-wrong' -o /dev/null -w '%{http_code}')
s2=$(chat "$(user_msg 'x [[mock:require_key=sk-right]]')" -H 'Authorization: Bearer sk-right' -o /dev/null -w '%{http_code}')
expect "require_key: wrong key 401, right key 200" "$r $s2" "401 200"

################################################################# Anthropic
AB='{"model":"claude-test","max_tokens":64,"system":"Be brief.","messages":[{"role":"user","content":[{"type":"text","text":"Hi claude there"}]}]'
r=$(curl -s "$U/v1/messages" -H 'anthropic-version: 2023-06-01' -d "$AB}")
check "anthropic plain: shape and usage" "$r" '
  j.type === "message" && j.role === "assistant" && /^msg_/.test(j.id) && j.model === "claude-test" &&
  j.content.length === 1 && j.content[0].type === "text" && j.content[0].text === "mock reply to: Hi claude there" &&
  j.stop_reason === "end_turn" && j.stop_sequence === null && j.usage.input_tokens === 5 && j.usage.output_tokens === 6'

r=$(curl -sN "$U/v1/messages" -d "$AB,\"stream\":true}")
check "anthropic stream: event sequence, deltas, usage" "$r" '
  const ev = sse(t); const names = ev.map((e) => e.event);
  const deltas = ev.filter((e) => e.event === "content_block_delta");
  names[0] === "message_start" && names[1] === "content_block_start" &&
  names.slice(-3).join() === "content_block_stop,message_delta,message_stop" &&
  ev.every((e) => e.json && e.json.type === e.event) && deltas.length === 5 &&
  deltas.every((e) => e.json.delta.type === "text_delta") &&
  deltas.map((e) => e.json.delta.text).join("") === "mock reply to: Hi claude there" &&
  ev[0].json.message.usage.input_tokens === 5 && ev[ev.length - 2].json.usage.output_tokens === 6 &&
  ev[ev.length - 2].json.delta.stop_reason === "end_turn"'

r=$(curl -s "$U/v1/messages" -d '{"model":"mock:status=529","max_tokens":5,"messages":[{"role":"user","content":"x"}]}' -w '\n%{http_code}')
check "anthropic status=529: Anthropic error shape" "$r" '
  const [b, code] = t.trim().split("\n"); const o = JSON.parse(b);
  code === "529" && o.type === "error" && o.error.type === "overloaded_error" && typeof o.error.message === "string"'

#################################################################### Ollama
r=$(curl -s "$U/api/chat" -d '{"model":"llama3","stream":false,"messages":[{"role":"user","content":"Hi llama"}]}')
check "ollama plain (stream:false)" "$r" '
  j.model === "llama3" && j.message.role === "assistant" && j.message.content === "mock reply to: Hi llama" &&
  j.done === true && j.prompt_eval_count === 2 && j.eval_count === 5'
r=$(curl -sN "$U/api/chat" -d '{"model":"llama3","messages":[{"role":"user","content":"Hi llama"}]}' -D "$TMP/h")
check "ollama streams NDJSON by default" "$r" '
  const ls = lines(t); const last = ls[ls.length - 1];
  ls.length === 6 && ls.slice(0, -1).every((l) => l.done === false && l.message.role === "assistant") &&
  ls.map((l) => l.message.content).join("") === "mock reply to: Hi llama" &&
  last.done === true && last.done_reason === "stop" && last.prompt_eval_count === 2 && last.eval_count === 5'
expect "ollama stream content type" "$(tr -d '\r' <"$TMP/h" | sed -n 's/^content-type: //Ip')" application/x-ndjson

#################################################################### Gemini
GB='{"systemInstruction":{"parts":[{"text":"be kind"}]},"contents":[{"role":"user","parts":[{"text":"Hi gemini"}]}]}'
r=$(curl -s "$U/v1beta/models/gemini-test:generateContent?key=gk" -d "$GB")
check "gemini generateContent" "$r" '
  const c = j.candidates[0]; c.content.role === "model" && c.content.parts[0].text === "mock reply to: Hi gemini" &&
  c.finishReason === "STOP" && j.usageMetadata.promptTokenCount === 4 && j.usageMetadata.candidatesTokenCount === 5 &&
  j.usageMetadata.totalTokenCount === 9'
r=$(curl -sN "$U/v1beta/models/gemini-test:streamGenerateContent?alt=sse" -d "$GB")
check "gemini streamGenerateContent?alt=sse (CRLF-framed events)" "$r" '
  const ev = sse(t); const last = ev[ev.length - 1].json;
  t.includes("\r\n\r\n") && ev.length === 5 && ev.map((e) => e.json.candidates[0].content.parts[0].text).join("") === "mock reply to: Hi gemini" &&
  last.candidates[0].finishReason === "STOP" && last.usageMetadata.candidatesTokenCount === 5'
r=$(curl -sN "$U/v1beta/models/gemini-test:streamGenerateContent" -d "$GB")
check "gemini streamGenerateContent without alt=sse: a JSON array" "$r" 'Array.isArray(j) && j.length === 5'
r=$(curl -s "$U/v1beta/models/mock:status=429:generateContent" -d "$GB" -w '\n%{http_code}')
check "gemini directive in the model path, Google error shape" "$r" '
  const [b, code] = t.trim().split("\n"); const e = JSON.parse(b).error; code === "429" && e.code === 429 && e.status === "RESOURCE_EXHAUSTED"'

################################################################ embeddings
r=$(curl -s "$U/v1/embeddings" -d '{"model":"embed-test","input":["hello world","foo"]}')
check "embeddings (array input)" "$r" '
  j.object === "list" && j.data.length === 2 && j.data.every((d, i) => d.object === "embedding" && d.index === i && d.embedding.length === 8) &&
  j.usage.prompt_tokens === 3 && j.usage.total_tokens === 3'
r2=$(curl -s "$U/v1/embeddings" -d '{"model":"embed-test","input":"hello world"}')
check "embeddings are deterministic" "[$r,$r2]" 'JSON.stringify(j[0].data[0].embedding) === JSON.stringify(j[1].data[0].embedding)'
r=$(curl -s "$U/v1/embeddings" -d '{"model":"embed-test","input":"x","encoding_format":"base64","dimensions":4}')
check "embeddings encoding_format=base64" "$r" 'Buffer.from(j.data[0].embedding, "base64").length === 16'

################################################################ models, Azure
r=$(curl -s "$U/v1/models")
check "GET /v1/models" "$r" 'j.object === "list" && j.data.some((m) => m.id === "gpt-test" && m.object === "model")'
curl -s -X DELETE "$U/__mock/requests" >/dev/null
r=$(curl -s "$U/openai/deployments/my-dep/chat/completions?api-version=2024-06-01" -H 'api-key: az-key' \
    -H 'X-Custom: One' -d '{"messages":[{"role":"user","content":"azure hi"}]}')
check "Azure deployment path" "$r" 'j.object === "chat.completion" && j.choices[0].message.content === "mock reply to: azure hi"'
r=$(curl -s "$U/__mock/requests")
check "records: method, path, query, lowercased headers, body" "$r" '
  const x = j[0]; j.length === 1 && x.method === "POST" && x.path === "/openai/deployments/my-dep/chat/completions" &&
  x.query["api-version"] === "2024-06-01" && x.headers["api-key"] === "az-key" && x.headers["x-custom"] === "One" &&
  JSON.parse(x.body).messages[0].content === "azure hi" && x.status === 200 && x.outcome === "complete"'
curl -s -X DELETE "$U/__mock/requests" >/dev/null
r=$(curl -s "$U/__mock/requests")
s2=$(curl -s "$U/__mock/stats")
check "DELETE /__mock/requests clears records and counters" "[$r,$s2]" '
  j[0].length === 0 && j[1].requests === 0 && j[1].client_aborted === 0 && Object.keys(j[1].fail_counters).length === 0'

################################################################### Bedrock
BB='{"system":[{"text":"be kind"}],"messages":[{"role":"user","content":[{"text":"Hi bedrock"}]}]'
bedrock() {   # bedrock MODEL_ID converse|converse-stream BODY [curl args...]
    local model=$1 op=$2 body=$3; shift 3
    curl -sN "$@" "$U/model/$model/$op" -H 'Content-Type: application/json' -d "$body"
}
r=$(bedrock anthropic.claude-test-v1%3A0 converse "$BB}")
check "bedrock converse: shape and usage" "$r" '
  j.output.message.role === "assistant" && j.output.message.content.length === 1 &&
  j.output.message.content[0].text === "mock reply to: Hi bedrock" && j.stopReason === "end_turn" &&
  j.usage.inputTokens === 4 && j.usage.outputTokens === 5 && j.usage.totalTokens === 9'
bedrock m converse-stream "$BB}" -D "$TMP/h" -o "$TMP/es.out"
expect "bedrock converse-stream content type" "$(tr -d '\r' <"$TMP/h" | sed -n 's/^content-type: //Ip')" application/vnd.amazon.eventstream
checkf "bedrock converse-stream: eventstream frames with valid CRCs, event order, usage" "$TMP/es.out" '
  const ev = es(b); const names = ev.map((e) => e.headers[":event-type"]);
  const deltas = ev.filter((e) => e.headers[":event-type"] === "contentBlockDelta");
  ev.every((e) => e.headers[":message-type"] === "event" && e.headers[":content-type"] === "application/json") &&
  names[0] === "messageStart" && ev[0].json.role === "assistant" && deltas.length === 5 &&
  deltas.map((e) => e.json.delta.text).join("") === "mock reply to: Hi bedrock" &&
  names.slice(-3).join() === "contentBlockStop,messageStop,metadata" &&
  ev[ev.length - 2].json.stopReason === "end_turn" &&
  JSON.stringify(ev[ev.length - 1].json.usage) === JSON.stringify({ inputTokens: 4, outputTokens: 5, totalTokens: 9 })'
bedrock m converse-stream '{"messages":[{"role":"user","content":[{"text":"one two three [[mock:chunks=2,no_usage]]"}]}],"inferenceConfig":{"maxTokens":3}}' -o "$TMP/es.out"
checkf "bedrock stream: chunks=2, no_usage (metadata without usage), maxTokens -> max_tokens" "$TMP/es.out" '
  const ev = es(b); const last = ev[ev.length - 1];
  ev.filter((e) => e.headers[":event-type"] === "contentBlockDelta").length === 2 &&
  last.headers[":event-type"] === "metadata" && !("usage" in last.json) && ev[ev.length - 2].json.stopReason === "max_tokens"'
r=$(bedrock 'mock%3Astatus%3D429' converse "$BB}" -D "$TMP/h" -w '\n%{http_code}')
check "bedrock: directive in the URL model id, AWS error shape" "$r" '
  const [body, code] = t.trim().split("\n"); code === "429" && typeof JSON.parse(body).message === "string"'
expect "bedrock error names the exception in x-amzn-errortype" \
    "$(tr -d '\r' <"$TMP/h" | sed -n 's/^x-amzn-errortype: \([A-Za-z]*\).*/\1/Ip')" ThrottlingException
bedrock m converse-stream '{"messages":[{"role":"user","content":[{"text":"x [[mock:error_mid_stream]]"}]}]}' -o "$TMP/es.out"
checkf "bedrock error_mid_stream: an exception message after half the deltas" "$TMP/es.out" '
  const ev = es(b); const last = ev[ev.length - 1];
  last.headers[":message-type"] === "exception" && last.headers[":exception-type"] === "modelStreamErrorException" &&
  ev.filter((e) => e.headers[":event-type"] === "contentBlockDelta").length === 2'
bedrock m converse-stream '{"messages":[{"role":"user","content":[{"text":"x [[mock:close_mid_stream]]"}]}]}' -o "$TMP/es.out"
rc=$?
checkf "bedrock close_mid_stream: whole frames, then the connection dies (curl rc=$rc)" "$TMP/es.out" "
  $rc !== 0 && es(b).length === 3"
bedrock m converse-stream '{"messages":[{"role":"user","content":[{"text":"x [[mock:hang=mid_stream]]"}]}]}' -m 1 -o "$TMP/es.out"
rc=$?
checkf "bedrock hang=mid_stream: half the deltas, then nothing (curl rc=$rc)" "$TMP/es.out" "
  $rc === 28 && es(b).length === 3"
r=$(bedrock m converse '{"messages":"nope"}' -w '\n%{http_code}')
check "bedrock: messages not an array -> 400 ValidationException shape" "$r" '
  const [body, code] = t.trim().split("\n"); code === "400" && /messages/.test(JSON.parse(body).message)'

# SigV4: curl --aws-sigv4 signs independently of the mock's checker.
SB='{"messages":[{"role":"user","content":[{"text":"signed [[mock:sigv4_secret=s3cr3t]]"}]}]}'
codes="$(bedrock m converse "$SB" --aws-sigv4 aws:amz:us-east-1:bedrock --user AKIDEXAMPLE:s3cr3t -o /dev/null -w '%{http_code}')"
codes="$codes $(bedrock m converse "$SB" --aws-sigv4 aws:amz:us-east-1:bedrock --user AKIDEXAMPLE:wrong -o /dev/null -w '%{http_code}')"
codes="$codes $(bedrock m converse "$SB" -o /dev/null -w '%{http_code}')"
codes="$codes $(bedrock m converse "${SB/signed/unsigned}" -H 'Authorization: Bearer br-key' -o /dev/null -w '%{http_code}')"
expect "sigv4_secret: right secret 200, wrong secret 403, unsigned 403, bearer 403" "$codes" "200 403 403 403"
r=$(curl -s "$U/__mock/requests")
check "records: sigv4 parsed and marked valid/invalid" "$r" '
  const s = j.slice(-4).map((x) => x.sigv4 || null);
  s[0].access_key_id === "AKIDEXAMPLE" && s[0].region === "us-east-1" && s[0].service === "bedrock" &&
  s[0].signed_headers.includes("host") && s[0].valid === true && s[1].valid === false && s[2] === null && s[3] === null'
codes="$(bedrock m converse '{"messages":[{"role":"user","content":[{"text":"x [[mock:require_sigv4]]"}]}]}' --aws-sigv4 aws:amz:us-east-1:bedrock --user AK:any -o /dev/null -w '%{http_code}')"
codes="$codes $(bedrock m converse '{"messages":[{"role":"user","content":[{"text":"x [[mock:require_sigv4]]"}]}]}' -o /dev/null -w '%{http_code}')"
codes="$codes $(bedrock m converse '{"messages":[{"role":"user","content":[{"text":"x [[mock:require_key=br-key]]"}]}]}' -H 'Authorization: Bearer br-key' -o /dev/null -w '%{http_code}')"
expect "require_sigv4: signed 200, unsigned 403; require_key takes a Bedrock bearer key" "$codes" "200 403 200"

##################################################################### SIGTERM
kill -TERM "$PLAIN_PID"
for _ in $(seq 1 40); do kill -0 "$PLAIN_PID" 2>/dev/null || break; sleep 0.05; done
wait "$PLAIN_PID" 2>/dev/null
expect "SIGTERM -> exit 0 promptly" "$?" 0

############################################################## TLS and HTTP/2
if command -v openssl >/dev/null; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
        -addext 'subjectAltName=IP:127.0.0.1,DNS:localhost' -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1
    if start_mock tls --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem"; then
        r=$(curl -s --cacert "$TMP/cert.pem" "https://127.0.0.1:$PORT/v1/chat/completions" -d "$(user_msg 'tls hi')" -w '\n%{http_version}')
        check "HTTPS: verified TLS, HTTP/1.1" "$r" 'const [b, v] = t.trim().split("\n"); v === "1.1" && JSON.parse(b).choices[0].message.content === "mock reply to: tls hi"'
    fi
    if start_mock h2 --http2 --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem"; then
        H=https://127.0.0.1:$PORT
        r=$(curl -s -k --http2 "$H/v1/chat/completions" -d "$(user_msg 'h2 hi')" -w '\n%{http_version}')
        check "HTTP/2: plain chat" "$r" 'const [b, v] = t.trim().split("\n"); v === "2" && JSON.parse(b).choices[0].message.content === "mock reply to: h2 hi"'
        r=$(curl -sN -k --http2 "$H/v1/chat/completions" -d "$(user_msg 'h2 stream' '"stream":true')")
        check "HTTP/2: stream" "$r" 'sse(t).filter((e) => e.json).length === 7 && t.trim().endsWith("[DONE]")'
        r=$(curl -s -k --http1.1 "$H/v1/chat/completions" -d "$(user_msg 'h1 fallback')" -w '\n%{http_version}')
        check "HTTP/2 server: HTTP/1.1 fallback" "$r" 'const [b, v] = t.trim().split("\n"); v === "1.1" && JSON.parse(b).choices[0].message.content === "mock reply to: h1 fallback"'
        curl -s -k --http2 "$H/v1/chat/completions" -d "$(user_msg 'x [[mock:close_mid_stream=1]]' '"stream":true')" -o /dev/null
        rc=$?
        if [ $rc -ne 0 ]; then ok "HTTP/2: close_mid_stream resets the stream (curl rc=$rc)"; else bad "HTTP/2: close_mid_stream" "curl rc=0"; fi
        curl -s -k --http2 -m 1 "$H/v1/chat/completions" -d "$(user_msg 'x [[mock:hang=after_headers]]')" -o /dev/null
        expect "HTTP/2: hang=after_headers times the client out" "$?" 28
        sleep 0.2
        r=$(curl -s -k --http2 "$H/__mock/stats")
        check "HTTP/2: outcomes counted" "$r" 'j.client_aborted === 1 && j.server_closed === 1 && j.in_flight === 0'
    fi
else
    echo "skip - openssl not found: no TLS / HTTP/2 checks"
fi

echo "mock-selftest: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
