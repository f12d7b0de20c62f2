// Prefix reuse: the next turn of a conversation prefills only its new tokens
// (usage.prompt_tokens_details.cached_tokens counts the reused ones), and the
// reuse does not change the answer: a server that has never seen the
// conversation (FRESH) answers the same at temperature 0.
import test from 'node:test';
import assert from 'node:assert/strict';
import { openai, anthropic, stats, ms } from './common.mjs';

const opts = { timeout: ms(90_000) };
const tok = openai('TOK');
const MODEL = 'qwen35moe_tok';
const MARKERS = 20; // template tokens around a new user turn: <|im_end|>, <|im_start|>user, ...

const A = 'Here is some context for a longer conversation. ' +
  'The lighthouse keeper counted the ships that passed each night, wrote their names in a blue notebook, ' +
  'and on Sundays walked to the village to buy bread, lamp oil and the newspaper. ' +
  'Summarise his week in one sentence.';
const B = 'And what did he do on Mondays?';
const C = 'Thank you.';

/** Tokens of a text, without any template: a completion's prompt_tokens. */
async function countTokens(text) {
  return (await tok.completions.create({ model: MODEL, prompt: text, max_tokens: 1, temperature: 0 })).usage.prompt_tokens;
}
const ask = (client, messages) => client.chat.completions.create({ model: MODEL, messages, max_tokens: 8, temperature: 0 });
const answerOf = (r) => ({ role: 'assistant', content: r.choices[0].message.content });

let turn2, turn2Messages;
test('prefix: the second turn reuses the first from the prompt cache', opts, async () => {
  const nB = await countTokens(B);
  const before = await stats('TOK');
  const turn1 = await ask(tok, [{ role: 'user', content: A }]);
  assert.ok(turn1.usage.prompt_tokens > 50);
  turn2Messages = [{ role: 'user', content: A }, answerOf(turn1), { role: 'user', content: B }];
  turn2 = await ask(tok, turn2Messages);
  const u = turn2.usage;
  const cached = u.prompt_tokens_details?.cached_tokens;
  assert.ok(cached > 0, `no reuse: ${JSON.stringify(u)}`);
  assert.ok(cached >= turn1.usage.prompt_tokens, `only ${cached} of turn 1's ${turn1.usage.prompt_tokens} prompt tokens reused`);
  const fresh = u.prompt_tokens - cached;
  assert.ok(fresh < nB + MARKERS, `${fresh} tokens prefilled; the new user message has ${nB}`);
  const after = await stats('TOK');
  assert.ok(after.cached_tokens - before.cached_tokens >= cached, '/stats counts the cached tokens');
});

test('prefix: the reused turn answers exactly as a server without the cache does', opts, async () => {
  assert.ok(turn2, 'needs the previous test');
  const ref = await ask(openai('FRESH'), turn2Messages);
  assert.equal(ref.usage.prompt_tokens_details?.cached_tokens, 0, 'FRESH is meant to have served nothing yet');
  assert.equal(ref.usage.prompt_tokens, turn2.usage.prompt_tokens);
  assert.equal(turn2.choices[0].message.content, ref.choices[0].message.content);
});

test('prefix: a third turn reuses the second', opts, async () => {
  assert.ok(turn2, 'needs the first test');
  const nC = await countTokens(C);
  // countTokens replaced the live session: the reuse now comes from the snapshots.
  const turn3 = await ask(tok, [...turn2Messages, answerOf(turn2), { role: 'user', content: C }]);
  const u = turn3.usage;
  // At least turn 2's conversation: its snapshot is taken before the generation prompt
  // ("<|im_start|>assistant\n", 3 tokens), where turn 3 may render the answer differently.
  assert.ok(u.prompt_tokens_details.cached_tokens >= turn2.usage.prompt_tokens - 3, JSON.stringify(u));
  assert.ok(u.prompt_tokens - u.prompt_tokens_details.cached_tokens < nC + MARKERS, JSON.stringify(u));
});

test('prefix: Anthropic usage reports the reuse as cache_read_input_tokens', opts, async () => {
  const an = anthropic('TOK');
  const nB = await countTokens(B);
  const system = 'You keep a lighthouse.';
  const req = (messages) => an.messages.create({ model: MODEL, system, max_tokens: 8, temperature: 0, messages });
  const turn1 = await req([{ role: 'user', content: A }]);
  const turn2 = await req([{ role: 'user', content: A }, { role: 'assistant', content: turn1.content },
    { role: 'user', content: B }]);
  const u = turn2.usage;
  assert.ok(u.cache_read_input_tokens >= turn1.usage.input_tokens + turn1.usage.cache_read_input_tokens, JSON.stringify(u));
  assert.ok(u.input_tokens < nB + MARKERS, `${u.input_tokens} new input tokens; the new user message has ${nB}`);
});
