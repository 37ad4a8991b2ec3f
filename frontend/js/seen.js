// Per-operator "last seen version" of each conversation. The server keeps it (one key per
// operator in the state store), so unread marks follow the operator across browsers, tabs
// and gateway replicas. This store mirrors it: list snapshots bring the server's marks
// (`seen_version`), and opening a conversation marks it at once here (optimistic) while the
// mark is sent to the server.

import * as api from './api.js';

export function createSeenStore() {
  const map = new Map();

  function get(id) {
    const v = map.get(id);
    return Number.isFinite(v) ? v : 0;
  }

  return {
    get,
    isUnread(summary) {
      return Number(summary.version) > get(summary.conversation_id);
    },
    /** Take the server's marks from list or search items; a mark never goes backwards. */
    absorb(items) {
      for (const item of items || []) {
        const v = Number(item && item.seen_version);
        if (item && typeof item.conversation_id === 'string' && Number.isFinite(v) && v > get(item.conversation_id)) {
          map.set(item.conversation_id, v);
        }
      }
    },
    /** Mark seen here now and on the server; false when it was seen at that version already. */
    markSeen(id, version) {
      const v = Number(version);
      if (!Number.isFinite(v) || v < 1 || v <= get(id)) return false;
      map.set(id, v);
      api.markSeen(id, v).catch(() => {
        /* kept here for this page; the next mark or list refresh reconciles with the server */
      });
      return true;
    },
  };
}
