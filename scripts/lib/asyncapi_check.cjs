// Parses an AsyncAPI document with @asyncapi/parser and prints every diagnostic; exits 1 on any
// error or warning. Run through scripts/asyncapi-check.sh, which installs the parser.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { createRequire } = require('node:module');

const prefix = process.env.ASYNCAPI_PARSER_PREFIX;
const load = createRequire(path.join(prefix, 'node_modules', 'x.js'));
const { Parser, DiagnosticSeverity } = load('@asyncapi/parser');

async function main(file) {
  const text = fs.readFileSync(file === '-' ? 0 : file, 'utf8');
  const { document, diagnostics } = await new Parser().parse(text);
  const names = { 0: 'error', 1: 'warning', 2: 'information', 3: 'hint' };
  let failed = document === undefined;
  for (const d of diagnostics) {
    const where = d.path && d.path.length ? d.path.join('.') : '(document)';
    console.log(`${names[d.severity] || d.severity}: ${where}: ${d.message} [${d.code}]`);
    if (d.severity === DiagnosticSeverity.Error || d.severity === DiagnosticSeverity.Warning) {
      failed = true;
    }
  }
  if (failed) {
    console.log('asyncapi-check: the document is not valid AsyncAPI (see above)');
    process.exit(1);
  }
  const channels = document.channels().length;
  const operations = document.operations().length;
  const messages = document.components().messages().length;
  console.log(
    `asyncapi-check: valid AsyncAPI ${document.version()}: ${channels} channels, ` +
      `${operations} operations, ${messages} messages`,
  );
}

main(process.argv[2]).catch((e) => {
  console.error(`asyncapi-check: ${e.stack || e}`);
  process.exit(2);
});
