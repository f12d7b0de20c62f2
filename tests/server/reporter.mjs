// A node:test reporter printing one line per test, as the shell tests do:
// "ok - NAME" or "not ok - NAME" followed by the failure, indented.
//   node --test --test-reporter=./reporter.mjs FILES
export default async function* reporter(source) {
  for await (const { type, data } of source) {
    if (type !== 'test:pass' && type !== 'test:fail') continue;
    if (data.details?.type === 'suite') continue; // only the tests themselves
    if (type === 'test:pass') {
      yield `ok - ${data.name}${data.skip ? ' # SKIP' : ''}\n`;
      continue;
    }
    const err = data.details?.error;
    const cause = err?.cause ?? err;
    let why = cause?.stack && !(cause?.code === 'ERR_ASSERTION') ? cause.stack : cause?.message ?? String(cause);
    if (cause?.status) why = `HTTP ${cause.status}: ${why}`;
    yield `not ok - ${data.name}\n${String(why).trimEnd().replace(/^/gm, '    ')}\n`;
  }
}
