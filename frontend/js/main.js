// Wiring: session lifecycle, login form, live updates, shortcuts and timers.

import * as api from './api.js';
import { createLive } from './live.js';
import { createInbox } from './inbox.js';
import { createConversationView } from './conversation.js';
import { createSeenStore } from './seen.js';
import { createSearch } from './search.js';
import { initKeyboard } from './keyboard.js';
import { initNotice, clearNotices } from './notice.js';
import { refreshRelativeTimes } from './time.js';
import { findListItem } from './views.js';
import { startTracing, traced } from './tracing.js';

const $ = (id) => document.getElementById(id);
const TIME_REFRESH_MS = 30000;
const MODE_LABELS = { websocket: 'Live', polling: 'Polling', connecting: 'Connecting…' };
const MODE_TITLES = {
  websocket: 'Live updates over WebSocket',
  polling: 'Live connection unavailable; checking for changes every 3 seconds',
  connecting: 'Connecting to live updates…',
};

let session = null;
let seen = null;
let running = false;
let helpReturnFocus = null;

initNotice($('notice'));

// ------------------------------------------------------------------ helpers

function announce(text) {
  const region = $('announcer');
  // Clearing first makes screen readers repeat an identical announcement.
  region.textContent = '';
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}

function setLiveMode(mode) {
  const el = $('live-status');
  el.dataset.mode = mode;
  el.title = MODE_TITLES[mode] || '';
  $('live-status-label').textContent = MODE_LABELS[mode] || mode;
}

function hashConversationId() {
  const m = /^#\/conversations\/([^/?#]+)$/.exec(location.hash);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return null;
  }
}

function setHash(id) {
  const url = id ? `#/conversations/${encodeURIComponent(id)}` : `${location.pathname}${location.search}`;
  history.replaceState(null, '', url);
}

// ---------------------------------------------------------------- components

const inbox = createInbox({
  refs: {
    listEl: $('conversation-list'),
    emptyEl: $('list-empty'),
    loadingEl: $('list-loading'),
    loadMoreEl: $('load-more'),
    countEl: $('inbox-count'),
  },
  isUnread: (summary) => (seen ? seen.isUnread(summary) : false),
  onItems: (items) => seen && seen.absorb(items),
  onChange(summary, previous) {
    if (summary.last_author_role !== 'customer') return;
    const who = summary.customer_id || 'a customer';
    if (!previous) announce(`New conversation from ${who}`);
    else if (Number(summary.message_count) > Number(previous.message_count)) announce(`New message from ${who}`);
  },
  onRendered(unread) {
    document.title = unread ? `(${unread}) Support Inbox` : 'Support Inbox';
  },
});

const search = createSearch({
  refs: {
    form: $('search-form'),
    input: $('search-input'),
    statusEl: $('search-status'),
    summaryEl: $('search-summary'),
    clearEl: $('search-clear'),
    resultsEl: $('search-results'),
    inboxEl: $('inbox-list-area'),
  },
  isUnread: (summary) => (seen ? seen.isUnread(summary) : false),
  onItems: (items) => seen && seen.absorb(items),
});

const convo = createConversationView({
  refs: {
    view: $('conversation-view'),
    emptyEl: $('view-empty'),
    loadingEl: $('view-loading'),
    contentEl: $('view-content'),
    customerEl: $('conversation-customer'),
    subjectEl: $('conversation-subject'),
    messagesEl: $('messages'),
    form: $('reply-form'),
    replyEl: $('reply-body'),
    sendEl: $('reply-send'),
    counterEl: $('reply-counter'),
    errorEl: $('reply-error'),
    statusEl: $('conversation-status'),
    assigneeEl: $('conversation-assignee'),
    assignEl: $('assign-button'),
    summaryEl: $('resolution-summary'),
    activityListEl: $('activity-list'),
    activityCountEl: $('activity-count'),
  },
  ownUsername: () => (session && session.operator ? session.operator.username : ''),
  onSeen(id, version) {
    if (seen && seen.markSeen(id, version)) {
      inbox.render();
      search.render();
    }
  },
  onClosed() {
    inbox.setSelected(null);
    setHash(null);
  },
});

function pollAll() {
  return Promise.allSettled([inbox.refresh(), convo.refresh()]);
}

const live = createLive({
  getToken: () => (session ? session.token : null),
  onMode: setLiveMode,
  onUpdate(msg) {
    const summary = msg.conversation;
    if (summary && typeof summary === 'object' && summary.conversation_id) {
      inbox.upsert(summary);
      search.update(summary);
      convo.handleSummary(summary);
    } else if (msg.conversation_id) {
      // A frame without a summary still tells us something changed.
      convo.handleSummary({ conversation_id: msg.conversation_id, version: msg.version });
      inbox.refresh().catch(() => {});
    }
  },
  onDelta: (msg) => convo.handleDelta(msg),
  poll: pollAll,
  onConnected: pollAll,
  onAuthFailure: () => expireSession(),
});

// ------------------------------------------------------------- navigation

function openConversation(id) {
  if (!id) return;
  inbox.setSelected(id);
  search.setSelected(id);
  setHash(id);
  const summary = inbox.get(id) || search.get(id);
  traced('open conversation', () => convo.open(id, summary), { 'inbox.conversation_id': id });
}

function activeList() {
  return search.active() ? $('search-results') : $('conversation-list');
}

function move(delta, { focusList }) {
  const ids = search.active() ? search.order() : inbox.order();
  if (!ids.length) return;
  const current = ids.indexOf(convo.openId());
  let next;
  if (delta === Infinity) next = ids.length - 1;
  else if (delta === -Infinity || current === -1) next = 0;
  else next = Math.min(ids.length - 1, Math.max(0, current + delta));
  if (next !== current) openConversation(ids[next]);
  const item = findListItem(activeList(), ids[next]);
  if (item) {
    item.scrollIntoView({ block: 'nearest' });
    if (focusList) item.focus({ preventScroll: true });
  }
}

function toggleHelp(open) {
  const help = $('shortcuts-help');
  const show = open === undefined ? help.hidden : open;
  if (show === !help.hidden) return;
  help.hidden = !show;
  if (show) {
    helpReturnFocus = document.activeElement;
    $('shortcuts-close').focus();
  } else if (helpReturnFocus && document.contains(helpReturnFocus)) {
    helpReturnFocus.focus();
  }
}

initKeyboard({
  enabled: () => running,
  listEl: document.querySelector('.inbox-pane .list-scroll'),
  replyEl: $('reply-body'),
  move,
  focusReply: () => convo.focusReply(),
  focusSearch: () => search.focus(),
  leaveReply() {
    const item = findListItem(activeList(), convo.openId());
    if (item) item.focus();
    else $('reply-body').blur();
  },
  helpOpen: () => !$('shortcuts-help').hidden,
  toggleHelp,
});

for (const list of [$('conversation-list'), $('search-results')]) {
  list.addEventListener('click', (event) => {
    const item = event.target instanceof Element ? event.target.closest('[data-conversation-id]') : null;
    if (item) openConversation(item.dataset.conversationId);
  });
  list.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter' && event.key !== ' ') return;
    const item = event.target instanceof Element ? event.target.closest('[data-conversation-id]') : null;
    if (!item) return;
    event.preventDefault();
    openConversation(item.dataset.conversationId);
    convo.focusReply();
  });
}
$('shortcuts-button').addEventListener('click', () => toggleHelp());
$('shortcuts-close').addEventListener('click', () => toggleHelp(false));
$('shortcuts-help').addEventListener('click', (event) => {
  if (event.target === $('shortcuts-help')) toggleHelp(false);
});
// The dialog is modal and has a single control, so Tab simply stays on it.
$('shortcuts-help').addEventListener('keydown', (event) => {
  if (event.key !== 'Tab') return;
  event.preventDefault();
  $('shortcuts-close').focus();
});

// ---------------------------------------------------------- session lifecycle

function showLogin(message) {
  $('app').hidden = true;
  $('login-screen').hidden = false;
  $('login-error').textContent = message || '';
  $('password').value = '';
  const user = $('username');
  if (!user.value && session && session.operator) user.value = session.operator.username || '';
  (user.value ? $('password') : user).focus();
}

async function startApp() {
  session = api.getSession();
  if (!session) {
    showLogin('');
    return;
  }
  const operator = session.operator || { username: 'operator', display_name: 'Operator' };
  seen = createSeenStore();
  $('operator-name').textContent = operator.display_name || operator.username || '';
  $('login-screen').hidden = true;
  $('app').hidden = false;
  running = true;

  inbox.reset();
  convo.reset();
  live.start();
  try {
    await inbox.refresh();
  } catch {
    return;
  }
  const wanted = hashConversationId();
  if (running && wanted) openConversation(wanted);
}

function stopApp() {
  running = false;
  live.stop();
  convo.reset();
  inbox.reset();
  search.clear();
  clearNotices();
  toggleHelp(false);
  setLiveMode('connecting');
}

function expireSession() {
  if (!running) return;
  api.clearSession();
  stopApp();
  showLogin('Session expired, please sign in again');
}

api.onUnauthorized(expireSession);

$('sign-out').addEventListener('click', () => {
  api.clearSession();
  stopApp();
  setHash(null);
  session = null;
  $('username').value = '';
  showLogin('');
});

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const username = $('username').value.trim();
  const password = $('password').value;
  const errorEl = $('login-error');
  if (!username || !password) {
    errorEl.textContent = 'Enter your username and password.';
    return;
  }
  const button = $('login-submit');
  button.disabled = true;
  button.textContent = 'Signing in…';
  errorEl.textContent = '';
  try {
    await traced('log in', () => api.login(username, password), { 'enduser.id': username });
    $('password').value = '';
    await startApp();
  } catch (err) {
    errorEl.textContent = (err && err.detail) || 'Sign-in failed';
    $('password').select();
  } finally {
    button.disabled = false;
    button.textContent = 'Sign in';
  }
});

window.addEventListener('hashchange', () => {
  const id = hashConversationId();
  if (running && id && id !== convo.openId()) openConversation(id);
});

setInterval(() => {
  if (running) refreshRelativeTimes();
}, TIME_REFRESH_MS);

// Tracing starts first, so the page load and the first actions are recorded too.
await startTracing();

// A token past its expiry would only bounce off the API; go straight to the login form.
const existing = api.getSession();
if (existing && existing.expiresAt && existing.expiresAt <= Date.now()) {
  api.clearSession();
  session = existing;
  showLogin('Session expired, please sign in again');
} else {
  startApp();
}
