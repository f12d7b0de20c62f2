// Tool calls with models/assistant-q4, a tiny trained model that really calls
// the calculator tool of tests/data/chat: through the OpenAI client
// (tools/tool_calls/role "tool") and the Anthropic one (tool_use/tool_result).
import test from 'node:test';
import assert from 'node:assert/strict';
import { openai, anthropic, ms, collectChat, calculatorTools, calculatorToolsAnthropic } from './common.mjs';

const oa = openai('ASSIST');
const an = anthropic('ASSIST');
const MODEL = 'assistant-q4';
const opts = { timeout: ms(60_000) };
const QUESTION = 'What is 5 + 7?';
const oaRequest = {
  model: MODEL,
  messages: [{ role: 'user', content: QUESTION }],
  tools: calculatorTools,
  max_tokens: 80,
  temperature: 0,
  chat_template_kwargs: { enable_thinking: false },
};

let message; // the assistant's message with the call, sent back with the result
test('tools/openai: the model calls the calculator (non-streaming)', opts, async () => {
  const r = await oa.chat.completions.create(oaRequest);
  const c = r.choices[0];
  assert.equal(c.finish_reason, 'tool_calls');
  assert.equal(c.message.tool_calls?.length, 1, JSON.stringify(c.message));
  const call = c.message.tool_calls[0];
  assert.equal(call.type, 'function');
  assert.equal(typeof call.id, 'string');
  assert.ok(call.id.length > 0);
  assert.equal(call.function.name, 'calculator');
  assert.equal(typeof call.function.arguments, 'string', 'arguments are a JSON string');
  assert.deepEqual(JSON.parse(call.function.arguments), { expression: '5 + 7' });
  assert.ok(!c.message.content, 'no content besides the call');
  message = c.message;
});

test('tools/openai: streamed tool call deltas assemble to the same call', opts, async () => {
  const stream = await oa.chat.completions.create({ ...oaRequest, stream: true });
  const { chunks, calls, text } = await collectChat(stream);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].name, 'calculator');
  assert.ok(calls[0].id);
  assert.deepEqual(JSON.parse(calls[0].arguments), { expression: '5 + 7' });
  assert.equal(text, '');
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'tool_calls');
});

test('tools/openai: the model answers with the tool result', opts, async () => {
  assert.ok(message, 'needs the tool call');
  const call = message.tool_calls[0];
  const r = await oa.chat.completions.create({
    ...oaRequest,
    messages: [...oaRequest.messages, message, { role: 'tool', tool_call_id: call.id, content: '12' }],
  });
  const c = r.choices[0];
  assert.equal(c.finish_reason, 'stop');
  assert.ok(c.message.content?.length > 0, 'empty answer');
  assert.ok(!c.message.tool_calls?.length, 'no second call');
  assert.match(c.message.content, /12/);
});

test('tools/openai: tool_choice "none" offers no tools', opts, async () => {
  const r = await oa.chat.completions.create({ ...oaRequest, tool_choice: 'none' });
  assert.ok(!r.choices[0].message.tool_calls?.length, JSON.stringify(r.choices[0].message));
  assert.notEqual(r.choices[0].finish_reason, 'tool_calls');
});

// ---- Anthropic ----------------------------------------------------------------
const anRequest = {
  model: MODEL,
  max_tokens: 80,
  temperature: 0,
  tools: calculatorToolsAnthropic,
  messages: [{ role: 'user', content: QUESTION }],
};

function toolUse(msg) {
  const uses = msg.content.filter((b) => b.type === 'tool_use');
  assert.equal(uses.length, 1, JSON.stringify(msg.content));
  const u = uses[0];
  assert.equal(u.name, 'calculator');
  assert.equal(typeof u.id, 'string');
  assert.ok(u.id.length > 0);
  assert.deepEqual(u.input, { expression: '5 + 7' }, 'input is an object');
  assert.equal(msg.stop_reason, 'tool_use');
  return u;
}

let anMessage;
test('tools/anthropic: messages.create with tools gives a tool_use block', opts, async () => {
  const r = await an.messages.create(anRequest);
  assert.equal(r.type, 'message');
  assert.equal(r.role, 'assistant');
  toolUse(r);
  anMessage = r;
});

test('tools/anthropic: messages.stream(...).finalMessage() assembles the tool_use', opts, async () => {
  const stream = an.messages.stream(anRequest);
  const events = [];
  stream.on('streamEvent', (e) => events.push(e));
  const final = await stream.finalMessage();
  toolUse(final);
  // The input arrives as input_json_delta pieces of a tool_use block.
  assert.ok(events.some((e) => e.type === 'content_block_start' && e.content_block.type === 'tool_use'));
  assert.ok(events.some((e) => e.type === 'content_block_delta' && e.delta.type === 'input_json_delta'));
});

test('tools/anthropic: a tool_result round trip gets the answer', opts, async () => {
  assert.ok(anMessage, 'needs the tool_use');
  const use = anMessage.content.find((b) => b.type === 'tool_use');
  const r = await an.messages.create({
    ...anRequest,
    messages: [
      ...anRequest.messages,
      { role: 'assistant', content: anMessage.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '12' }] },
    ],
  });
  assert.equal(r.stop_reason, 'end_turn');
  const text = r.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
  assert.ok(text.length > 0, JSON.stringify(r.content));
  assert.ok(!r.content.some((b) => b.type === 'tool_use'), 'no second call');
  assert.match(text, /12/);
});

// An answer that ends at its first token (the model's end-of-turn right away) is empty.
test('tools: an answer that ends at once is empty (completions, end of turn first)', opts, async () => {
  const prompt = '<|im_start|>user\nWhat is 5 + 7?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n5 + 7 = 12.';
  const r = await oa.completions.create({ model: MODEL, prompt, max_tokens: 5, temperature: 0 });
  assert.equal(r.choices[0].text, '');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.usage.completion_tokens, 1);
});

// With thinking on, the assistant opens every answer with an empty <think></think>
// block: neither the streamed nor the non-streamed reply carries reasoning then.
test('reasoning: an empty think block sends no reasoning_content, streamed or not', opts, async () => {
  const req = { model: MODEL, messages: [{ role: 'user', content: 'Define the noun tree.' }], max_tokens: 40,
    temperature: 0, chat_template_kwargs: { enable_thinking: true } };
  const r = await oa.chat.completions.create(req);
  assert.equal(r.choices[0].message.reasoning_content, undefined, JSON.stringify(r.choices[0].message));
  assert.ok(r.choices[0].message.content.length > 0);
  assert.ok(!r.choices[0].message.content.includes('<think>'));
  const stream = await oa.chat.completions.create({ ...req, stream: true });
  let content = '';
  for await (const chunk of stream) {
    const d = chunk.choices[0]?.delta ?? {};
    assert.equal(d.reasoning_content, undefined, `a reasoning delta: ${JSON.stringify(d)}`);
    content += d.content ?? '';
  }
  assert.equal(content, r.choices[0].message.content);
});
