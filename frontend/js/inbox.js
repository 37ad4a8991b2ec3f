// Inbox list state: loaded summaries, offset paging, and merging of pushes with
// (possibly older) list snapshots so a conversation's version never goes backwards.
// The unread count is the server's (`unread_count`, the whole inbox for this operator),
// corrected for the loaded rows whose unread state changed here since the snapshot.

import * as api from './api.js';
import { notify } from './notice.js';
import { parseTime } from './time.js';
import { renderConversationList } from './views.js';

const RECONCILE_MS = 1000;

function isSummary(s) {
  return s && typeof s === 'object' && typeof s.conversation_id === 'string' && s.conversation_id;
}

function newer(a, b) {
  return Number(a.version) >= Number(b.version) ? a : b;
}

function byActivityDesc(a, b) {
  const d = parseTime(b.last_activity_at) - parseTime(a.last_activity_at);
  if (d) return d;
  return a.conversation_id < b.conversation_id ? -1 : a.conversation_id > b.conversation_id ? 1 : 0;
}

/**
 * @param {object} o
 * @param {object} o.refs  listEl, emptyEl, loadingEl, loadMoreEl, countEl
 * @param {(summary) => boolean} o.isUnread
 * @param {(items: object[]) => void} o.onItems   rows from the server (with `unread`, `seen_version`)
 * @param {(summary, previous) => void} o.onChange   a push changed or added a summary
 * @param {(unreadCount: number) => void} o.onRendered
 */
export function createInbox({ refs, isUnread, onItems, onChange, onRendered }) {
  // id -> { summary, touched, counted }; `touched` lets a snapshot tell which rows were pushed
  // while it was in flight; `counted` says whether the server's unread_count included the row.
  let entries = new Map();
  let total = 0;
  let serverUnread = 0;
  let reconcileTimer = null;
  let loaded = false;
  let clock = 0;
  let selectedId = null;
  let loadingMore = false;
  // Bumped by reset() so answers to requests made for a previous session are dropped.
  let generation = 0;

  function order() {
    return [...entries.values()].map((e) => e.summary).sort(byActivityDesc);
  }

  function render() {
    const items = order();
    renderConversationList(refs.listEl, items, { selectedId, isUnread });
    refs.loadingEl.hidden = loaded;
    refs.emptyEl.hidden = !loaded || items.length > 0;
    refs.loadMoreEl.hidden = !loaded || total <= items.length;
    refs.loadMoreEl.disabled = loadingMore;
    refs.loadMoreEl.textContent = loadingMore ? 'Loading…' : `Load more (${total - items.length} older)`;
    const unread = unreadCount();
    refs.countEl.textContent = loaded ? (unread ? `${unread} unread · ${total} total` : `${total} total`) : '';
    onRendered(unread);
  }

  function unreadNow(summary) {
    return summary.conversation_id !== selectedId && isUnread(summary);
  }

  function unreadCount() {
    let count = serverUnread;
    for (const entry of entries.values()) count += (unreadNow(entry.summary) ? 1 : 0) - (entry.counted ? 1 : 0);
    return Math.max(0, count);
  }

  function reportError(err, what) {
    if (err && err.status === 401) return;
    notify(`Could not ${what}: ${err && err.detail ? err.detail : 'unknown error'}`);
  }

  async function fetchPages(pageCount) {
    const offsets = Array.from({ length: pageCount }, (_, i) => i * api.PAGE_SIZE);
    return Promise.all(offsets.map((offset) => api.listConversations(offset)));
  }

  /** Replace the loaded window with a fresh snapshot of the same size. */
  async function refresh() {
    const gen = generation;
    const startedAt = clock;
    const pageCount = Math.max(1, Math.ceil(entries.size / api.PAGE_SIZE));
    let pages;
    try {
      pages = await fetchPages(pageCount);
    } catch (err) {
      if (gen === generation) reportError(err, 'refresh the inbox');
      throw err;
    }
    if (gen !== generation) return;
    const next = new Map();
    for (const page of pages) {
      onItems((page && page.items) || []);
      for (const s of (page && page.items) || []) {
        if (!isSummary(s)) continue;
        const have = next.get(s.conversation_id);
        next.set(s.conversation_id, {
          summary: have ? newer(have.summary, s) : s,
          touched: startedAt,
          counted: s.unread === true,
        });
      }
    }
    for (const [id, entry] of entries) {
      const fresh = next.get(id);
      if (fresh) fresh.summary = newer(entry.summary, fresh.summary);
      else if (entry.touched > startedAt) next.set(id, { ...entry, counted: false });
    }
    entries = next;
    total = Math.max(Number(pages[0] && pages[0].total) || 0, entries.size);
    serverUnread = Math.max(0, Number(pages[0] && pages[0].unread_count) || 0);
    loaded = true;
    render();
  }

  async function loadMore() {
    if (loadingMore) return;
    const gen = generation;
    loadingMore = true;
    render();
    try {
      const page = await api.listConversations(entries.size);
      if (gen !== generation) return;
      onItems((page && page.items) || []);
      for (const s of (page && page.items) || []) {
        if (!isSummary(s)) continue;
        const have = entries.get(s.conversation_id);
        entries.set(s.conversation_id, {
          summary: have ? newer(have.summary, s) : s,
          touched: have ? have.touched : 0,
          // a row already loaded keeps what the snapshot's count said of it
          counted: have ? have.counted : s.unread === true,
        });
      }
      total = Math.max(Number(page && page.total) || 0, entries.size);
    } catch (err) {
      if (gen === generation) reportError(err, 'load more conversations');
    } finally {
      if (gen === generation) {
        loadingMore = false;
        render();
      }
    }
  }

  // A pushed row that was not loaded may or may not be in the server's count already (it was
  // beyond the loaded pages, or new): take a fresh snapshot soon, once for a burst of them.
  function scheduleReconcile() {
    if (reconcileTimer) return;
    const gen = generation;
    reconcileTimer = setTimeout(() => {
      reconcileTimer = null;
      if (gen === generation && loaded) refresh().catch(() => {});
    }, RECONCILE_MS);
  }

  function upsert(summary) {
    if (!isSummary(summary)) return;
    const have = entries.get(summary.conversation_id);
    if (have && Number(have.summary.version) > Number(summary.version)) return;
    clock += 1;
    entries.set(summary.conversation_id, { summary, touched: clock, counted: have ? have.counted : false });
    if (!have) {
      total += 1;
      scheduleReconcile();
    }
    render();
    onChange(summary, have ? have.summary : null);
  }

  function reset() {
    generation += 1;
    clearTimeout(reconcileTimer);
    reconcileTimer = null;
    entries = new Map();
    total = 0;
    serverUnread = 0;
    loaded = false;
    selectedId = null;
    loadingMore = false;
    refs.listEl.replaceChildren();
    render();
  }

  refs.loadMoreEl.addEventListener('click', loadMore);

  return {
    refresh,
    loadMore,
    upsert,
    reset,
    render,
    order: () => order().map((s) => s.conversation_id),
    get: (id) => (entries.has(id) ? entries.get(id).summary : null),
    hasMore: () => total > entries.size,
    setSelected(id) {
      selectedId = id;
      render();
    },
  };
}
