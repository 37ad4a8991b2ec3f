// The search box above the inbox list. Enter, or a pause of DEBOUNCE_MS while typing, searches
// every conversation on the server (PostgreSQL full-text search); Escape or "Clear" ends it.
// While a query is active its results replace the list, best match first, each with the
// excerpt that matched. Everything from the server goes in as text (views.js).

import * as api from './api.js';
import { traced } from './tracing.js';
import { renderConversationList } from './views.js';

const DEBOUNCE_MS = 300;
const MAX_QUERY = 200;

/**
 * @param {object} o
 * @param {object} o.refs  form, input, statusEl, summaryEl, clearEl, resultsEl, inboxEl
 * @param {(summary) => boolean} o.isUnread
 * @param {(items: object[]) => void} o.onItems   result rows from the server
 */
export function createSearch({ refs, isUnread, onItems }) {
  let timer = null;
  let active = null; // { query, items, state: 'searching' | 'done' | 'failed', detail }
  let selectedId = null;
  let generation = 0;

  function quoted(query) {
    return `“${query}”`;
  }

  function render() {
    const on = active !== null;
    refs.resultsEl.hidden = !on;
    refs.statusEl.hidden = !on;
    refs.inboxEl.hidden = on;
    if (!on) {
      refs.resultsEl.replaceChildren();
      return;
    }
    renderConversationList(refs.resultsEl, active.items, { selectedId, isUnread });
    const n = active.items.length;
    if (active.state === 'searching') refs.summaryEl.textContent = `Searching for ${quoted(active.query)}…`;
    else if (active.state === 'failed') refs.summaryEl.textContent = `Search failed: ${active.detail}`;
    else refs.summaryEl.textContent = `${n} result${n === 1 ? '' : 's'} for ${quoted(active.query)}`;
  }

  async function run(text) {
    clearTimeout(timer);
    const query = String(text || '').trim().slice(0, MAX_QUERY);
    if (!query) {
      clear();
      return;
    }
    const gen = ++generation;
    active = { query, items: active ? active.items : [], state: 'searching' };
    render();
    try {
      // the query text stays out of the span: it may hold customer data
      const page = await traced('search conversations', () => api.searchConversations(query));
      if (gen !== generation) return;
      const items = ((page && page.items) || []).filter(
        (s) => s && typeof s === 'object' && typeof s.conversation_id === 'string',
      );
      onItems(items);
      active = { query, items, state: 'done' };
    } catch (err) {
      if (gen !== generation) return;
      if (err && err.status === 401) return;
      active = { query, items: [], state: 'failed', detail: (err && err.detail) || 'unknown error' };
    }
    render();
  }

  function clear() {
    clearTimeout(timer);
    generation += 1;
    refs.input.value = '';
    active = null;
    render();
  }

  refs.form.addEventListener('submit', (event) => {
    event.preventDefault();
    run(refs.input.value);
  });
  refs.input.addEventListener('input', () => {
    clearTimeout(timer);
    if (!refs.input.value.trim()) {
      if (active) clear();
      return;
    }
    timer = setTimeout(() => run(refs.input.value), DEBOUNCE_MS);
  });
  refs.input.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape') return;
    event.preventDefault();
    clear();
  });
  refs.clearEl.addEventListener('click', () => {
    clear();
    refs.input.focus();
  });

  return {
    active: () => active !== null,
    order: () => (active ? active.items.map((s) => s.conversation_id) : []),
    get: (id) => (active ? active.items.find((s) => s.conversation_id === id) || null : null),
    render,
    clear,
    focus() {
      refs.input.focus();
      refs.input.select();
    },
    setSelected(id) {
      selectedId = id;
      if (active) render();
    },
    /** A pushed inbox row: refresh a result's row, keeping its excerpt and rank. */
    update(summary) {
      if (!active) return;
      const i = active.items.findIndex((s) => s.conversation_id === summary.conversation_id);
      if (i < 0 || Number(active.items[i].version) > Number(summary.version)) return;
      const { headline, rank } = active.items[i];
      active.items[i] = { ...summary, headline, rank };
      render();
    },
  };
}
