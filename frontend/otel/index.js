// Entry point of frontend/vendor/otel.js, built by tools/build-frontend.sh. The app imports
// only from that bundle, so everything it needs from @opentelemetry/api is re-exported here:
// a second copy of the API would not see the provider registered below.
import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { DocumentLoadInstrumentation } from '@opentelemetry/instrumentation-document-load';
import { FetchInstrumentation } from '@opentelemetry/instrumentation-fetch';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, WebTracerProvider } from '@opentelemetry/sdk-trace-web';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';

export { context, propagation, SpanKind, SpanStatusCode, trace };

let provider = null;

// A URL's query can hold customer text (a search) or a secret, and whoever reads the traces
// is not meant to see either: every URL the instrumentations record loses its query and
// fragment before the span ends. The services strip theirs the same way.
function stripQuery(url) {
  return String(url).split('?', 1)[0].split('#', 1)[0];
}

function stripUrlAttributes(span) {
  for (const key of ['url.full', 'http.url']) {
    const value = span.attributes && span.attributes[key];
    if (typeof value === 'string') span.setAttribute(key, stripQuery(value));
  }
}

export function startTracing({ serviceName, serviceVersion, tracesUrl }) {
  if (provider) return; // a second provider would double every span and patch fetch twice
  // The provider takes `resource` as is; merging keeps the telemetry.sdk.* attributes.
  const resource = defaultResource().merge(
    resourceFromAttributes({
      [ATTR_SERVICE_NAME]: serviceName,
      [ATTR_SERVICE_VERSION]: serviceVersion,
    }),
  );
  // Normalised like the exporter and the fetch instrumentation do, for the exact-match ignore.
  const url = new URL(tracesUrl, location.href).href;
  // The pinned 0.223 browser exporter always posts with fetch() (mode "cors" when the collector
  // is cross-origin, keepalive while under the browser's 64 KiB budget) and has no
  // navigator.sendBeacon path left, so no `headers: {}` trick is needed to keep CORS working.
  // The JSON Content-Type makes it a preflighted request: the collector must answer OPTIONS.
  const exporter = new OTLPTraceExporter({ url });
  provider = new WebTracerProvider({
    resource,
    spanProcessors: [new BatchSpanProcessor(exporter)],
  });
  // Only traceparent/tracestate, which the gateway and the Dapr sidecars read; the default
  // composite would also add a baggage header to every request.
  provider.register({ propagator: new W3CTraceContextPropagator() });
  registerInstrumentations({
    tracerProvider: provider,
    instrumentations: [
      new DocumentLoadInstrumentation({
        applyCustomAttributesOnSpan: {
          documentLoad: stripUrlAttributes,
          documentFetch: stripUrlAttributes,
          resourceFetch: stripUrlAttributes,
        },
      }),
      // traceparent goes only to same-origin URLs (the default), so third-party hosts never
      // see it and need no CORS allowance for it. The exporter already bypasses the patched
      // fetch; ignoring its URL also keeps a future exporter change from tracing its own posts.
      // url.full is set when the span starts, and requestHook runs right after, on every path.
      new FetchInstrumentation({ ignoreUrls: [url], requestHook: stripUrlAttributes }),
    ],
  });
  // The batch would otherwise be lost when the tab is closed or discarded; "hidden" is the
  // last event browsers reliably deliver (unload/beforeunload often are not, on mobile).
  addEventListener('visibilitychange', () => {
    // A failed export is already reported through the SDK's diag logger.
    if (document.visibilityState === 'hidden') provider.forceFlush().catch(() => {});
  });
}

export function flushTracing() {
  return provider ? provider.forceFlush() : Promise.resolve();
}
