#!/usr/bin/env node
// Load test of a running `flashmoe serve` (no dependencies; fetch only):
//   node tests/server/load.mjs --port N [--requests 200] [--concurrency 16]
// Sends a deterministic mix of valid chat/completions/messages requests (whole
// and streamed, small max_tokens), malformed and bad-field bodies (expect 400),
// bodies over --max-body (expect 413; start the server with --max-body 64K or
// pass its limit) and clients that leave mid-stream; after a warm-up, two
// identical rounds. Checks that every answer is what it should be, that the
// server stays up, and that its RSS (from /stats) stays bounded. Prints
// "ok - ..."/"not ok - ..." lines, a summary line with the figures, and exits
// non-zero on a failure. Meant for a small model (e.g. qwen35moe_tok).
import { parseArgs } from 'node:util';

const { values: o } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    requests: { type: 'string', default: '200' }, // per round
    concurrency: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '2' },
    'max-tokens': { type: 'string', default: '4' },
    'max-body': { type: 'string', default: '65536' }, // the server's --max-body, in bytes
    'api-key': { type: 'string' },
    'rss-bound-mb': { type: 'string', default: '64' }, // growth over the warm-up, round 1
    'rss-growth-mb': { type: 'string', default: '8' }, // growth in each later round
    'timeout-s': { type: 'string', default: '120' }, // per request
  },
});
if (!o.port) {
  console.error('usage: node load.mjs --port N [--requests 200] [--concurrency 16] [--rounds 2] [--max-tokens 4]\n' +
    '         [--max-body BYTES] [--api-key KEY] [--rss-bound-mb 64] [--rss-growth-mb 8] [--timeout-s 120]');
  process.exit(2);
}
const BASE = `http://${o.host}:${o.port}`;
const N = Number(o.requests), CONC = Number(o.concurrency), ROUNDS = Number(o.rounds);
const MAX_TOKENS = Number(o['max-tokens']), MAX_BODY = Number(o['max-body']);
const AUTH = o['api-key'] ? { authorization: `Bearer ${o['api-key']}` } : {};
const MB = 1 << 20;

let failed = 0;
const report = (ok, name, detail) => {
  console.log(`${ok ? 'ok' : 'not ok'} - load: ${name}`);
  if (!ok) failed++;
  if (!ok && detail) console.log(String(detail).replace(/^/gm, '    '));
};

// ---- the requests ----------------------------------------------------------------
const PROMPTS = ['Hello', 'Tell me about the sea', 'Why is the sky blue?', 'Count to ten', 'Write a haiku',
  'What is 2 + 2?', 'Name three colours', 'Say something nice'];
// One round is this pattern repeated: 14 valid, 4 bad, 2 that leave mid-stream in every 20.
const PATTERN = ['chat', 'chat_stream', 'completion', 'malformed', 'chat', 'messages', 'chat_stream', 'disconnect',
  'bad_field', 'completion_stream', 'chat', 'messages_stream', 'oversized', 'chat_stream', 'messages', 'malformed',
  'chat', 'completion', 'disconnect', 'chat_stream'];

function request(kind, i) {
  const content = PROMPTS[i % PROMPTS.length];
  const chat = { messages: [{ role: 'user', content }], max_tokens: MAX_TOKENS, temperature: 0 };
  const messages = { model: 'any', ...chat };
  switch (kind) {
    case 'chat': return ['/v1/chat/completions', chat, 200];
    case 'chat_stream': return ['/v1/chat/completions', { ...chat, stream: true, stream_options: { include_usage: true } }, 200];
    case 'completion': return ['/v1/completions', { prompt: content, max_tokens: MAX_TOKENS, temperature: 0 }, 200];
    case 'completion_stream': return ['/v1/completions', { prompt: content, max_tokens: MAX_TOKENS, stream: true }, 200];
    case 'messages': return ['/v1/messages', messages, 200];
    case 'messages_stream': return ['/v1/messages', { ...messages, stream: true }, 200];
    case 'malformed': return [i % 2 ? '/v1/chat/completions' : '/v1/messages', '{"messages": [{"role": "user", "content"', 400];
    case 'bad_field': return ['/v1/chat/completions', { ...chat, temperature: 'hot' }, 400];
    case 'oversized': return ['/v1/chat/completions', { ...chat, messages: [{ role: 'user', content: 'x'.repeat(2 * MAX_BODY) }] }, 413];
    case 'disconnect': return ['/v1/chat/completions', { ...chat, max_tokens: 400, stream: true }, 200];
  }
  throw new Error(kind);
}

/** Checks a whole answer; returns an error message or null. */
function checkBody(kind, path, text) {
  if (kind.endsWith('_stream')) {
    text = text.replace(/^:[^\n]*\n\n/gm, ''); // SSE comments (": keep-alive" while queued)
    if (path === '/v1/messages') {
      if (!text.startsWith('event: message_start\n')) return 'no message_start';
      if (!text.endsWith('event: message_stop\ndata: {"type":"message_stop"}\n\n')) return 'no message_stop at the end';
      return null;
    }
    const events = text.slice(0, -2).split('\n\n');
    if (events.at(-1) !== 'data: [DONE]') return 'no [DONE] at the end';
    let finish = 0;
    for (const e of events.slice(0, -1)) {
      if (!e.startsWith('data: ')) return `not a data event: ${e.slice(0, 80)}`;
      const c = JSON.parse(e.slice(6));
      if (c.choices?.[0]?.finish_reason) finish++;
    }
    return finish === 1 ? null : `${finish} finish_reasons`;
  }
  const j = JSON.parse(text);
  if (kind === 'chat') return typeof j.choices?.[0]?.message?.content === 'string' && j.usage?.completion_tokens <= MAX_TOKENS ? null : 'bad chat body';
  if (kind === 'completion') return typeof j.choices?.[0]?.text === 'string' ? null : 'bad completion body';
  if (kind === 'messages') return j.type === 'message' && Array.isArray(j.content) ? null : 'bad message body';
  return typeof (j.error?.message ?? j.error?.error?.message) === 'string' ? null : 'no error message'; // 4xx
}

/** One request: { kind, ok, ms, error }. */
async function one(kind, i) {
  const [path, body, want] = request(kind, i);
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new Error('timed out')), Number(o['timeout-s']) * 1000);
  const t0 = performance.now();
  try {
    const r = await fetch(BASE + path, {
      method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json', ...AUTH },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    if (r.status !== want) return { kind, ok: false, error: `${kind}: HTTP ${r.status}, want ${want}: ${(await r.text()).slice(0, 200)}` };
    if (kind === 'disconnect') { // read until some text arrived, then leave
      const reader = r.body.getReader();
      let seen = '';
      while (!/"content":"[^"]/.test(seen)) { // past the first, empty, delta
        const { value, done } = await reader.read();
        if (done) break;
        seen += Buffer.from(value).toString();
      }
      ac.abort();
      return { kind, ok: true };
    }
    const text = await r.text();
    const error = checkBody(kind, path, text);
    return { kind, ok: !error, ms: performance.now() - t0, error: error && `${kind}: ${error}: ${text.slice(0, 200)}` };
  } catch (e) {
    return { kind, ok: false, error: `${kind}: ${e.cause?.message ?? e.message}` };
  } finally {
    clearTimeout(timer);
  }
}

/** n requests of the pattern, `conc` at a time. */
async function round(n, conc) {
  const results = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < n) {
      const i = next++;
      results[i] = await one(PATTERN[i % PATTERN.length], i);
    }
  }));
  return { results, seconds: (performance.now() - t0) / 1000 };
}

async function getJson(path) {
  const r = await fetch(BASE + path, { headers: AUTH, signal: AbortSignal.timeout(30_000) });
  return { status: r.status, json: await r.json() };
}

/** /stats once the server is idle (cancelled jobs wound down). */
async function idleStats() {
  for (let k = 0; ; k++) {
    const s = (await getJson('/stats')).json;
    if ((!s.running && !s.queued) || k > 600) return s;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const pct = (xs, p) => xs.length ? xs[Math.min(xs.length - 1, Math.floor(p * xs.length))] : NaN;
const mb = (b) => (b / MB).toFixed(1);

// ---- the run -----------------------------------------------------------------------
try {
  await round(Math.max(PATTERN.length, 2 * CONC), CONC); // warm-up: every kind, every connection thread
  const warm = await idleStats();
  const rss = [warm.rss_bytes];
  const figures = [];
  for (let r = 1; r <= ROUNDS; r++) {
    const { results, seconds } = await round(N, CONC);
    const bad = results.filter((x) => !x.ok);
    report(!bad.length, `round ${r}: ${N} requests, ${CONC} at a time, each answered as expected`,
      bad.length && `${bad.length} wrong:\n${bad.slice(0, 5).map((x) => x.error).join('\n')}`);
    const lat = results.filter((x) => x.ms !== undefined && !['malformed', 'bad_field', 'oversized'].includes(x.kind))
      .map((x) => x.ms).sort((a, b) => a - b);
    const s = await idleStats();
    rss.push(s.rss_bytes);
    figures.push({ rps: N / seconds, p50: pct(lat, 0.5), p95: pct(lat, 0.95), seconds });
  }
  const health = await getJson('/health');
  report(health.status === 200 && health.json.status === 'ok', 'the server is up and /health says ok', JSON.stringify(health));
  const end = await idleStats();
  report(end.jobs_failed === warm.jobs_failed, 'no job failed', `jobs_failed ${warm.jobs_failed} -> ${end.jobs_failed}`);
  const bound = Number(o['rss-bound-mb']), growth = Number(o['rss-growth-mb']);
  report(rss[1] - rss[0] < bound * MB, `RSS after round 1 minus after the warm-up: ${mb(rss[1] - rss[0])} MB (< ${bound} MB)`);
  for (let r = 2; r <= ROUNDS; r++)
    report(rss[r] - rss[r - 1] < growth * MB, `RSS growth in identical round ${r}: ${mb(rss[r] - rss[r - 1])} MB (< ${growth} MB)`);
  for (const [k, f] of figures.entries())
    console.log(`load: round ${k + 1}: ${N} requests, concurrency ${CONC}, max_tokens ${MAX_TOKENS}: ` +
      `${f.rps.toFixed(1)} req/s, latency p50 ${f.p50.toFixed(0)} ms, p95 ${f.p95.toFixed(0)} ms (${f.seconds.toFixed(1)} s)`);
  console.log(`load: RSS after warm-up ${mb(rss[0])} MB, ${rss.slice(1).map((b, k) => `after round ${k + 1} ${mb(b)} MB`).join(', ')}; ` +
    `prompt cache ${end.prompt_cache.entries} entries, ${mb(end.prompt_cache.bytes)} MB; ` +
    `jobs done ${end.jobs_done}, cancelled ${end.jobs_cancelled}`);
} catch (e) {
  report(false, 'the load test ran to its end', e.stack);
}
process.exit(failed ? 1 : 0);
