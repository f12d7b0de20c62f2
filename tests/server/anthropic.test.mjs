// The Anthropic Messages API through the official `@anthropic-ai/sdk` client,
// on qwen35moe_tok (random weights: mechanics only, at temperature 0).
import test from 'node:test';
import assert from 'node:assert/strict';
import { anthropic, http, ms, pickStop } from './common.mjs';

const client = anthropic('TOK');
const MODEL = 'qwen35moe_tok';
const opts = { timeout: ms(60_000) };
const request = {
  model: MODEL,
  max_tokens: 8,
  temperature: 0,
  system: 'You are a terse assistant.',
  messages: [{ role: 'user', content: 'Hello' }],
};
const textOf = (msg) => msg.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
// Anthropic's input_tokens leaves out the tokens read from the cache: the prompt is the sum.
const promptTokens = (u) => u.input_tokens + (u.cache_read_input_tokens ?? 0) + (u.cache_creation_input_tokens ?? 0);

let whole;
test('anthropic: messages.create with a system prompt has the documented shape', opts, async () => {
  const r = await client.messages.create(request);
  assert.equal(r.type, 'message');
  assert.equal(r.role, 'assistant');
  assert.match(r.id, /^msg_/);
  assert.equal(r.model, MODEL);
  assert.ok(Array.isArray(r.content) && r.content.length >= 1, JSON.stringify(r.content));
  assert.equal(r.content[0].type, 'text');
  assert.ok(textOf(r).length > 0, 'empty text');
  assert.equal(r.stop_reason, 'max_tokens');
  assert.equal(r.stop_sequence ?? null, null);
  assert.equal(r.usage.output_tokens, 8);
  assert.ok(r.usage.input_tokens > 0, 'the last prompt token is always new');
  assert.equal(typeof r.usage.cache_read_input_tokens, 'number');
  whole = r;
});

test('anthropic: the system prompt reaches the model (string and block forms alike)', opts, async () => {
  assert.ok(whole, 'needs the previous test');
  const bare = await client.messages.create({ ...request, system: undefined });
  assert.ok(promptTokens(bare.usage) < promptTokens(whole.usage), 'the system prompt adds tokens');
  const blocks = await client.messages.create({ ...request, system: [{ type: 'text', text: request.system }] });
  assert.equal(promptTokens(blocks.usage), promptTokens(whole.usage));
  assert.equal(textOf(blocks), textOf(whole));
});

test('anthropic: streaming: text deltas concatenate to the non-streamed text', opts, async () => {
  assert.ok(whole, 'needs the non-streaming test');
  const stream = client.messages.stream(request);
  let deltas = '';
  stream.on('text', (t) => { deltas += t; });
  const final = await stream.finalMessage();
  assert.equal(deltas, textOf(whole));
  assert.equal(textOf(final), textOf(whole));
  assert.equal(final.stop_reason, 'max_tokens');
  assert.equal(final.usage.output_tokens, 8);
  assert.equal(promptTokens(final.usage), promptTokens(whole.usage));
});

test('anthropic: raw stream events come in the documented order', opts, async () => {
  const events = [];
  for await (const e of await client.messages.create({ ...request, stream: true })) events.push(e);
  const types = events.map((e) => e.type).filter((t) => t !== 'ping');
  assert.equal(types[0], 'message_start');
  assert.equal(types.at(-1), 'message_stop');
  assert.equal(types.at(-2), 'message_delta');
  const start = events[0].message;
  assert.equal(start.role, 'assistant');
  assert.deepEqual(start.content, []);
  assert.ok(promptTokens(start.usage) > 0);
  // Every block opens, gets deltas with its index, and closes before the next.
  let open = null;
  let next = 0;
  for (const e of events) {
    if (e.type === 'content_block_start') {
      assert.equal(open, null, 'a block opened inside another');
      assert.equal(e.index, next++);
      open = e.index;
    } else if (e.type === 'content_block_delta') {
      assert.equal(e.index, open);
    } else if (e.type === 'content_block_stop') {
      assert.equal(e.index, open);
      open = null;
    }
  }
  assert.equal(open, null, 'a block never closed');
  assert.ok(next >= 1, 'no content block');
  const md = events.find((e) => e.type === 'message_delta');
  assert.equal(md.delta.stop_reason, 'max_tokens');
  assert.equal(md.usage.output_tokens, 8);
});

test('anthropic: stop_sequences end the text before the sequence', opts, async () => {
  // Anthropic's API has no seed: find a prompt whose greedy text has some variety.
  let pick, req;
  for (const content of ['Why is the sky blue?', 'Count to ten', 'Tell me about the sea', 'Hello']) {
    req = { ...request, max_tokens: 16, messages: [{ role: 'user', content }] };
    pick = pickStop(textOf(await client.messages.create(req)));
    if (pick?.before) break;
  }
  assert.ok(pick?.before, 'no greedy answer with a usable stop sequence');
  const r = await client.messages.create({ ...req, stop_sequences: [pick.stop] });
  assert.equal(textOf(r), pick.before, `stop sequence ${JSON.stringify(pick.stop)}`);
  assert.equal(r.stop_reason, 'stop_sequence');
  assert.equal(r.stop_sequence, pick.stop);
});

test('anthropic: multi-turn messages with text blocks are accepted', opts, async () => {
  const r = await client.messages.create({
    ...request,
    messages: [
      { role: 'user', content: [{ type: 'text', text: 'Hello' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'Hi.' }] },
      { role: 'user', content: 'How are you?' },
    ],
  });
  assert.equal(r.stop_reason, 'max_tokens');
  assert.ok(promptTokens(r.usage) > promptTokens(whole.usage));
});

test('anthropic: a last assistant message is a prefill: the answer continues it', opts, async () => {
  assert.ok(whole, 'needs the first test');
  const prefill = textOf(whole).slice(0, 3);
  const r = await client.messages.create({
    ...request,
    messages: [...request.messages, { role: 'assistant', content: prefill }],
  });
  // The same prompt written out in the fixture's ChatML (Qwen3 template, thinking unset), through
  // /v1/completions: the same tokens and the same greedy continuation, so no new turn was opened.
  const raw = `<|im_start|>system\n${request.system}<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n` +
    `<|im_start|>assistant\n${prefill}`;
  const c = await http('TOK', 'POST', '/v1/completions', { prompt: raw, max_tokens: 8, temperature: 0 });
  assert.equal(c.status, 200, JSON.stringify(c.json));
  assert.equal(promptTokens(r.usage), c.json.usage.prompt_tokens);
  assert.equal(textOf(r), c.json.choices[0].text);
});

test('anthropic: tool_choice naming a tool when none are given is a 400', opts, async () => {
  await assert.rejects(
    client.messages.create({ ...request, tool_choice: { type: 'tool', name: 'nope' } }),
    (e) => e.status === 400 && /no tools were given/.test(e.message));
});

test('anthropic: models.list and models.retrieve give the served model', opts, async () => {
  const page = await client.models.list();
  assert.deepEqual(page.data.map((m) => [m.id, m.type]), [[MODEL, 'model']]);
  assert.ok(!Number.isNaN(Date.parse(page.data[0].created_at)), page.data[0].created_at);
  const one = await client.models.retrieve(MODEL);
  assert.equal(one.display_name, MODEL);
});
