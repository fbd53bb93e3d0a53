// The API contract as the tests hold the server to it: openapi/openapi.json
// (REST) and openapi/ws-protocol.schema.json (WebSocket frames), checked
// with Ajv (JSON Schema 2020-12, the dialect of OpenAPI 3.1).
//
//   checkResponse(method, path, status, contentType, bodyText)  // throws on a mismatch
//   checkWsFrame(obj)                                           // throws on a mismatch
//
// srv.fetch (lib/server.mjs) calls checkResponse on every answer.
//
// A response is checked when its path matches a documented path template:
// the status must be documented (or fall to "default", the Error body), its
// media type must be one the operation lists, and a JSON body must match the
// schema. Paths the document does not know (probes of unknown URLs) are not
// checked here: tests/integration/openapi.test.mjs holds every registered
// route to being documented. OSB_CONTRACT=0 turns the checks off (debugging).
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const OPENAPI_PATH = join(root, 'openapi', 'openapi.json');
export const WS_SCHEMA_PATH = join(root, 'openapi', 'ws-protocol.schema.json');
export const openapi = JSON.parse(readFileSync(OPENAPI_PATH, 'utf8'));
export const wsSchema = JSON.parse(readFileSync(WS_SCHEMA_PATH, 'utf8'));
const enabled = process.env.OSB_CONTRACT !== '0';

const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
addFormats(ajv);
const DOC_ID = 'osb-openapi';
ajv.addSchema({ ...openapi, $id: DOC_ID });
ajv.addSchema(wsSchema);
const wsServer = ajv.compile({ $ref: `${wsSchema.$id}#/$defs/server` });

const esc = (s) => s.replace(/~/g, '~0').replace(/\//g, '~1');
const templates = Object.keys(openapi.paths).map((t) => ({
  t, re: new RegExp('^' + t.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{[^}]+\\?\}/g, '[^/]+') + '$'),
  literal: t.split('/').filter((s) => !s.startsWith('{')).length,
}));

// The documented template for a concrete path: literal segments win, as in the router.
export function matchPath(path) {
  const p = path.split('?')[0];
  const hits = templates.filter((x) => x.re.test(p)).sort((a, b) => b.literal - a.literal);
  return hits.length ? hits[0].t : null;
}

const validators = new Map();
function validatorFor(pointer) {
  if (!validators.has(pointer)) validators.set(pointer, ajv.compile({ $ref: `${DOC_ID}#${pointer}` }));
  return validators.get(pointer);
}

function resolveResponse(r) {
  if (r && r.$ref) return r.$ref.replace(/^#\//, '').split('/').reduce((o, k) => o[k], openapi);
  return r;
}

export class ContractError extends Error {}

export function checkResponse(method, path, status, contentType, text) {
  if (!enabled) return;
  const t = matchPath(path);
  if (!t) return;
  const m = method.toLowerCase() === 'head' ? 'get' : method.toLowerCase();
  if (m === 'options') return;   // CORS preflights: answered by the server for every path (docs/http.md)
  const op = openapi.paths[t][m];
  const where = `${method} ${path} → ${status} (${t})`;
  if (!op) {
    if (status === 405 || status === 404 || status >= 500) return;   // the server's own answer to an undocumented method
    throw new ContractError(`contract: ${where}: method not documented`);
  }
  if (method.toUpperCase() === 'HEAD' || status === 101) return;
  const key = op.responses[String(status)] ? String(status) : op.responses[`${String(status)[0]}XX`] ? `${String(status)[0]}XX` : 'default';
  if (!op.responses[key]) throw new ContractError(`contract: ${where}: status not documented`);
  if (key === 'default' && status < 400) throw new ContractError(`contract: ${where}: success status not documented`);
  const resp = resolveResponse(op.responses[key]);
  const media = (contentType || '').split(';')[0].trim().toLowerCase();
  if (!resp.content) {
    if (text && text.length) throw new ContractError(`contract: ${where}: documented without a body, got ${text.length} bytes`);
    return;
  }
  if (!media && !text) throw new ContractError(`contract: ${where}: no body; documented ${Object.keys(resp.content)}`);
  if (!resp.content[media]) throw new ContractError(`contract: ${where}: media type ${media} not documented (${Object.keys(resp.content)})`);
  if (!/json/.test(media)) return;
  let body;
  try { body = JSON.parse(text); } catch { throw new ContractError(`contract: ${where}: body is not JSON: ${text.slice(0, 200)}`); }
  const pointer = op.responses[key].$ref
    ? op.responses[key].$ref.slice(1) + `/content/${esc(media)}/schema`
    : `/paths/${esc(t)}/${m}/responses/${key}/content/${esc(media)}/schema`;
  const v = validatorFor(pointer);
  if (!v(body)) throw new ContractError(`contract: ${where}: ${ajv.errorsText(v.errors)}\nbody: ${text.slice(0, 800)}`);
}

export function checkWsFrame(obj) {
  if (!enabled) return;
  if (!wsServer(obj)) {
    // oneOf errors are noisy: name the branch of the frame's own type.
    const branch = wsSchema.$defs[obj && obj.type];
    let why = ajv.errorsText(wsServer.errors);
    if (branch) {
      const v = ajv.compile({ $ref: `${wsSchema.$id}#/$defs/${obj.type}` });
      v(obj);
      why = ajv.errorsText(v.errors);
    } else why = `unknown type ${JSON.stringify(obj && obj.type)}`;
    throw new ContractError(`contract: WebSocket frame: ${why}\nframe: ${JSON.stringify(obj).slice(0, 800)}`);
  }
}
