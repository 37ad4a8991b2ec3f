// Live updates: a WebSocket when possible, 3 s polling while it is not.
// Polling and reconnect attempts run side by side so the inbox never goes stale.

const POLL_MS = 3000;
const PING_MS = 25000;
// Two missed pings without any frame means the socket is dead even if it never closed.
const SILENCE_MS = 2 * PING_MS + 5000;
const BACKOFF_BASE_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const AUTH_FAILURE_CODE = 4401;
// A handshake that hangs (proxy black hole) must not leave the UI without updates.
const CONNECT_TIMEOUT_MS = 8000;
// The token rides in Sec-WebSocket-Protocol, never in the URL (URLs are logged and traced):
// the server selects PROTOCOL and never echoes the token (RFC 6455 section 4.2.2).
const PROTOCOL = 'inbox.v1';
// Offered first: each frame is then an array of the events that queued (fewer frames in a burst).
const BATCHED = 'inbox.v2';
const BEARER_PREFIX = 'inbox.bearer.';

/**
 * @param {object} opts
 * @param {string} [opts.path]                    the socket's path: '/ws' (operators) by default
 * @param {string} [opts.updateType]              the frames passed to onUpdate: 'conversation.updated' by default
 * @param {() => string|null} opts.getToken
 * @param {(msg: object) => void} opts.onUpdate   conversation.updated frames (or updateType's)
 * @param {(msg: object) => void} [opts.onDelta]  insight.delta frames (a reply being written)
 * @param {() => Promise<void>} opts.poll          refetch everything visible
 * @param {() => void} opts.onConnected            socket (re)opened: caller does a full refetch
 * @param {(mode: string) => void} opts.onMode     'connecting' | 'websocket' | 'polling'
 * @param {() => void} opts.onAuthFailure
 */
export function createLive(opts) {
  let ws = null;
  let stopped = true;
  let attempt = 0;
  let reconnectTimer = null;
  let pollTimer = null;
  let pingTimer = null;
  let polling = false;
  let lastFrameAt = 0;

  function setMode(mode) {
    opts.onMode(mode);
  }

  function socketUrl() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${proto}//${location.host}${opts.path || '/ws'}`;
  }

  function connect() {
    reconnectTimer = null;
    if (stopped) return;
    const token = opts.getToken();
    if (!token) return;
    if (!polling) setMode('connecting');

    let socket;
    try {
      socket = new WebSocket(socketUrl(), [BATCHED, PROTOCOL, BEARER_PREFIX + token]);
    } catch {
      handleDown();
      return;
    }
    ws = socket;
    const connectTimer = setTimeout(() => {
      if (ws !== socket || socket.readyState !== WebSocket.CONNECTING) return;
      ws = null;
      socket.close();
      handleDown();
    }, CONNECT_TIMEOUT_MS);

    socket.addEventListener('open', () => {
      clearTimeout(connectTimer);
      if (ws !== socket) return;
      attempt = 0;
      lastFrameAt = Date.now();
      stopPolling();
      setMode('websocket');
      startPing(socket);
      opts.onConnected();
    });

    socket.addEventListener('message', (event) => {
      if (ws !== socket) return;
      lastFrameAt = Date.now();
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      const events = socket.protocol === BATCHED && Array.isArray(data) ? data : [data];
      for (const msg of events) {
        if (msg && msg.type === (opts.updateType || 'conversation.updated')) opts.onUpdate(msg);
        else if (msg && msg.type === 'insight.delta' && opts.onDelta) opts.onDelta(msg);
      }
    });

    socket.addEventListener('close', (event) => {
      clearTimeout(connectTimer);
      if (ws !== socket) return;
      ws = null;
      stopPing();
      if (stopped) return;
      if (event.code === AUTH_FAILURE_CODE) {
        stop();
        opts.onAuthFailure();
        return;
      }
      handleDown();
    });
    // 'error' is always followed by 'close', which does the work.
  }

  function handleDown() {
    if (stopped) return;
    startPolling();
    scheduleReconnect();
  }

  function scheduleReconnect() {
    if (reconnectTimer || stopped) return;
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
    attempt += 1;
    // Jitter keeps a fleet of browsers from reconnecting in lockstep after a gateway restart.
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    reconnectTimer = setTimeout(connect, delay);
  }

  function startPing(socket) {
    stopPing();
    pingTimer = setInterval(() => {
      if (socket.readyState !== WebSocket.OPEN) return;
      if (Date.now() - lastFrameAt > SILENCE_MS) {
        socket.close(4000, 'no traffic');
        return;
      }
      try {
        socket.send(JSON.stringify({ type: 'ping' }));
      } catch {
        /* close handler takes over */
      }
    }, PING_MS);
  }

  function stopPing() {
    clearInterval(pingTimer);
    pingTimer = null;
  }

  function startPolling() {
    if (polling) return;
    polling = true;
    setMode('polling');
    const tick = async () => {
      if (!polling) return;
      try {
        await opts.poll();
      } catch {
        /* poll reports its own errors */
      }
      // Chain rather than setInterval so slow responses never pile up.
      if (polling) pollTimer = setTimeout(tick, POLL_MS);
    };
    pollTimer = setTimeout(tick, POLL_MS);
  }

  function stopPolling() {
    polling = false;
    clearTimeout(pollTimer);
    pollTimer = null;
  }

  function start() {
    if (!stopped) return;
    stopped = false;
    attempt = 0;
    setMode('connecting');
    if (typeof WebSocket === 'undefined') {
      startPolling();
      return;
    }
    connect();
  }

  function stop() {
    stopped = true;
    stopPolling();
    stopPing();
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (ws) {
      const socket = ws;
      ws = null;
      try {
        socket.close(1000, 'bye');
      } catch {
        /* already closing */
      }
    }
  }

  return { start, stop };
}
