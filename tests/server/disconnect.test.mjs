// A client that leaves stops its generation: /stats counts it in
// jobs_cancelled, and the next request is served at once instead of waiting
// for 2000 tokens nobody reads.
import test from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { openai, base, http, stats, waitFor, ms } from './common.mjs';

const opts = { timeout: ms(120_000) };
const client = openai('TOK');
const MODEL = 'qwen35moe_tok';
const long = (extra) => ({ model: MODEL, messages: [{ role: 'user', content: 'Write forever' }], max_tokens: 2000, ...extra });
const quick = { model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, temperature: 0 };

/** Waits for an aborted request to settle, however the SDK reports the abort (a throw, or a stream that just ends). */
async function settle(pending) {
  try {
    const r = await pending;
    if (r?.[Symbol.asyncIterator]) for await (const _ of r); // eslint-disable-line no-unused-vars
  } catch { /* the abort */ }
}

/** The cancellation shows in /stats within a few seconds and nothing is left running. */
async function expectCancelled(before) {
  const s = await waitFor(async () => {
    const s = await stats('TOK');
    return s.jobs_cancelled > before.jobs_cancelled && s.running === 0 && s.queued === 0 && s;
  }, ms(5000));
  assert.ok(s, `jobs_cancelled still ${(await stats('TOK')).jobs_cancelled} (was ${before.jobs_cancelled})`);
}

/** /stats once nothing runs or waits (the previous test's last job may still be winding down). */
async function idle() {
  const s = await waitFor(async () => {
    const s = await stats('TOK');
    return s.running === 0 && s.queued === 0 && s;
  }, ms(10_000), 20);
  assert.ok(s, 'the server is still busy');
  return s;
}

/** The server answers a small request promptly. */
async function expectPrompt() {
  const t0 = Date.now();
  const r = await client.chat.completions.create(quick);
  const took = Date.now() - t0;
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.ok(took < ms(5000), `the next request took ${took} ms`);
}

test('disconnect: aborting a stream after its first chunk cancels the job', opts, async () => {
  const before = await idle();
  const ac = new AbortController();
  const stream = await client.chat.completions.create(long({ stream: true }), { signal: ac.signal });
  let chunks = 0;
  await settle((async () => {
    for await (const c of stream) {
      if (c.choices[0]?.delta?.content && ++chunks === 1) ac.abort();
    }
  })());
  assert.ok(chunks >= 1);
  await expectCancelled(before);
  await expectPrompt();
});

test('disconnect: aborting a non-streaming request cancels the job', opts, async () => {
  const before = await idle();
  const ac = new AbortController();
  const pending = client.chat.completions.create(long(), { signal: ac.signal });
  // Abort once the job is generating.
  assert.ok(await waitFor(async () => (await stats('TOK')).running > 0, ms(5000), 20), 'the job never started');
  ac.abort();
  await assert.rejects(pending, (e) => e instanceof OpenAI.APIUserAbortError || e.name === 'AbortError');
  await expectCancelled(before);
  await expectPrompt();
});

test('disconnect: a queued request whose client left is dropped without running', opts, async () => {
  const before = await idle();
  const first = new AbortController();
  const second = new AbortController();
  // The first runs (its text is arriving), the second waits behind it.
  const stream = await client.chat.completions.create(long({ stream: true }), { signal: first.signal });
  const it = stream[Symbol.asyncIterator]();
  while (!(await it.next()).value?.choices[0]?.delta?.content);
  const waiting = client.chat.completions.create(long(), { signal: second.signal });
  assert.ok(await waitFor(async () => (await stats('TOK')).queued > 0, ms(5000), 20), 'the second job never queued');
  second.abort(); // leaves while queued
  await settle(waiting);
  first.abort();
  await settle(it.next());
  const s = await waitFor(async () => {
    const s = await stats('TOK');
    return s.running === 0 && s.queued === 0 && s.jobs_cancelled - before.jobs_cancelled >= 2 && s;
  }, ms(5000));
  const after = await stats('TOK');
  assert.ok(s, `two jobs cancelled (before ${JSON.stringify(before)}, after ${JSON.stringify(after)})`);
  assert.equal(s.jobs_done, before.jobs_done, 'neither job ran to its end');
  await expectPrompt();
});

test('disconnect: an Anthropic stream aborted mid-answer cancels the job too', opts, async () => {
  const before = await idle();
  const ac = new AbortController();
  const r = await fetch(`${base('TOK')}/v1/messages`, {
    method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, max_tokens: 2000, stream: true, messages: [{ role: 'user', content: 'Write forever' }] }),
  });
  assert.equal(r.status, 200);
  const reader = r.body.getReader();
  let got = '';
  while (!got.includes('content_block_delta')) {
    const { value, done } = await reader.read();
    assert.ok(!done, `the stream ended early: ${got}`);
    got += Buffer.from(value).toString();
  }
  ac.abort();
  await expectCancelled(before);
  assert.equal((await http('TOK', 'GET', '/health')).status, 200);
});
