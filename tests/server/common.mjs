// What the server tests share: where the servers are, SDK clients, raw HTTP
// helpers. tests/test_server.sh starts the servers and passes their ports in
// the environment:
//   FM_PORT_TOK      qwen35moe_tok (real Qwen3 tokenizer, random weights)
//   FM_PORT_ASSIST   models/assistant-q4 (trained: really calls the calculator)
//   FM_PORT_GUARDED  qwen35moe_tok with --api-key secret --max-body 64K --queue 2
//   FM_PORT_FRESH    qwen35moe_tok that has served nothing (prefix-reuse reference)
//   FM_SLOW          timeout multiplier (8 for the ASan build)
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';

export const SLOW = Number(process.env.FM_SLOW || 1);
/** A timeout in ms, scaled for slow (sanitizer) builds. */
export const ms = (n) => n * SLOW;

export const API_KEY = 'secret'; // the guarded server's key

export function port(name) {
  const p = process.env[`FM_PORT_${name}`];
  if (!p) throw new Error(`FM_PORT_${name} is not set (run tests/test_server.sh)`);
  return Number(p);
}
export const base = (name) => `http://127.0.0.1:${port(name)}`;

/** An OpenAI client for one of the servers: no retries, so every failure shows. */
export function openai(name = 'TOK', opts = {}) {
  return new OpenAI({ baseURL: `${base(name)}/v1`, apiKey: 'none', maxRetries: 0, timeout: ms(60_000), ...opts });
}

/** An Anthropic client for one of the servers (it appends /v1/messages itself). */
export function anthropic(name = 'TOK', opts = {}) {
  return new Anthropic({ baseURL: base(name), apiKey: 'none', maxRetries: 0, timeout: ms(60_000), ...opts });
}

/** A raw request: { status, headers, text, json } (json null when the body is not JSON). */
export async function http(name, method, path, body, headers = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers['content-type'] ??= 'application/json';
  }
  const r = await fetch(base(name) + path, { ...init, signal: AbortSignal.timeout(ms(60_000)) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, text, json };
}

export async function stats(name = 'TOK') {
  const r = await http(name, 'GET', '/stats');
  if (r.status !== 200 || !r.json) throw new Error(`/stats answered ${r.status}: ${r.text}`);
  return r.json;
}

/** Polls fn() until it returns a truthy value or the time is up; returns the last value. */
export async function waitFor(fn, timeoutMs, stepMs = 100) {
  const until = Date.now() + timeoutMs;
  let v;
  while (!(v = await fn()) && Date.now() < until) await new Promise((r) => setTimeout(r, stepMs));
  return v;
}

/** The calculator tool of tests/data/chat (OpenAI shape) and the same in Anthropic's shape. */
export const calculatorTools = JSON.parse(
  readFileSync(new URL('../data/chat/calculator_tool.json', import.meta.url), 'utf8'));
export const calculatorToolsAnthropic = calculatorTools.map(({ function: f }) => ({
  name: f.name, description: f.description, input_schema: f.parameters,
}));

/** Accumulates an OpenAI chat stream: the chunks, the text, tool calls assembled from their deltas. */
export async function collectChat(stream) {
  const chunks = [];
  let text = '';
  const calls = [];
  for await (const c of stream) {
    chunks.push(c);
    const d = c.choices[0]?.delta;
    if (d?.content) text += d.content;
    for (const tc of d?.tool_calls ?? []) {
      const call = (calls[tc.index] ??= { id: '', name: '', arguments: '' });
      if (tc.id) call.id = tc.id;
      if (tc.function?.name) call.name += tc.function.name;
      if (tc.function?.arguments) call.arguments += tc.function.arguments;
    }
  }
  return { chunks, text, calls };
}

/**
 * A stop string for `text`: the 3-character window (in code points) that
 * starts latest in the text while appearing nowhere before; returns
 * { stop, before } where `before` is the text the answer must end with.
 */
export function pickStop(text) {
  const cp = Array.from(text);
  for (let k = cp.length - 3; k > 0; k--) {
    const stop = cp.slice(k, k + 3).join('');
    const before = cp.slice(0, k).join('');
    if (text.indexOf(stop) === before.length) return { stop, before };
  }
  return null;
}
