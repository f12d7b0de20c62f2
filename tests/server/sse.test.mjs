// The raw server-sent events, as `curl -sN` receives them: the exact framing
// that clients other than the official SDKs parse.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { base, ms } from './common.mjs';

const opts = { timeout: ms(60_000) };

/** curl -sN: { status, contentType, body }. */
async function curl(path, body) {
  const { stdout } = await promisify(execFile)('curl', [
    '-sN', '--max-time', String(ms(60)), '-H', 'content-type: application/json', '-d', JSON.stringify(body),
    '-w', '\n%{http_code} %{content_type}', base('TOK') + path,
  ], { maxBuffer: 16 << 20 });
  const cut = stdout.lastIndexOf('\n');
  const [status, contentType] = stdout.slice(cut + 1).split(' ');
  return { status: Number(status), contentType, body: stdout.slice(0, cut) };
}

/** Splits an OpenAI stream into its data payloads, checking every event is exactly "data: ...\n\n". */
function openaiEvents(body) {
  assert.ok(body.endsWith('data: [DONE]\n\n'), `the stream does not end with [DONE]: ${JSON.stringify(body.slice(-80))}`);
  const events = body.slice(0, -2).split('\n\n').filter((e) => !e.startsWith(':')); // no empty line inside an event; comments aside
  for (const e of events) assert.match(e, /^data: [^\n]+$/, `not one data line: ${JSON.stringify(e)}`);
  assert.equal(events.at(-1), 'data: [DONE]');
  assert.equal(events.filter((e) => e === 'data: [DONE]').length, 1);
  return events.slice(0, -1).map((e) => JSON.parse(e.slice(6)));
}

test('sse: chat stream framing: data: {json}\\n\\n events, role first, [DONE] last', opts, async () => {
  const r = await curl('/v1/chat/completions', {
    messages: [{ role: 'user', content: 'Hello' }], max_tokens: 5, temperature: 0, stream: true,
    stream_options: { include_usage: true } });
  assert.equal(r.status, 200);
  assert.match(r.contentType, /^text\/event-stream/);
  const chunks = openaiEvents(r.body);
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  for (const c of chunks) assert.equal(c.object, 'chat.completion.chunk');
  const finish = chunks.filter((c) => c.choices[0]?.finish_reason);
  assert.equal(finish.length, 1);
  assert.equal(finish[0].choices[0].finish_reason, 'length');
  assert.equal(chunks.at(-1).usage?.completion_tokens, 5);
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
  assert.ok(text.length > 0);
});

test('sse: completions stream framing', opts, async () => {
  const r = await curl('/v1/completions', { prompt: 'Once upon a time', max_tokens: 4, temperature: 0, stream: true });
  assert.equal(r.status, 200);
  const chunks = openaiEvents(r.body);
  for (const c of chunks) assert.equal(c.object, 'text_completion');
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'length');
});

test('sse: a bad streaming request is a plain JSON 400, not a stream', opts, async () => {
  const r = await curl('/v1/chat/completions', { messages: 'Hello', stream: true });
  assert.equal(r.status, 400);
  assert.match(r.contentType, /^application\/json/);
  assert.equal(typeof JSON.parse(r.body).error.message, 'string');
});

test('sse: Anthropic stream framing: event: TYPE / data: {"type": TYPE} from message_start to message_stop', opts, async () => {
  const r = await curl('/v1/messages', {
    model: 'qwen35moe_tok', max_tokens: 5, temperature: 0, stream: true, messages: [{ role: 'user', content: 'Hello' }] });
  assert.equal(r.status, 200);
  assert.match(r.contentType, /^text\/event-stream/);
  assert.ok(r.body.endsWith('\n\n'), 'the last event is not terminated');
  const events = r.body.slice(0, -2).split('\n\n').filter((e) => !e.startsWith(':')).map((e) => {
    const m = /^event: ([a-z_]+)\ndata: ([^\n]+)$/.exec(e);
    assert.ok(m, `not an "event:" and a "data:" line: ${JSON.stringify(e)}`);
    const data = JSON.parse(m[2]);
    assert.equal(data.type, m[1], 'the event name is the data type');
    return data;
  });
  const types = events.map((e) => e.type).filter((t) => t !== 'ping');
  assert.equal(types[0], 'message_start');
  assert.equal(types[1], 'content_block_start');
  assert.ok(types.includes('content_block_delta'));
  assert.deepEqual(types.slice(-3), ['content_block_stop', 'message_delta', 'message_stop']);
  assert.equal(events.find((e) => e.type === 'message_delta').delta.stop_reason, 'max_tokens');
  const text = events.filter((e) => e.type === 'content_block_delta').map((e) => e.delta.text).join('');
  assert.ok(text.length > 0);
});
