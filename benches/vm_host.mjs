// Runs posturio.wasm in V8 through node, without Envoy: a minimal proxy-wasm (ABI 0.2.1) host
// drives the module through one request lifecycle per iteration. It shows what the module's own
// code costs per request and exactly which host calls it makes, apart from Envoy's plumbing.
//
//   node --no-warnings benches/vm_host.mjs MODULE POLICY_JSON BODY ITERATIONS [--response PATH]
//
// MODULE is the built posturio.wasm, POLICY_JSON the plugin configuration, BODY the request body
// (a chat completion request forwarded to the upstream), ITERATIONS the number of timed
// lifecycles. --response gives the upstream's reply body (default: a fixed OpenAI chat
// completion with usage). Prints one JSON line:
//
//   {"us_per_request": ..., "host_calls": {name: count, ...}, "host_calls_total": N,
//    "iterations": N, "warmup": N, "route": the cluster the route header was set to}
//
// host_calls are per request, counted over the timed iterations. The time includes this host's
// own work for each host call, kept small (maps serialised once, no logging while timed), and
// V8's cost of crossing between Wasm and JavaScript. Exits non-zero with a message on anything
// that would make a fast run meaningless: an error logged by the module, a local reply (the
// request refused instead of forwarded), the route header not set, a host call this host does
// not implement, or a trap.
//
// Plain node only (no node:wasi): the five WASI imports are stubbed, so it runs on Debian's
// nodejs package (node 18) as well as newer.

import { readFileSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import v8 from 'node:v8';

// Envoy's V8 (proxy-wasm-cpp-host) compiles with TurboFan only; do the same, before compiling.
v8.setFlagsFromString('--no-liftoff');

function fail(message) {
  process.stderr.write(`vm_host: ${message}\n`);
  process.exit(1);
}

// --- arguments -----------------------------------------------------------------------------

const DEFAULT_RESPONSE = JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created: 1700000000,
  model: 'gpt-4o-mini',
  choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 },
});

const positional = [];
let responsePath = null;
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--response') {
      if (i + 1 >= argv.length) fail('--response needs a path');
      responsePath = argv[++i];
    } else if (argv[i] === '-h' || argv[i] === '--help') {
      process.stdout.write(
        'usage: node benches/vm_host.mjs MODULE POLICY_JSON BODY ITERATIONS [--response PATH]\n');
      process.exit(0);
    } else {
      positional.push(argv[i]);
    }
  }
}
if (positional.length !== 4) {
  fail('usage: node benches/vm_host.mjs MODULE POLICY_JSON BODY ITERATIONS [--response PATH]');
}
const [modulePath, policyPath, bodyPath, iterationsArg] = positional;
const iterations = Number(iterationsArg);
if (!Number.isInteger(iterations) || iterations < 1) fail(`bad ITERATIONS: ${iterationsArg}`);
// Long enough for V8 to settle the hot paths, short of the run itself for the 1 MiB bodies.
const warmup = Math.min(2000, Math.ceil(iterations / 10));

const policy = readFileSync(policyPath);
const requestBody = readFileSync(bodyPath);
const responseBody = responsePath ? readFileSync(responsePath) : Buffer.from(DEFAULT_RESPONSE);
let routeHeader;
try {
  routeHeader = JSON.parse(policy.toString('utf8')).route_header ?? 'x-posturio-cluster';
} catch (error) {
  fail(`${policyPath} is not JSON: ${error.message}`);
}

// --- the ABI's constants ---------------------------------------------------------------------

const OK = 0;
const NOT_FOUND = 1;
const UNIMPLEMENTED = 12;
const BUFFER_REQUEST_BODY = 0;
const BUFFER_RESPONSE_BODY = 1;
const BUFFER_PLUGIN_CONFIGURATION = 7;
const MAP_REQUEST_HEADERS = 0;
const MAP_RESPONSE_HEADERS = 2;
const LOG_INFO = 2;
const LOG_WARN = 3;
const LOG_ERROR = 4;
const ACTION_CONTINUE = 0;

// --- memory ----------------------------------------------------------------------------------

let instance;
let memory;
let bytes = new Uint8Array(0);
let view = new DataView(bytes.buffer);

// Growing the memory detaches the old buffer: re-take the views only when that happened.
function refresh() {
  if (bytes.buffer !== memory.buffer) {
    bytes = new Uint8Array(memory.buffer);
    view = new DataView(memory.buffer);
  }
}

function readString(pointer, size) {
  refresh();
  return Buffer.from(bytes.buffer, pointer, size).toString('utf8');
}

function writeU32(pointer, value) {
  refresh();
  view.setUint32(pointer, value, true);
}

// Hands bytes to the module as Envoy does: memory from its allocator, pointer and size written
// where it asked.
function give(data, pointerOut, sizeOut) {
  if (data.length === 0) {
    writeU32(pointerOut, 0);
    writeU32(sizeOut, 0);
    return OK;
  }
  const pointer = instance.exports.proxy_on_memory_allocate(data.length);
  refresh();
  bytes.set(data, pointer);
  view.setUint32(pointerOut, pointer, true);
  view.setUint32(sizeOut, data.length, true);
  return OK;
}

// ABI 0.2.1 map encoding: count, then (key size, value size) per pair, then each key and value
// followed by a NUL.
function serializeMap(pairs) {
  const encoded = pairs.map(([k, v]) => [Buffer.from(k), Buffer.from(v)]);
  let size = 4 + encoded.length * 8;
  for (const [k, v] of encoded) size += k.length + v.length + 2;
  const out = new Uint8Array(size);
  const out32 = new DataView(out.buffer);
  out32.setUint32(0, encoded.length, true);
  let offset = 4;
  for (const [k, v] of encoded) {
    out32.setUint32(offset, k.length, true);
    out32.setUint32(offset + 4, v.length, true);
    offset += 8;
  }
  for (const [k, v] of encoded) {
    out.set(k, offset);
    offset += k.length + 1;
    out.set(v, offset);
    offset += v.length + 1;
  }
  return out;
}

// --- the request ---------------------------------------------------------------------------------

// What Envoy hands the filter for a chat completion request and the upstream's answer. Serialised
// once: the timing should hold the module's work, not this host's.
const requestHeaders = [
  [':authority', '127.0.0.1:10000'],
  [':path', '/v1/chat/completions'],
  [':method', 'POST'],
  [':scheme', 'http'],
  ['user-agent', 'wrk'],
  ['content-type', 'application/json'],
  ['content-length', String(requestBody.length)],
  ['x-forwarded-proto', 'http'],
  ['x-request-id', '6f1c2a8e-3b4d-4c5e-9f60-718293a4b5c6'],
];
const responseHeaders = [
  [':status', '200'],
  ['content-type', 'application/json'],
  ['content-length', String(responseBody.length)],
  ['date', 'Thu, 01 Jan 2026 00:00:00 GMT'],
  ['server', 'nginx'],
];
const maps = {
  [MAP_REQUEST_HEADERS]: { pairs: requestHeaders, serialized: serializeMap(requestHeaders) },
  [MAP_RESPONSE_HEADERS]: { pairs: responseHeaders, serialized: serializeMap(responseHeaders) },
};
const buffers = {
  [BUFFER_REQUEST_BODY]: requestBody,
  [BUFFER_RESPONSE_BODY]: responseBody,
  [BUFFER_PLUGIN_CONFIGURATION]: policy,
};
// Envoy's answer for a response that came from the upstream (read to tell it from local replies).
const VIA_UPSTREAM = Buffer.from('via_upstream');

// --- what the run must not do --------------------------------------------------------------------

const problems = [];
const warnings = new Set();
let stderrText = '';
let routeSet = false;
let routeValue = null;

function checkRouteHeader(mapType, keyPointer, keySize, valuePointer, valueSize) {
  if (mapType === MAP_REQUEST_HEADERS && keySize === routeHeader.length
      && readString(keyPointer, keySize) === routeHeader) {
    routeSet = true;
    routeValue = readString(valuePointer, valueSize);
  }
}

// --- the host calls ------------------------------------------------------------------------------

let nextMetricId = 1;

const host = {
  proxy_log(level, pointer, size) {
    // Strings are only decoded for warnings and errors, as Envoy at its default level would.
    if (level >= LOG_ERROR) problems.push(`the module logged an error: ${readString(pointer, size)}`);
    else if (level === LOG_WARN) warnings.add(readString(pointer, size));
    return OK;
  },
  proxy_get_log_level(levelOut) {
    writeU32(levelOut, LOG_INFO); // Envoy's default level
    return OK;
  },
  proxy_get_current_time_nanoseconds(timeOut) {
    refresh();
    view.setBigUint64(timeOut, BigInt(Date.now()) * 1000000n, true);
    return OK;
  },
  proxy_set_tick_period_milliseconds: () => OK,
  proxy_get_buffer_bytes(type, start, max, pointerOut, sizeOut) {
    const buffer = buffers[type];
    if (buffer === undefined) return NOT_FOUND;
    return give(buffer.subarray(start, start + max), pointerOut, sizeOut);
  },
  // A rewritten body (a model alias, a redaction) is accepted as Envoy would; it is not kept.
  proxy_set_buffer_bytes: () => OK,
  proxy_get_header_map_pairs(mapType, pointerOut, sizeOut) {
    const map = maps[mapType];
    if (map === undefined) return give(serializeMap([]), pointerOut, sizeOut);
    return give(map.serialized, pointerOut, sizeOut);
  },
  proxy_get_header_map_value(mapType, keyPointer, keySize, pointerOut, sizeOut) {
    const key = readString(keyPointer, keySize);
    const pair = maps[mapType]?.pairs.find(([k]) => k === key);
    return pair ? give(Buffer.from(pair[1]), pointerOut, sizeOut) : NOT_FOUND;
  },
  proxy_replace_header_map_value(mapType, keyPointer, keySize, valuePointer, valueSize) {
    checkRouteHeader(mapType, keyPointer, keySize, valuePointer, valueSize);
    return OK;
  },
  proxy_add_header_map_value(mapType, keyPointer, keySize, valuePointer, valueSize) {
    checkRouteHeader(mapType, keyPointer, keySize, valuePointer, valueSize);
    return OK;
  },
  proxy_remove_header_map_value: () => OK,
  proxy_set_header_map_pairs: () => OK,
  proxy_get_property(pathPointer, pathSize, pointerOut, sizeOut) {
    // The path's segments are NUL-separated; only response.code_details has an answer here.
    if (readString(pathPointer, pathSize).replace(/\0$/, '') === 'response\0code_details') {
      return give(VIA_UPSTREAM, pointerOut, sizeOut);
    }
    return NOT_FOUND;
  },
  proxy_set_property: () => OK,
  proxy_get_shared_data: () => NOT_FOUND,
  proxy_set_shared_data: () => OK,
  proxy_define_metric(type, namePointer, nameSize, idOut) {
    writeU32(idOut, nextMetricId++);
    return OK;
  },
  proxy_increment_metric: () => OK,
  proxy_record_metric: () => OK,
  proxy_send_local_response(status, detailsPointer, detailsSize, bodyPointer, bodySize) {
    const body = readString(bodyPointer, Math.min(bodySize, 300));
    problems.push(`the request was answered locally with ${status} instead of forwarded: ${body}`);
    return OK;
  },
};

// WASI: only what the Rust standard library asks for. Nothing is printed; stderr (where a panic
// message goes) is kept for the failure message.
const wasi = {
  random_get(pointer, size) {
    refresh();
    randomFillSync(bytes, pointer, size);
    return 0;
  },
  environ_sizes_get(countOut, sizeOut) {
    writeU32(countOut, 0);
    writeU32(sizeOut, 0);
    return 0;
  },
  environ_get: () => 0,
  fd_write(fd, iovs, iovsCount, writtenOut) {
    refresh();
    let written = 0;
    for (let i = 0; i < iovsCount; i++) {
      const pointer = view.getUint32(iovs + i * 8, true);
      const size = view.getUint32(iovs + i * 8 + 4, true);
      if (fd === 2) stderrText = (stderrText + readString(pointer, size)).slice(-2000);
      written += size;
    }
    writeU32(writtenOut, written);
    return 0;
  },
  proc_exit(code) {
    throw new Error(`the module called proc_exit(${code})`);
  },
};

// Every env import is counted; one this host does not implement is a problem, not a silent 0.
const wasmModule = await WebAssembly.compile(readFileSync(modulePath));
const names = [];
const counts = [];
const env = {};
for (const { module: from, name, kind } of WebAssembly.Module.imports(wasmModule)) {
  if (kind !== 'function') continue;
  if (from === 'wasi_snapshot_preview1') {
    if (!wasi[name]) fail(`the module imports ${from}.${name}, which this host lacks`);
    continue;
  }
  const index = names.length;
  names.push(name);
  counts.push(0);
  const implementation = host[name] ?? (() => {
    problems.push(`the module called ${name}, which this host does not implement`);
    return UNIMPLEMENTED;
  });
  env[name] = (...args) => {
    counts[index]++;
    return implementation(...args);
  };
}
instance = await WebAssembly.instantiate(wasmModule, { env, wasi_snapshot_preview1: wasi });
memory = instance.exports.memory;
const E = instance.exports;

function check(when) {
  if (problems.length) {
    fail(`${when}: ${problems.slice(0, 5).join('; ')}${stderrText ? `\nmodule stderr: ${stderrText}` : ''}`);
  }
}

// --- the run -------------------------------------------------------------------------------------

const ROOT = 1;
try {
  E._initialize();
  E.proxy_on_context_create(ROOT, 0);
  E.proxy_on_vm_start(ROOT, 0);
  if (!E.proxy_on_configure(ROOT, policy.length)) {
    problems.push('the module refused the policy');
  }
} catch (error) {
  fail(`start-up: ${error.message}${stderrText ? `\nmodule stderr: ${stderrText}` : ''}`);
}
check('start-up');

// One request through the filter as Envoy drives it: the whole body and the whole response
// each arrive in one piece (end of stream), then the stream is logged and deleted.
function lifecycle(context) {
  routeSet = false;
  E.proxy_on_context_create(context, ROOT);
  E.proxy_on_request_headers(context, requestHeaders.length, 0);
  const onBody = E.proxy_on_request_body(context, requestBody.length, 1);
  E.proxy_on_response_headers(context, responseHeaders.length, 0);
  E.proxy_on_response_body(context, responseBody.length, 1);
  E.proxy_on_log(context);
  E.proxy_on_done(context);
  E.proxy_on_delete(context);
  if (onBody !== ACTION_CONTINUE) problems.push(`on_request_body returned ${onBody}, not Continue`);
  if (!routeSet) problems.push(`the route header ${routeHeader} was not set`);
  if (problems.length) check(`request ${context - ROOT}`);
}

let context = ROOT + 1;
let elapsed;
try {
  for (let i = 0; i < warmup; i++) lifecycle(context++);
  counts.fill(0);
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) lifecycle(context++);
  elapsed = process.hrtime.bigint() - start;
} catch (error) {
  fail(`request ${context - ROOT}: ${error.message}${stderrText ? `\nmodule stderr: ${stderrText}` : ''}`);
}
check('run');
for (const warning of warnings) process.stderr.write(`vm_host: the module warned: ${warning}\n`);

// Per request, over the timed iterations; a count that varies between requests shows as a
// fraction rather than being hidden.
const hostCalls = {};
let total = 0;
names.forEach((name, i) => {
  if (counts[i]) {
    const perRequest = counts[i] / iterations;
    hostCalls[name] = Number.isInteger(perRequest) ? perRequest : Number(perRequest.toFixed(3));
    total += counts[i];
  }
});
process.stdout.write(JSON.stringify({
  us_per_request: Number((Number(elapsed) / 1000 / iterations).toFixed(3)),
  host_calls: hostCalls,
  host_calls_total: Number((total / iterations).toFixed(3)),
  iterations,
  warmup,
  route: routeValue,
}) + '\n');
