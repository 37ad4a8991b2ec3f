// Browser tracing: page load, fetch and the operator's actions, exported over OTLP/HTTP.
// The OpenTelemetry web SDK is bundled into /vendor/otel.js by `make frontend`; the gateway's
// /api/v1/client-config says whether to load it and where spans go. Without it, every helper
// here is a pass-through, so the page works the same untraced.

let otel = null;
let tracer = null;
let traceUrlTemplate = null;

/** Read the client config and start the SDK when tracing is on. Never throws. */
export async function startTracing() {
  let config;
  try {
    const response = await fetch('/api/v1/client-config', { cache: 'no-store' });
    if (!response.ok) return;
    config = await response.json();
  } catch {
    return;
  }
  traceUrlTemplate = typeof config.trace_url_template === 'string' ? config.trace_url_template : null;
  if (!config.tracing) return;
  try {
    otel = await import('../vendor/otel.js');
    otel.startTracing({
      serviceName: config.tracing.service_name,
      serviceVersion: config.version,
      tracesUrl: config.tracing.traces_url,
    });
    tracer = otel.trace.getTracer('support-inbox-frontend', config.version);
  } catch (err) {
    otel = null;
    console.warn('tracing disabled: the OpenTelemetry bundle did not load', err);
  }
}

/**
 * Run `fn` as the user action `name`: a span that is the parent of every fetch `fn` starts
 * before its first await (the SDK's context only follows synchronous calls without zone.js).
 * @template T
 * @param {string} name   e.g. 'send reply'
 * @param {() => Promise<T>} fn
 * @param {Record<string, string|number|boolean>} [attributes]
 * @returns {Promise<T>}
 */
export async function traced(name, fn, attributes = {}) {
  if (!tracer) return fn();
  const span = tracer.startSpan(name, { attributes });
  const ctx = otel.trace.setSpan(otel.context.active(), span);
  try {
    return await otel.context.with(ctx, fn);
  } catch (err) {
    span.recordException(err);
    span.setStatus({ code: otel.SpanStatusCode.ERROR, message: String((err && err.detail) || err) });
    throw err;
  } finally {
    span.end();
  }
}

/** Link to one trace in the trace UI, or null when none is configured or the id is not one. */
export function traceUrl(traceId) {
  if (!traceUrlTemplate || typeof traceId !== 'string' || !/^[0-9a-f]{32}$/.test(traceId)) return null;
  return traceUrlTemplate.replace('{trace_id}', traceId);
}
