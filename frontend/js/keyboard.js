// Global keyboard shortcuts. Single-letter keys must never fire while the
// operator is typing, so anything editable swallows them.

function isEditable(target) {
  if (!(target instanceof Element)) return false;
  if (target.isContentEditable) return true;
  if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
  if (target instanceof HTMLInputElement) {
    return !['button', 'checkbox', 'radio', 'submit', 'reset', 'range', 'color', 'file'].includes(target.type);
  }
  return false;
}

/**
 * @param {object} h
 * @param {() => boolean} h.enabled       false on the login screen
 * @param {HTMLElement} h.listEl
 * @param {HTMLElement} h.replyEl
 * @param {(delta: number, opts: {focusList: boolean}) => void} h.move   delta: ±1, or ±Infinity for Home/End
 * @param {() => void} h.focusReply
 * @param {() => void} h.focusSearch
 * @param {() => void} h.leaveReply
 * @param {() => boolean} h.helpOpen
 * @param {(open?: boolean) => void} h.toggleHelp
 */
export function initKeyboard(h) {
  document.addEventListener('keydown', (event) => {
    if (!h.enabled() || event.defaultPrevented || event.isComposing) return;
    const target = event.target;

    if (h.helpOpen()) {
      if (event.key === 'Escape' || (event.key === '?' && !isEditable(target))) {
        event.preventDefault();
        h.toggleHelp(false);
      }
      return;
    }

    if (isEditable(target)) {
      if (event.key === 'Escape' && target === h.replyEl) {
        event.preventDefault();
        h.leaveReply();
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;

    const inList = h.listEl.contains(target);
    switch (event.key) {
      case 'j':
      case 'J':
        event.preventDefault();
        h.move(1, { focusList: inList });
        break;
      case 'k':
      case 'K':
        event.preventDefault();
        h.move(-1, { focusList: inList });
        break;
      case 'ArrowDown':
      case 'ArrowUp':
        if (!inList) return;
        event.preventDefault();
        h.move(event.key === 'ArrowDown' ? 1 : -1, { focusList: true });
        break;
      case 'Home':
      case 'End':
        if (!inList) return;
        event.preventDefault();
        h.move(event.key === 'End' ? Infinity : -Infinity, { focusList: true });
        break;
      case 'r':
      case 'R':
        event.preventDefault();
        h.focusReply();
        break;
      case '/':
        event.preventDefault();
        h.focusSearch();
        break;
      case '?':
        event.preventDefault();
        h.toggleHelp(true);
        break;
      default:
        break;
    }
  });
}
