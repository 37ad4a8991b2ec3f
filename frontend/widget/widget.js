// The customer's side of one conversation, inside the iframe loader.js adds to a site: a session
// (access token in memory, renew token in localStorage), live updates over a WebSocket with 3 s
// polling while it is down, and optimistic sending. Everything the server sends is shown as text.

import { createLive } from '../js/live.js';

const API = '/api/v1/widget';
const MAX_BODY = 4000;
const COUNTER_FROM = 3500;
// Retries of a session start that failed for a reason other than 401/403.
const BACKOFF_BASE_MS = 1000;
const BACKOFF_MAX_MS = 30000;
// Only a loader that never answers "ready" makes the frame wait this long (then: anonymous).
const IDENTITY_WAIT_MS = 3000;
// Renew before expiry, so a request never has to fail first.
const RENEW_AT = 0.8;
// If no push arrives for an accepted message (missed frame, slow pipeline), look again.
const CONFIRM_CHECKS_MS = [1500, 4000, 10000];

const $ = (id) => document.getElementById(id);
const root = $('widget');
const logEl = $('messages');
const input = $('message-input');
const sendButton = $('send');
const counter = $('counter');
const noticeEl = $('notice');
const channel = new URLSearchParams(location.search).get('channel') || '';
const STORE_KEY = `support-inbox-widget:${channel}`;
const embedded = window.parent !== window;

let identity = null;
let channelAssistant = 'suggest'; // the channel's mode, from the session: suggest or answer
let access = null; // { token, expiresAt } — never stored
let renewing = null;
let renewTimer = null;
let conversation = null;
let announcedUpTo = null; // ids of operator messages already seen; null until the first load
let disabled = false;
const pending = new Map(); // message_id -> { message_id, author_role, body, state: 'sending'|'failed' }
const nodes = new Map(); // message_id -> element in the log

class ApiError extends Error {
  constructor(status, detail, retryAfterS = 0) {
    super(detail);
    Object.assign(this, { status, detail, retryAfterS });
  }
}

// crypto.randomUUID only exists in secure contexts; the gateway may be served over plain http.
function uuid4() {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// Code points, like the server's len(), not UTF-16 units.
const bodyLength = (text) => [...text].length;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const backoff = (attempt) => {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  // Jitter keeps many browsers from coming back in lockstep after a gateway restart.
  return ceiling / 2 + Math.random() * (ceiling / 2);
};

// ---------------------------------------------------------------- storage

// Third-party storage can be blocked; the chat then lasts as long as the page.
let memoryStore = null;
function load() {
  try {
    return JSON.parse(localStorage.getItem(STORE_KEY) || 'null');
  } catch {
    return memoryStore;
  }
}
function save(value) {
  memoryStore = value;
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify(value));
  } catch {
    /* memoryStore holds it */
  }
}

// Who the site says the visitor is: the token's unverified `sub` (the server verifies it). Sites
// sign a fresh token per page view, so the token itself cannot tell "same person" apart.
function subjectOf(jwt) {
  if (!jwt) return null;
  try {
    const sub = JSON.parse(atob(jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).sub;
    return sub == null ? 'unknown' : String(sub);
  } catch {
    return 'unknown';
  }
}

// ------------------------------------------------------------------- HTTP

// Seconds or an HTTP date (RFC 9110 section 10.2.3).
function retryAfter(response) {
  const raw = response.headers.get('Retry-After') || '';
  const s = /^\d+$/.test(raw.trim()) ? Number(raw) : (Date.parse(raw) - Date.now()) / 1000;
  return Number.isFinite(s) ? Math.max(1, Math.ceil(s)) : 5;
}

async function call(method, path, { token, body } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  const json = body === undefined ? undefined : JSON.stringify(body);
  const init = { method, headers, body: json, credentials: 'omit', cache: 'no-store' };
  const response = await fetch(API + path, init).catch(() => {
    throw new ApiError(0, 'Cannot reach support. Check your connection.');
  });
  const payload = await response.json().catch(() => null);
  if (response.ok) return payload;
  const detail = payload && typeof payload.detail === 'string' && payload.detail;
  const { status } = response;
  const waitS = status === 429 ? retryAfter(response) : 0;
  throw new ApiError(status, detail || `Something went wrong (HTTP ${status})`, waitS);
}

function adopt(data, renewToken) {
  access = { token: data.access_token, expiresAt: Date.now() + data.expires_in * 1000 };
  channelAssistant = data.assistant;
  if (conversation && conversation.conversation_id !== data.conversation_id) resetLog();
  save({ renew_token: renewToken, conversation_id: data.conversation_id, identity_sub: subjectOf(identity) });
  clearTimeout(renewTimer);
  renewTimer = setTimeout(() => {
    access = null;
    ensureSession().catch(() => {}); // the next request or 4401 tries again
  }, data.expires_in * 1000 * RENEW_AT);
}

// One session at a time: renew the stored one if it is this visitor's, else start a new one.
function ensureSession() {
  if (access && Date.now() < access.expiresAt) return Promise.resolve();
  if (!renewing) {
    renewing = (async () => {
      const saved = load();
      if (saved && saved.renew_token && (saved.identity_sub ?? null) === subjectOf(identity)) {
        try {
          const data = await call('POST', '/sessions/renew', { token: saved.renew_token });
          adopt(data, data.renew_token || saved.renew_token);
          return;
        } catch (err) {
          if (err.status !== 401) throw err;
          save(null);
        }
      }
      const data = await call('POST', '/sessions', { body: { channel, identity } });
      adopt(data, data.renew_token);
    })().finally(() => (renewing = null));
  }
  return renewing;
}

async function authed(method, path, body) {
  await ensureSession();
  try {
    return await call(method, path, { token: access.token, body });
  } catch (err) {
    if (err.status !== 401) throw err;
    access = null;
    await ensureSession();
    return call(method, path, { token: access.token, body });
  }
}

// ------------------------------------------------------------------ view

function showNotice(text) {
  noticeEl.textContent = text;
  noticeEl.hidden = !text;
}

function announce(text) {
  const el = $('announcer');
  el.textContent = '';
  // A fresh text node after a tick, so the same words twice are still read twice.
  setTimeout(() => { el.textContent = text; }, 50);
}

const tooFast = (seconds) => `You are sending messages too fast; try again in ${seconds} s`;
const timeText = (iso) => {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
};
const make = (tag, className, text) => {
  const el = document.createElement(tag);
  el.className = className;
  if (text) el.textContent = text;
  return el;
};

// Who wrote a message, as the customer is told: a person, the AI assistant, or themselves.
const AUTHORS = { operator: 'Support', assistant: 'Assistant (AI)' };

function messageEl(m) {
  const role = AUTHORS[m.author_role] ? m.author_role : 'customer';
  const el = make('div', `message message-${role}`);
  el.dataset.state = m.state || 'stored';
  el.dataset.messageId = m.message_id;
  const who = make('span', AUTHORS[role] ? 'message-author' : 'visually-hidden', AUTHORS[role] || 'You');
  const meta = make('span', 'message-meta');
  if (m.state === 'failed') {
    const retry = make('button', 'retry-button', 'Retry');
    retry.type = 'button';
    retry.addEventListener('click', () => {
      input.focus();
      send(m.message_id, m.body);
    });
    meta.append('Not sent. ', retry);
  } else {
    const notes = { sending: 'Sending…', writing: 'Writing…' };
    meta.textContent = notes[m.state] || timeText(m.created_at);
  }
  el.append(who, make('p', 'message-body', m.body), meta);
  return el;
}

function render({ stick = false } = {}) {
  const stored = conversation ? [...(conversation.messages || [])].sort((a, b) => a.seq - b.seq) : [];
  for (const m of stored) pending.delete(m.message_id);
  const items = [...stored, ...pending.values()];
  if (draft && !stored.some((m) => m.seq > draft.afterSeq)) items.push(draft);
  const follow = stick || logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 48;
  const wanted = new Set(items.map((m) => m.message_id));
  for (const [id, el] of nodes) if (!wanted.has(id)) { el.remove(); nodes.delete(id); }
  items.forEach((m, i) => {
    let el = nodes.get(m.message_id);
    if (m.state === 'writing' && el) {
      el.querySelector('.message-body').textContent = m.body;
    } else if (!el || el.dataset.state !== (m.state || 'stored')) {
      const fresh = messageEl(m);
      if (el) el.replaceWith(fresh);
      el = fresh;
      nodes.set(m.message_id, el);
    }
    if (logEl.children[i] !== el) logEl.insertBefore(el, logEl.children[i] || null);
  });
  $('empty').hidden = items.length > 0;
  if (follow) logEl.scrollTop = logEl.scrollHeight;
}

function resetLog() {
  conversation = null;
  announcedUpTo = null;
  for (const el of nodes.values()) el.remove();
  nodes.clear();
}

function stateLine(view) {
  if (view.status === 'resolved') return 'This chat has ended; write again to reopen it';
  if (view.human_joined) return 'A person has joined';
  if (view.assistant === 'handed_off') return 'A person will answer you shortly';
  // before the first message is stored, the channel's mode says who will answer
  const assistant = view.assistant === 'answering' || (view.version === 0 && channelAssistant === 'answer');
  if (assistant) return 'Our AI assistant answers first; ask for a person at any time';
  return 'We usually reply in a few minutes';
}

// The assistant's reply while it is written (`insight.delta` of the customer's latest message),
// until the stored answer arrives. Drafts of older revisions or messages are ignored.
let draft = null;
function applyDelta(delta) {
  if (!conversation || typeof delta.text !== 'string') return;
  if (delta.conversation_id !== conversation.conversation_id || !delta.text) return;
  const last = conversation.messages[conversation.messages.length - 1];
  if (!last || last.message_id !== delta.message_id) return;
  if (draft && draft.source === delta.message_id && Number(delta.seq) <= draft.deltaSeq) return;
  draft = {
    message_id: `draft-${delta.message_id}`,
    source: delta.message_id,
    deltaSeq: Number(delta.seq),
    afterSeq: last.seq,
    seq: last.seq + 0.5,
    author_role: 'assistant',
    body: delta.text,
    state: 'writing',
  };
  render();
}

function apply(next) {
  if (!next || !Array.isArray(next.messages)) return;
  const same = conversation && conversation.conversation_id === next.conversation_id;
  if (same && next.version < conversation.version) return; // a slow poll behind a push
  const joinedBefore = same && conversation.human_joined;
  const handedOffBefore = same && conversation.assistant === 'handed_off';
  conversation = next;
  // the stored answer replaces the draft; a handoff ends it unanswered
  if (draft && (next.assistant !== 'answering' || next.messages.some((m) => m.seq > draft.afterSeq))) draft = null;
  $('state-line').textContent = stateLine(next);
  $('end').hidden = next.version === 0 || next.status === 'resolved';
  // The log itself stays quiet (aria-live off); only what support says is read out, once.
  const fromSupport = next.messages.filter((m) => AUTHORS[m.author_role]);
  if (announcedUpTo) {
    const fresh = fromSupport.filter((m) => !announcedUpTo.has(m.message_id));
    const parts = fresh.map((m) => `${AUTHORS[m.author_role]}: ${m.body}`);
    if (next.assistant === 'handed_off' && !handedOffBefore) parts.unshift(stateLine(next));
    if (next.human_joined && !joinedBefore) parts.unshift('A person has joined');
    if (parts.length) announce(parts.join('\n'));
  }
  announcedUpTo = new Set([...(announcedUpTo || []), ...fromSupport.map((m) => m.message_id)]);
  render();
}

let refreshing = null;
let rerun = false;
async function refresh() {
  if (refreshing) {
    rerun = true;
    return refreshing;
  }
  refreshing = (async () => {
    do {
      rerun = false;
      apply(await authed('GET', '/conversation'));
    } while (rerun);
  })().finally(() => (refreshing = null));
  return refreshing;
}

// --------------------------------------------------------------- sending

function updateComposer() {
  const n = bodyLength(input.value);
  const over = n > MAX_BODY;
  counter.hidden = n < COUNTER_FROM;
  counter.textContent = counter.hidden ? '' : `${n} / ${MAX_BODY}`;
  counter.classList.toggle('over', over);
  input.setAttribute('aria-invalid', over ? 'true' : 'false');
  sendButton.disabled = disabled || over || !input.value.trim();
}

async function send(messageId, body) {
  pending.set(messageId, { message_id: messageId, author_role: 'customer', body, state: 'sending' });
  render({ stick: true });
  try {
    await authed('POST', '/messages', { message_id: messageId, body });
    showNotice('');
    for (const delay of CONFIRM_CHECKS_MS) {
      setTimeout(() => pending.has(messageId) && refresh().catch(() => {}), delay);
    }
  } catch (err) {
    if (err.status >= 400 && err.status < 500 && err.status !== 401 && err.status !== 429) {
      // Refused for what it says (422): resending it unchanged cannot help, so it goes back to the box.
      pending.delete(messageId);
      if (!input.value.trim()) input.value = body;
      updateComposer();
      showNotice(`Message not sent: ${err.detail}`);
    } else {
      // Kept with the same message_id, so a retry of one that did arrive is stored once.
      if (pending.has(messageId)) pending.get(messageId).state = 'failed';
      showNotice(err.status === 429 ? tooFast(err.retryAfterS) : `Message not sent: ${err.detail}`);
    }
    render();
  }
}

// The customer is done: the conversation is resolved (and summarised for operators); the end
// shows once the change is stored. Writing again reopens it.
async function endChat() {
  const end = $('end');
  end.disabled = true;
  try {
    await authed('POST', '/conversation/end');
    showNotice('');
    for (const delay of CONFIRM_CHECKS_MS) setTimeout(() => refresh().catch(() => {}), delay);
  } catch (err) {
    showNotice(err.status === 429 ? tooFast(err.retryAfterS) : `Could not end the chat: ${err.detail}`);
  } finally {
    end.disabled = false;
  }
}

function submit() {
  const body = input.value.trim();
  if (disabled || !body || bodyLength(input.value) > MAX_BODY) return;
  input.value = '';
  updateComposer();
  send(uuid4(), body);
}

// ------------------------------------------------------------------ live

// The operator page's socket-with-polling (same origin), on the widget's socket: a push is the
// conversation as the customer sees it, and an expired token is renewed, then reconnected.
const live = createLive({
  path: `${API}/ws`,
  updateType: 'conversation',
  getToken: () => (access ? access.token : null),
  onUpdate: apply,
  onDelta: applyDelta,
  poll: refresh,
  // Pushes only follow changes: catch up on what happened while the socket was down.
  onConnected: () => refresh().catch(() => {}),
  onMode: (mode) => {
    root.dataset.mode = mode;
  },
  onAuthFailure: () => {
    access = null;
    ensureSession().then(() => live.start(), () => live.start());
  },
});

// ---------------------------------------------------------------- start

// The site's page answers "ready" with the identity it was given (or null); opened on its own,
// the frame is anonymous at once. Only the parent may say who the visitor is.
function waitForIdentity() {
  if (!embedded) return Promise.resolve(null);
  return new Promise((resolve) => {
    const done = (value) => {
      clearTimeout(timer);
      window.removeEventListener('message', onMessage);
      resolve(value);
    };
    const onMessage = (event) => {
      const data = event.data;
      if (event.source !== window.parent || !data || data.type !== 'support-inbox:identity') return;
      done(typeof data.identity === 'string' && data.identity ? data.identity : null);
    };
    const timer = setTimeout(() => done(null), IDENTITY_WAIT_MS);
    window.addEventListener('message', onMessage);
    // Nothing secret in it, and the frame cannot know the parent's origin: hence '*'.
    window.parent.postMessage({ type: 'support-inbox:ready' }, '*');
  });
}

function stop(text) {
  disabled = true;
  input.disabled = true;
  updateComposer();
  showNotice(text);
}

async function start() {
  if (!channel) return stop('Chat is not available on this page.');
  identity = await waitForIdentity();
  for (let attempt = 0; ; attempt += 1) {
    try {
      await ensureSession();
      break;
    } catch (err) {
      if (err.status === 403) return stop('Chat is not available on this page.');
      if (err.status === 401) return stop('We could not confirm who you are. Reload the page to try again.');
      const waitS = err.status === 429 ? err.retryAfterS : Math.ceil(backoff(attempt) / 1000);
      showNotice(`Cannot reach support right now; trying again in ${waitS} s`);
      await sleep(waitS * 1000);
    }
  }
  showNotice('');
  await refresh().catch((err) => showNotice(err.detail));
  live.start();
}

$('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  submit();
});
input.addEventListener('input', updateComposer);
$('end').addEventListener('click', endChat);
input.addEventListener('keydown', (event) => {
  // isComposing: Enter also confirms an IME candidate, which must not send.
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submit();
  }
});
if (embedded) {
  const close = $('close');
  close.hidden = false;
  const closeChat = () => window.parent.postMessage({ type: 'support-inbox:close' }, '*');
  close.addEventListener('click', closeChat);
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') closeChat();
  });
  // The launcher focuses the frame when it opens it (maybe before this ran); the visitor came to type.
  const focusInput = () => {
    if (document.activeElement === document.body && !input.disabled) input.focus();
  };
  window.addEventListener('focus', focusInput);
  if (document.hasFocus()) focusInput();
}
updateComposer();
start();
