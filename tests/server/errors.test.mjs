// Errors: bad requests get 4xx in each API's error shape, unknown paths 404,
// oversized bodies 413, and the API key is enforced (except on /health).
import test from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { openai, anthropic, http, ms, API_KEY } from './common.mjs';

const opts = { timeout: ms(60_000) };
const client = openai('TOK');
const good = { model: 'qwen35moe_tok', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, temperature: 0 };
const goodMessages = { model: 'qwen35moe_tok', max_tokens: 2, messages: [{ role: 'user', content: 'Hi' }] };

/** OpenAI's error body: {error: {message, type, ...}}. */
function openaiError(r, status) {
  assert.equal(r.status, status, r.text);
  assert.match(r.headers.get('content-type') ?? '', /application\/json/);
  assert.equal(typeof r.json?.error?.message, 'string', r.text);
  assert.ok(r.json.error.message.length > 0);
  assert.equal(typeof r.json.error.type, 'string', r.text);
}

/** Anthropic's error body: {type: "error", error: {type, message}}. */
function anthropicError(r, status, type) {
  assert.equal(r.status, status, r.text);
  assert.equal(r.json?.type, 'error', r.text);
  assert.equal(r.json.error?.type, type, r.text);
  assert.equal(typeof r.json.error.message, 'string');
  assert.ok(r.json.error.message.length > 0);
}

test('errors: malformed JSON gets 400 in the OpenAI error shape', opts, async () => {
  for (const path of ['/v1/chat/completions', '/v1/completions']) {
    openaiError(await http('TOK', 'POST', path, '{"messages": [{"role": "user", "content": "Hi"}'), 400);
    openaiError(await http('TOK', 'POST', path, ''), 400);
    openaiError(await http('TOK', 'POST', path, '[1, 2]'), 400);
  }
});

// Each bad field, through the SDK: it throws BadRequestError with the server's message.
const badFields = [
  ['temperature "hot"', { temperature: 'hot' }, /temperature/],
  ['max_tokens -1', { max_tokens: -1 }, /max_tokens/],
  ['max_tokens 1.5', { max_tokens: 1.5 }, /max_tokens/],
  ['messages not an array', { messages: { role: 'user', content: 'Hi' } }, /messages/],
  ['messages empty', { messages: [] }, /messages/],
  ['an unknown role', { messages: [{ role: 'wizard', content: 'Hi' }] }, /role/],
  ['content a number', { messages: [{ role: 'user', content: 42 }] }, /content/],
  ['top_p 2', { top_p: 2 }, /top_p/],
  ['stream "yes"', { stream: 'yes' }, /stream/],
  ['n 2', { n: 2 }, /'n'/],
  ['stop a number', { stop: 7 }, /stop/],
  ['tools not an array', { tools: { type: 'function' } }, /tools/],
  ['seed below -2^63 (a float-to-int overflow before)', { seed: -9.3e18 }, /seed/],
  ['a NUL in a message (was silently cut there)', { messages: [{ role: 'user', content: 'a\u0000 and then more' }] },
    /'messages\[0\]\.content' holds a NUL character/],
];
for (const [name, fields, message] of badFields) {
  test(`errors: ${name} gets 400 (openai BadRequestError)`, opts, async () => {
    await assert.rejects(client.chat.completions.create({ ...good, ...fields }), (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, `${e.constructor.name}: ${e.message}`);
      assert.equal(e.status, 400);
      assert.match(e.message, message);
      assert.equal(typeof e.error?.message, 'string');
      return true;
    });
  });
}

test('errors: completions with a bad prompt get 400', opts, async () => {
  openaiError(await http('TOK', 'POST', '/v1/completions', { prompt: 12 }), 400);
  openaiError(await http('TOK', 'POST', '/v1/completions', { prompt: [1, -5] }), 400);
  openaiError(await http('TOK', 'POST', '/v1/completions', { prompt: [999999999] }), 400);
});

test('errors: a prompt over the context gets 400, not a crash', opts, async () => {
  const long = 'lorem ipsum '.repeat(5000); // ~10k tokens, the fixture's context is 4096
  openaiError(await http('TOK', 'POST', '/v1/chat/completions', { ...good, messages: [{ role: 'user', content: long }] }), 400);
});

test('errors: /v1/messages errors have the Anthropic shape', opts, async () => {
  anthropicError(await http('TOK', 'POST', '/v1/messages', '{"messages": ['), 400, 'invalid_request_error');
  anthropicError(await http('TOK', 'POST', '/v1/messages', { ...goodMessages, messages: 'Hi' }), 400, 'invalid_request_error');
  anthropicError(await http('TOK', 'POST', '/v1/messages', { ...goodMessages, max_tokens: undefined }), 400, 'invalid_request_error');
  anthropicError(await http('TOK', 'POST', '/v1/messages', { ...goodMessages, max_tokens: 0 }), 400, 'invalid_request_error');
  anthropicError(await http('TOK', 'POST', '/v1/messages',
    { ...goodMessages, messages: [{ role: 'system', content: 'Hi' }] }), 400, 'invalid_request_error');
  anthropicError(await http('TOK', 'POST', '/v1/messages', { ...goodMessages, temperature: 'hot' }), 400, 'invalid_request_error');
});

test('errors: the Anthropic SDK throws BadRequestError for a bad request', opts, async () => {
  await assert.rejects(anthropic('TOK').messages.create({ ...goodMessages, messages: [{ role: 'wizard', content: 'Hi' }] }),
    (e) => {
      assert.ok(e instanceof Anthropic.BadRequestError, `${e.constructor.name}: ${e.message}`);
      assert.equal(e.status, 400);
      assert.equal(e.error?.type, 'error');
      assert.equal(e.error?.error?.type, 'invalid_request_error');
      return true;
    });
});

test('errors: unknown paths get 404, wrong methods 405', opts, async () => {
  openaiError(await http('TOK', 'GET', '/v1/nope'), 404);
  openaiError(await http('TOK', 'POST', '/v1/nope', good), 404);
  openaiError(await http('TOK', 'GET', '/'), 404);
  openaiError(await http('TOK', 'GET', '/v1/chat/completions'), 405);
  await assert.rejects(client.models.retrieve('other-model'), (e) => e.status === 404);
});

// ---- the guarded server: --api-key secret --max-body 64K --queue 2 ------------------
const big = 'x'.repeat(100 * 1024);

test('errors: a body over --max-body gets 413 (both API shapes)', opts, async () => {
  const auth = { authorization: `Bearer ${API_KEY}` };
  openaiError(await http('GUARDED', 'POST', '/v1/chat/completions', { ...good, messages: [{ role: 'user', content: big }] }, auth), 413);
  anthropicError(await http('GUARDED', 'POST', '/v1/messages',
    { ...goodMessages, messages: [{ role: 'user', content: big }] }, auth), 413, 'request_too_large');
  await assert.rejects(openai('GUARDED', { apiKey: API_KEY }).completions.create({ model: 'x', prompt: big }),
    (e) => e.status === 413);
  // Just under the limit is fine.
  const r = await http('GUARDED', 'POST', '/v1/completions', { prompt: 'y'.repeat(60 * 1024), max_tokens: 1 }, auth);
  assert.ok(r.status === 200 || r.status === 400, `under the limit: ${r.status} ${r.text.slice(0, 200)}`); // 400: over the context
});

test('errors: without the API key: 401 (openai AuthenticationError)', opts, async () => {
  openaiError(await http('GUARDED', 'GET', '/v1/models'), 401);
  openaiError(await http('GUARDED', 'POST', '/v1/chat/completions', good), 401);
  openaiError(await http('GUARDED', 'GET', '/stats'), 401);
  openaiError(await http('GUARDED', 'GET', '/v1/models', undefined, { authorization: 'Bearer wrong' }), 401);
  openaiError(await http('GUARDED', 'GET', '/v1/models', undefined, { authorization: `Bearer ${API_KEY}x` }), 401);
  openaiError(await http('GUARDED', 'GET', '/v1/models', undefined, { authorization: API_KEY }), 401); // no "Bearer "
  await assert.rejects(openai('GUARDED', { apiKey: 'wrong' }).chat.completions.create(good), (e) => {
    assert.ok(e instanceof OpenAI.AuthenticationError, `${e.constructor.name}: ${e.message}`);
    assert.equal(e.status, 401);
    return true;
  });
});

test('errors: without the API key: 401 in Anthropic shape on /v1/messages (AuthenticationError)', opts, async () => {
  anthropicError(await http('GUARDED', 'POST', '/v1/messages', goodMessages), 401, 'authentication_error');
  await assert.rejects(anthropic('GUARDED', { apiKey: 'wrong' }).messages.create(goodMessages), (e) => {
    assert.ok(e instanceof Anthropic.AuthenticationError, `${e.constructor.name}: ${e.message}`);
    return true;
  });
});

test('errors: the key is accepted as Bearer and as x-api-key; /health needs none', opts, async () => {
  const health = await http('GUARDED', 'GET', '/health');
  assert.equal(health.status, 200);
  assert.equal(health.json?.status, 'ok');
  assert.equal((await http('GUARDED', 'GET', '/v1/models', undefined, { authorization: `Bearer ${API_KEY}` })).status, 200);
  assert.equal((await http('GUARDED', 'GET', '/v1/models', undefined, { 'x-api-key': API_KEY })).status, 200);
  const r = await openai('GUARDED', { apiKey: API_KEY }).chat.completions.create(good); // Bearer
  assert.equal(r.choices[0].finish_reason, 'length');
  const m = await anthropic('GUARDED', { apiKey: API_KEY }).messages.create(goodMessages); // x-api-key
  assert.equal(m.stop_reason, 'max_tokens');
});

test('errors: requests beyond --queue get 429 (RateLimitError, both API shapes)', opts, async () => {
  const oa = openai('GUARDED', { apiKey: API_KEY });
  const an = anthropic('GUARDED', { apiKey: API_KEY });
  // One runs, two wait (--queue 2): of eight at once, some must be turned away.
  const outcome = (p) => p.then(() => 200, (e) => {
    if (e.status === 429) assert.ok(e instanceof OpenAI.RateLimitError || e instanceof Anthropic.RateLimitError, e.constructor.name);
    if (e.status === 429 && e instanceof Anthropic.RateLimitError) assert.equal(e.error?.error?.type, 'rate_limit_error');
    return e.status ?? e.message;
  });
  const all = await Promise.all(Array.from({ length: 8 }, (_, i) => outcome(i % 2
    ? oa.chat.completions.create({ ...good, max_tokens: 40 })
    : an.messages.create({ ...goodMessages, max_tokens: 40 }))));
  assert.ok(all.every((s) => s === 200 || s === 429), JSON.stringify(all));
  assert.ok(all.includes(429), `none refused: ${JSON.stringify(all)}`);
  assert.ok(all.filter((s) => s === 200).length >= 3, `too few served: ${JSON.stringify(all)}`);
});

test('errors: a raw NUL byte in the body gets 400; a seed of -2^63 is accepted', opts, async () => {
  openaiError(await http('TOK', 'POST', '/v1/chat/completions', '{"messages": [{"role": "user", "content": "a\0b"}]}'), 400);
  const r = await client.chat.completions.create({ ...good, seed: -9.2e18 });
  assert.equal(r.choices.length, 1);
});
