// Per-operator "last seen version" of each conversation, kept in localStorage so
// unread marks survive reloads but are not shared between operators on one machine.

const MAX_ENTRIES = 5000;

export function createSeenStore(username) {
  const key = `inbox.seen.${username}`;
  let map = load();

  function load() {
    try {
      const parsed = JSON.parse(localStorage.getItem(key) || '{}');
      return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? parsed : {};
    } catch {
      return {};
    }
  }

  function save() {
    const ids = Object.keys(map);
    if (ids.length > MAX_ENTRIES) {
      // Insertion order approximates age; the oldest entries are the least useful.
      for (const id of ids.slice(0, ids.length - MAX_ENTRIES)) delete map[id];
    }
    try {
      localStorage.setItem(key, JSON.stringify(map));
    } catch {
      /* storage full or disabled: unread marks become session-only */
    }
  }

  // Another tab of the same operator may have opened conversations.
  window.addEventListener('storage', (event) => {
    if (event.key === key) map = load();
  });

  return {
    get(id) {
      const v = Number(map[id]);
      return Number.isFinite(v) ? v : 0;
    },
    isUnread(summary) {
      return Number(summary.version) > this.get(summary.conversation_id);
    },
    markSeen(id, version) {
      const v = Number(version);
      if (!Number.isFinite(v) || v <= this.get(id)) return false;
      delete map[id];
      map[id] = v;
      save();
      return true;
    },
  };
}
