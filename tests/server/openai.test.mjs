// The OpenAI API through the official `openai` client, on qwen35moe_tok
// (random weights: the text is gibberish, so only mechanics are checked, at
// temperature 0 or with a fixed seed).
import test from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { openai, ms, collectChat, pickStop } from './common.mjs';

const client = openai('TOK');
const MODEL = 'qwen35moe_tok';
const opts = { timeout: ms(60_000) };
const chat = (content, extra = {}) => ({ model: MODEL, messages: [{ role: 'user', content }], ...extra });

test('openai: models.list and models.retrieve give the served model', opts, async () => {
  const list = await client.models.list();
  assert.deepEqual(list.data.map((m) => m.id), [MODEL]);
  assert.equal(list.data[0].object, 'model');
  const one = await client.models.retrieve(MODEL);
  assert.equal(one.id, MODEL);
  await assert.rejects(client.models.retrieve('no-such-model'), (e) => e instanceof OpenAI.NotFoundError);
});

let greedy; // the non-streamed answer, compared with the stream below
test('openai: chat.completions.create (non-streaming) has the documented shape', opts, async () => {
  const r = await client.chat.completions.create(chat('Hello', { max_tokens: 8, temperature: 0 }));
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.model, MODEL);
  assert.equal(typeof r.created, 'number');
  assert.equal(r.choices.length, 1);
  const c = r.choices[0];
  assert.equal(c.index, 0);
  assert.equal(c.message.role, 'assistant');
  assert.equal(typeof c.message.content, 'string');
  assert.ok(c.message.content.length > 0, 'empty content');
  assert.equal(c.finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 8);
  assert.ok(r.usage.prompt_tokens > 0);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  assert.equal(typeof r.usage.prompt_tokens_details?.cached_tokens, 'number');
  greedy = r;
});

test('openai: streaming chat: chunk shape, finish_reason length, usage, same text as non-streaming', opts, async () => {
  assert.ok(greedy, 'needs the non-streaming test');
  const stream = await client.chat.completions.create(
    chat('Hello', { max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true } }));
  const { chunks, text } = await collectChat(stream);
  assert.ok(chunks.length >= 3, `only ${chunks.length} chunks`);
  for (const c of chunks) {
    assert.equal(c.object, 'chat.completion.chunk');
    assert.equal(c.id, chunks[0].id, 'one id for the whole stream');
    assert.equal(c.model, MODEL);
  }
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const withChoice = chunks.filter((c) => c.choices.length);
  const finishes = withChoice.filter((c) => c.choices[0].finish_reason);
  assert.equal(finishes.length, 1, 'one chunk carries the finish_reason');
  assert.equal(finishes[0], withChoice.at(-1), 'and it is the last with a choice');
  assert.equal(finishes[0].choices[0].finish_reason, 'length');
  const last = chunks.at(-1); // stream_options.include_usage: a last chunk with usage, no choices
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.completion_tokens, 8);
  assert.equal(last.usage.prompt_tokens, greedy.usage.prompt_tokens);
  assert.equal(text, greedy.choices[0].message.content);
});

test('openai: without stream_options no chunk carries usage', opts, async () => {
  const stream = await client.chat.completions.create(chat('Hello', { max_tokens: 3, temperature: 0, stream: true }));
  const { chunks } = await collectChat(stream);
  assert.ok(chunks.every((c) => !c.usage), 'usage sent unasked');
});

test('openai: greedy decoding repeats itself', opts, async () => {
  const req = chat('Tell me about the sea', { max_tokens: 12, temperature: 0 });
  const a = await client.chat.completions.create(req);
  const b = await client.chat.completions.create(req);
  assert.equal(b.choices[0].message.content, a.choices[0].message.content);
  const c = await client.chat.completions.create({ ...req, seed: 99 }); // greedy ignores the seed
  assert.equal(c.choices[0].message.content, a.choices[0].message.content);
});

test('openai: the same seed repeats a sampled answer at temperature 1, another seed does not', opts, async () => {
  const req = chat('Hello', { max_tokens: 16, temperature: 1, seed: 1234 });
  const a = (await client.chat.completions.create(req)).choices[0].message.content;
  const b = (await client.chat.completions.create(req)).choices[0].message.content;
  const c = (await client.chat.completions.create({ ...req, seed: 1235 })).choices[0].message.content;
  assert.equal(b, a);
  assert.notEqual(c, a);
});

// Stop strings: a seeded answer, then the same request with a stop string taken
// from its middle: the answer must end just before it.
const sampled = chat('Hello', { max_tokens: 16, temperature: 1, seed: 7 });
let stopCase;
test('openai: a stop string cuts the answer before it, finish_reason stop', opts, async () => {
  const full = (await client.chat.completions.create(sampled)).choices[0].message.content;
  stopCase = pickStop(full);
  assert.ok(stopCase, `no usable stop string in ${JSON.stringify(full)}`);
  const r = await client.chat.completions.create({ ...sampled, stop: [stopCase.stop] });
  assert.equal(r.choices[0].message.content, stopCase.before, `stop ${JSON.stringify(stopCase.stop)}`);
  assert.equal(r.choices[0].finish_reason, 'stop');
});

test('openai: a stop string in a stream: no part of it is sent', opts, async () => {
  assert.ok(stopCase, 'needs the previous test');
  const stream = await client.chat.completions.create({ ...sampled, stop: stopCase.stop, stream: true });
  const { chunks, text } = await collectChat(stream);
  assert.equal(text, stopCase.before);
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');
});

let completion;
test('openai: completions.create (non-streaming)', opts, async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.choices.length, 1);
  assert.equal(typeof r.choices[0].text, 'string');
  assert.ok(r.choices[0].text.length > 0);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 8);
  assert.equal(r.usage.prompt_tokens, 4); // "Once upon a time": no template, no special tokens
  completion = r;
});

test('openai: completions streaming gives the same text', opts, async () => {
  assert.ok(completion, 'needs the previous test');
  const stream = await client.completions.create({
    model: MODEL, prompt: 'Once upon a time', max_tokens: 8, temperature: 0, stream: true });
  let text = '';
  let finish = null;
  for await (const c of stream) {
    assert.equal(c.object, 'text_completion');
    text += c.choices[0]?.text ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(text, completion.choices[0].text);
  assert.equal(finish, 'length');
});

test('openai: completions default to 16 tokens; token-id prompts are accepted', opts, async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', temperature: 0 });
  assert.equal(r.usage.completion_tokens, 16);
  const ids = await client.completions.create({ model: MODEL, prompt: [12522, 5193, 264, 882], max_tokens: 2, temperature: 0 });
  assert.equal(ids.usage.prompt_tokens, 4);
});

test('openai: answers are valid UTF-8 even when sampling over the whole vocabulary', opts, async () => {
  // Byte-level tokens can end inside a character: the server must never send half of one.
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  for (const seed of [1, 2, 3]) {
    for (const stream of [false, true]) {
      const r = await fetch(`${client.baseURL}/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify(chat('Hi', { max_tokens: 32, temperature: 2, top_k: 0, top_p: 1, seed, stream })),
      });
      assert.equal(r.status, 200);
      const bytes = new Uint8Array(await r.arrayBuffer());
      assert.doesNotThrow(() => utf8.decode(bytes), `seed ${seed}, stream ${stream}: not UTF-8`);
    }
  }
});
