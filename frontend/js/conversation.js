// The open conversation: loading, version-aware refresh, optimistic sending,
// per-conversation drafts and the "Use suggestion" hand-off to the reply box.

import * as api from './api.js';
import { notify } from './notice.js';
import { traced } from './tracing.js';
import {
  renderActivity,
  renderConversationHeader,
  renderLifecycleControls,
  renderMessages,
  renderResolutionSummary,
  setIntentOptions,
} from './views.js';

const BOTTOM_SLACK_PX = 48;
// If no push arrives for an accepted message (missed frame, slow pipeline), look again.
const CONFIRM_CHECKS_MS = [1500, 4000, 10000, 20000];

// crypto.randomUUID only exists in secure contexts; the gateway may be served over plain http.
function uuid4() {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// Count code points, like the server's len(), not UTF-16 units.
export function bodyLength(text) {
  let n = 0;
  for (const _ of text) n += 1;
  return n;
}

/**
 * @param {object} o
 * @param {object} o.refs  view, emptyEl, loadingEl, contentEl, customerEl, subjectEl,
 *                         messagesEl, form, replyEl, sendEl, counterEl, errorEl,
 *                         statusEl, assigneeEl, assignEl, summaryEl, activityListEl, activityCountEl
 * @param {() => string} o.ownUsername
 * @param {(id: string, version: number) => void} o.onSeen
 * @param {(id: string|null) => void} o.onClosed   conversation vanished (404)
 */
export function createConversationView({ refs, ownUsername, onSeen, onClosed }) {
  let openId = null;
  let conversation = null;
  let freshOpen = false;
  let sending = false;
  let inflight = null; // { id, promise }
  let rerun = false;
  let lastFailed = null; // { id, body, messageId } after a network/5xx failure, for idempotent retry
  const drafts = new Map();
  const pending = new Map(); // conversation id -> [optimistic messages]
  const writing = new Map(); // message id -> { revision, seq, text } of a reply being written

  function showState(state) {
    refs.emptyEl.hidden = state !== 'empty';
    refs.loadingEl.hidden = state !== 'loading';
    refs.contentEl.hidden = state !== 'content';
  }

  function atBottom() {
    const m = refs.messagesEl;
    return m.scrollHeight - m.scrollTop - m.clientHeight <= BOTTOM_SLACK_PX;
  }

  function scrollToBottom() {
    refs.messagesEl.scrollTop = refs.messagesEl.scrollHeight;
  }

  function pendingFor(id) {
    return pending.get(id) || [];
  }

  // A draft shows only while its revision is being made: once the insight is final (or a
  // newer revision started), the draft is dropped and never shown as the suggestion.
  function withDraft(msg) {
    const draft = writing.get(msg.message_id);
    const insight = msg.insight;
    if (!draft || !insight) return msg;
    const revision = Number(insight.revision || 1);
    if (revision === draft.revision && insight.status === 'processing') return { ...msg, draft: draft.text };
    // The read model may lag behind the draft's revision; a final or newer one ends the draft.
    if (revision > draft.revision || (revision === draft.revision && insight.status !== 'processing')) {
      writing.delete(msg.message_id);
    }
    return msg;
  }

  function renderBody({ stickToBottom }) {
    if (!conversation) return;
    const messages = Array.isArray(conversation.messages) ? conversation.messages.map(withDraft) : [];
    renderMessages(refs.messagesEl, [...messages, ...pendingFor(openId)], { ownUsername: ownUsername() });
    if (stickToBottom) scrollToBottom();
  }

  function apply(data) {
    const first = freshOpen;
    const stick = first || atBottom();
    freshOpen = false;
    conversation = data;

    const known = new Set((data.messages || []).map((m) => m.message_id));
    const still = pendingFor(openId).filter((p) => !known.has(p.message_id));
    if (still.length) pending.set(openId, still);
    else pending.delete(openId);

    renderConversationHeader(refs.customerEl, refs.subjectEl, data);
    renderLifecycle(data);
    showState('content');
    renderBody({ stickToBottom: stick });
    onSeen(openId, Number(data.version));
  }

  async function load(id) {
    let data;
    try {
      data = await api.getConversation(id);
    } catch (err) {
      if (openId !== id || err.status === 401) return;
      if (err.status === 404) {
        notify(`Conversation not found: ${err.detail}`);
        close();
        onClosed(id);
        return;
      }
      notify(`Could not load the conversation: ${err.detail}`);
      if (!conversation) showState('empty');
      return;
    }
    if (openId !== id || !data || typeof data !== 'object') return;
    // An older poll answering after a newer push must not roll the view back.
    if (conversation && Number(data.version) < Number(conversation.version)) return;
    apply(data);
  }

  function refresh() {
    const id = openId;
    if (!id) return Promise.resolve();
    if (inflight && inflight.id === id) {
      rerun = true;
      return inflight.promise;
    }
    const entry = { id, promise: null };
    const run = async () => {
      try {
        do {
          rerun = false;
          await load(id);
        } while (rerun && openId === id);
      } finally {
        if (inflight === entry) inflight = null;
      }
    };
    inflight = entry;
    entry.promise = run();
    return entry.promise;
  }

  function saveDraft() {
    if (!openId) return;
    if (refs.replyEl.value) drafts.set(openId, refs.replyEl.value);
    else drafts.delete(openId);
  }

  // The taxonomy, fetched once beside the first conversation; its panels are drawn again
  // with the choices when it arrives.
  let intentsLoaded = null;
  function ensureIntents() {
    if (intentsLoaded) return;
    intentsLoaded = api
      .listIntents()
      .then((list) => {
        setIntentOptions([...list.map((i) => i.name), 'other']);
        renderBody({ stickToBottom: false });
      })
      .catch(() => {
        intentsLoaded = null;
      });
  }

  async function correctIntent(messageId, select) {
    const id = openId;
    const intent = select.value;
    if (!id || intent === select.dataset.current) return;
    select.disabled = true;
    try {
      await api.correctIntent(id, messageId, intent);
      notify(`Intent corrected to ${intent}: the AI learns it`);
      refresh();
    } catch (err) {
      if (err.status === 401) return;
      notify(`Could not correct the intent: ${err.detail}`);
      select.value = select.dataset.current;
      select.disabled = false;
    }
  }

  function open(id, summary) {
    if (id === openId) return;
    saveDraft();
    openId = id;
    conversation = null;
    freshOpen = true;
    rerun = false;
    refs.messagesEl.replaceChildren();
    refs.errorEl.textContent = '';
    refs.replyEl.value = drafts.get(id) || '';
    if (summary) {
      // The list already knows who this is; show it at once instead of a blank pane.
      renderConversationHeader(refs.customerEl, refs.subjectEl, summary);
      renderLifecycle(summary);
      showState('content');
      refs.messagesEl.append(Object.assign(document.createElement('p'), {
        className: 'empty-state messages-loading',
        textContent: 'Loading messages…',
      }));
    } else {
      showState('loading');
    }
    updateComposer();
    ensureIntents();
    return refresh();
  }

  function close() {
    saveDraft();
    openId = null;
    conversation = null;
    refs.messagesEl.replaceChildren();
    showState('empty');
    updateComposer();
  }

  function reset() {
    close();
    drafts.clear();
    pending.clear();
    writing.clear();
    lastFailed = null;
    refs.replyEl.value = '';
    updateComposer();
  }

  function renderLifecycle(data) {
    renderLifecycleControls(refs, data, ownUsername());
    renderResolutionSummary(refs.summaryEl, data);
    renderActivity(refs.activityListEl, refs.activityCountEl, data.events);
  }

  // Status and assignee changes are accepted at once and applied by messaging; the push (or
  // these checks, when no push comes) brings the new state.
  async function change(body, what) {
    const id = openId;
    if (!id) return;
    refs.statusEl.disabled = true;
    refs.assignEl.disabled = true;
    try {
      await api.changeConversation(id, body);
      for (const delay of CONFIRM_CHECKS_MS.slice(0, 2)) {
        setTimeout(() => {
          if (openId === id) refresh();
        }, delay);
      }
    } catch (err) {
      if (err.status === 401) return;
      notify(`Could not ${what}: ${err.detail}`);
      refs.statusEl.value = refs.statusEl.dataset.current || 'open';
    } finally {
      refs.statusEl.disabled = false;
      refs.assignEl.disabled = false;
    }
  }

  function handleDelta(delta) {
    if (!openId || delta.conversation_id !== openId || typeof delta.text !== 'string') return;
    const revision = Number(delta.revision);
    const seq = Number(delta.seq);
    const known = writing.get(delta.message_id);
    if (known && (known.revision > revision || (known.revision === revision && known.seq >= seq))) return;
    writing.set(delta.message_id, { revision, seq, text: delta.text });
    renderBody({ stickToBottom: atBottom() });
  }

  function handleSummary(summary) {
    if (!openId || summary.conversation_id !== openId) return;
    const shown = conversation ? Number(conversation.version) : -1;
    if (Number(summary.version) > shown) refresh();
  }

  function updateComposer() {
    const text = refs.replyEl.value;
    const n = bodyLength(text);
    const over = n > api.MAX_BODY;
    refs.counterEl.textContent = `${n} / ${api.MAX_BODY}`;
    refs.counterEl.classList.toggle('over', over);
    refs.replyEl.setAttribute('aria-invalid', over ? 'true' : 'false');
    refs.counterEl.title = over ? `${n - api.MAX_BODY} characters over the limit` : '';
    refs.sendEl.disabled = !openId || sending || over || !text.trim();
    refs.sendEl.textContent = sending ? 'Sending…' : 'Send';
  }

  function scheduleConfirmChecks(id, messageId) {
    for (const delay of CONFIRM_CHECKS_MS) {
      setTimeout(() => {
        if (openId === id && pendingFor(id).some((p) => p.message_id === messageId)) refresh();
      }, delay);
    }
  }

  async function send() {
    const id = openId;
    const text = refs.replyEl.value;
    const body = text.trim();
    if (!id || sending || !body || bodyLength(text) > api.MAX_BODY) return;

    const messageId =
      lastFailed && lastFailed.id === id && lastFailed.body === body ? lastFailed.messageId : uuid4();
    const optimistic = {
      message_id: messageId,
      author_role: 'operator',
      author_id: ownUsername(),
      body,
      pending: true,
    };
    pending.set(id, [...pendingFor(id).filter((p) => p.message_id !== messageId), optimistic]);
    refs.errorEl.textContent = '';
    sending = true;
    updateComposer();
    renderBody({ stickToBottom: true });

    try {
      await api.sendMessage(id, messageId, body);
      lastFailed = null;
      // Only clear what was sent; the operator may have kept typing or switched conversations.
      if (openId === id && refs.replyEl.value === text) refs.replyEl.value = '';
      else if (drafts.get(id) === text) drafts.delete(id);
      scheduleConfirmChecks(id, messageId);
    } catch (err) {
      const rest = pendingFor(id).filter((p) => p.message_id !== messageId);
      if (rest.length) pending.set(id, rest);
      else pending.delete(id);
      if (openId === id) renderBody({ stickToBottom: false });
      if (err.status === 401) return;
      // 4xx: the server looked at it and said no, so a retry is a new message.
      lastFailed = err.status >= 400 && err.status < 500 ? null : { id, body, messageId };
      if (openId === id) refs.errorEl.textContent = err.detail;
      notify(`Message not sent: ${err.detail}`);
    } finally {
      sending = false;
      updateComposer();
    }
  }

  function useSuggestion(messageId) {
    if (!conversation) return;
    const msg = (conversation.messages || []).find((m) => m.message_id === messageId);
    const text = msg && msg.insight && typeof msg.insight.suggested_reply === 'string' ? msg.insight.suggested_reply : '';
    if (!text) return;
    const box = refs.replyEl;
    box.focus();
    box.select();
    // insertText keeps the browser's undo stack, so Ctrl+Z brings back an overwritten draft.
    let ok = false;
    try {
      ok = document.execCommand('insertText', false, text);
    } catch {
      ok = false;
    }
    if (!ok || box.value !== text) box.value = text;
    box.setSelectionRange(box.value.length, box.value.length);
    box.scrollTop = box.scrollHeight;
    refs.errorEl.textContent = '';
    updateComposer();
  }

  async function regenerate(messageId, button) {
    const id = openId;
    if (!id) return;
    button.disabled = true;
    try {
      await api.regenerateInsight(id, messageId);
      refresh();
    } catch (err) {
      if (err.status === 401) return;
      notify(`Could not regenerate the insight: ${err.detail}`);
      button.disabled = false;
    }
  }

  // Each user action is one trace: its span is the parent of the API call it makes.
  const tracedSend = () => traced('send reply', send, { 'inbox.conversation_id': openId || '' });

  refs.form.addEventListener('submit', (event) => {
    event.preventDefault();
    tracedSend();
  });
  refs.replyEl.addEventListener('input', () => {
    refs.errorEl.textContent = '';
    updateComposer();
  });
  refs.replyEl.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      tracedSend();
    }
  });
  refs.messagesEl.addEventListener('click', (event) => {
    const button = event.target instanceof Element ? event.target.closest('.use-suggestion, .regenerate-insight') : null;
    const message = button ? button.closest('[data-message-id]') : null;
    if (!message) return;
    const messageId = message.dataset.messageId;
    if (button.classList.contains('use-suggestion')) {
      useSuggestion(messageId);
      return;
    }
    traced('regenerate insight', () => regenerate(messageId, button), {
      'inbox.conversation_id': openId || '',
      'inbox.message_id': messageId,
    });
  });

  refs.messagesEl.addEventListener('change', (event) => {
    const select = event.target instanceof Element ? event.target.closest('.intent-correct') : null;
    const message = select ? select.closest('[data-message-id]') : null;
    if (!message) return;
    traced('correct intent', () => correctIntent(message.dataset.messageId, select), {
      'inbox.conversation_id': openId || '',
      'inbox.message_id': message.dataset.messageId,
    });
  });

  refs.statusEl.addEventListener('change', () => {
    const status = refs.statusEl.value;
    if (status === refs.statusEl.dataset.current) return;
    traced('change status', () => change({ status }, 'change the status'), {
      'inbox.conversation_id': openId || '',
    });
  });
  refs.assignEl.addEventListener('click', () => {
    const assignee = refs.assignEl.dataset.action === 'unassign' ? null : ownUsername();
    traced('assign conversation', () => change({ assignee }, 'change the assignee'), {
      'inbox.conversation_id': openId || '',
    });
  });

  showState('empty');
  updateComposer();

  return {
    open,
    close,
    reset,
    refresh,
    handleSummary,
    handleDelta,
    openId: () => openId,
    focusReply() {
      if (!openId || refs.contentEl.hidden) return false;
      refs.replyEl.focus();
      return true;
    },
  };
}
