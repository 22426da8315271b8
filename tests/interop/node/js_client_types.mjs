// Checks clients/js/wsduplex.d.ts against clients/js/wsduplex.js without a TypeScript
// compiler: the runtime names the declarations export (classes, functions, constants) are
// exactly the module's exports, and every method and property declared on Hub and
// Subscription exists on them. Also the package's entry points name files that exist. Run
// by crates/wsduplex-cli/tests/js_client.rs; exits 1 with the differences on stderr.

import { readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'clients', 'js');
const problems = [];
const dts = readFileSync(join(dir, 'wsduplex.d.ts'), 'utf8');
const module = await import(join(dir, 'wsduplex.js'));

const declared = [...dts.matchAll(/^export (?:declare )?(?:class|function|const|let) (\w+)/gm)].map((m) => m[1]);
const exported = Object.keys(module);
for (const name of declared) if (!exported.includes(name)) problems.push(`declared but not exported: ${name}`);
for (const name of exported) if (!declared.includes(name)) problems.push(`exported but not declared: ${name}`);

/** The members declared in `export class NAME { ... }`: methods and properties. */
function members(name) {
  const start = dts.indexOf(`export class ${name} {`);
  const body = dts.slice(start, dts.indexOf('\n}', start));
  const found = [...body.matchAll(/^ {2}(?:readonly )?(\w+)(?:<[^>]*>)?[?(:]/gm)].map((m) => m[1]);
  return found.filter((m) => m !== 'constructor');
}
const hub = new module.Hub('http://127.0.0.1:9/', { lifecycle: false });
const sub = new module.Subscription(hub, 'room');
for (const [name, instance] of [['Hub', hub], ['Subscription', sub]]) {
  const list = members(name);
  if (list.length < 5) problems.push(`${name}: only ${list.length} members found in the declarations`);
  for (const m of list) if (!(m in instance)) problems.push(`${name}.${m} is declared but does not exist`);
}
hub.close();

const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
for (const file of [pkg.main, pkg.types, pkg.exports['.'].types, pkg.exports['.'].default, ...pkg.files]) {
  if (!existsSync(join(dir, file))) problems.push(`package.json names ${file}, which does not exist`);
}
if (pkg.type !== 'module') problems.push('package.json: "type" is not "module"');

if (problems.length) {
  console.error(`js_client_types.mjs: ${problems.join('\n  ')}`);
  process.exit(1);
}
console.log(`ok: ${declared.join(', ')} declared and exported; Hub and Subscription members present`);
