// The official Node SDK against the target, retries off, every request counted.
// Input comes from the environment (keys never on the command line); one JSON line out.
// The transport matches the suite's (opconform/transport.py): undici's fetch with a dispatcher
// that honours HTTP(S)_PROXY/NO_PROXY (Node 20's built-in fetch ignores them), presents the
// client certificate, and skips verification with --insecure. Extra CAs come in through
// NODE_EXTRA_CA_CERTS, which Node adds to its roots for every TLS connection.
import { readFileSync } from "node:fs";
import OpenAI from "openai";
import { Agent, EnvHttpProxyAgent, fetch as undiciFetch } from "undici";

const env = process.env;
const tls = {};
if (env.OP_SDK_CLIENT_CERT) {
  tls.cert = readFileSync(env.OP_SDK_CLIENT_CERT);
  tls.key = readFileSync(env.OP_SDK_CLIENT_KEY || env.OP_SDK_CLIENT_CERT);
}
if (env.OP_SDK_INSECURE) {
  tls.rejectUnauthorized = false;
}
// The run's deadlines (opconform/timeouts.py: RUNNER_VARIABLES), in milliseconds, always given.
const milliseconds = (name) => {
  const value = Number(env[name]);
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`${name} must be a whole number of milliseconds, not ${env[name]}`);
  }
  return value;
};
// What the Node SDK can express and what we chose: the SDK itself has one `timeout` per request
// (--request-timeout), which bounds the wait for the headers and the reading of a whole answer
// but not a stream's body (the process deadline in conformance/sdk.py covers that). Connect and
// read are the transport's: undici's connect timeout (--connect-timeout, for a connection to
// the target, to a proxy, and through a proxy's tunnel) and its headersTimeout and bodyTimeout
// (--read-timeout: the longest silence before the headers and between two reads of the body).
const deadlines = {
  connect: milliseconds("OP_SDK_CONNECT_TIMEOUT_MS"),
  read: milliseconds("OP_SDK_READ_TIMEOUT_MS"),
  request: milliseconds("OP_SDK_REQUEST_TIMEOUT_MS"),
};
const connectTls = { ...tls, timeout: deadlines.connect };
const silence = { headersTimeout: deadlines.read, bodyTimeout: deadlines.read };
// connect: direct connections; requestTls: the tunnelled connection through a proxy; proxyTls:
// the connection to the proxy. proxyTunnel false: an http:// target goes to an http:// proxy as
// an absolute-URI request, as curl and httpx send it; https:// targets are tunnelled with
// CONNECT either way.
const dispatcher = env.OP_SDK_ENV_PROXIES
  ? new EnvHttpProxyAgent({
      connect: connectTls,
      requestTls: connectTls,
      proxyTls: { timeout: deadlines.connect },
      proxyTunnel: false,
      ...silence,
    })
  : new Agent({ connect: connectTls, ...silence });
const headers = JSON.parse(env.OP_SDK_HEADERS || "{}");

let requests = 0;
const countingFetch = async (url, init) => {
  requests += 1;
  return undiciFetch(url, { ...init, dispatcher });
};
const client = (key) =>
  new OpenAI({
    baseURL: env.OP_SDK_BASE_URL,
    apiKey: key,
    maxRetries: 0,
    timeout: deadlines.request,
    fetch: countingFetch,
    defaultHeaders: headers,
  });

const errorName = async (call) => {
  try {
    await call();
    return "no error";
  } catch (error) {
    return error?.constructor?.name ?? String(error);
  }
};

const result = { requests: 0 };
try {
  const main = client(env.OP_SDK_KEY);
  if (env.OP_SDK_MODE === "basic") {
    const models = await main.models.list();
    result.models = models.data.length;
    const completion = await main.chat.completions.create({
      model: env.OP_SDK_MODEL,
      messages: [{ role: "user", content: "Say hello in five words." }],
      max_tokens: 16,
    });
    result.completion = completion.choices[0]?.message?.content ?? null;
    const stream = await main.chat.completions.create({
      model: env.OP_SDK_MODEL,
      messages: [{ role: "user", content: "Write a haiku about APIs." }],
      max_tokens: 24,
      stream: true,
    });
    let text = "";
    let finish = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    result.streamed = text;
    result.finish_reason = finish;
  } else if (env.OP_SDK_MODE === "errors") {
    result.authentication = await errorName(() =>
      client("op_sk_opconform_unknown_node_check").models.list(),
    );
    if (env.OP_SDK_RESTRICTED_KEY && env.OP_SDK_RESTRICTED_MODEL) {
      result.permission = await errorName(() =>
        client(env.OP_SDK_RESTRICTED_KEY).chat.completions.create({
          model: env.OP_SDK_RESTRICTED_MODEL,
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 4,
        }),
      );
    }
  } else if (env.OP_SDK_MODE === "errors-429") {
    result.rate_limit = await errorName(() => main.models.list());
  } else if (env.OP_SDK_MODE === "errors-429-chat") {
    // A limiter that counts only completions (LiteLLM) refuses those, not the list.
    result.rate_limit = await errorName(() =>
      main.chat.completions.create({
        model: env.OP_SDK_MODEL,
        messages: [{ role: "user", content: "Say hi." }],
        max_tokens: 1,
      }),
    );
  }
} catch (error) {
  result.error = `${error?.constructor?.name}: ${error?.message}`;
}
result.requests = requests;
console.log(JSON.stringify(result));
// Open keep-alive connections would otherwise hold the process after the answer.
await dispatcher.destroy().catch(() => {});
