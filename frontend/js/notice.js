// Non-blocking toasts in #notice. Identical messages are merged so a failing
// poll loop does not stack up dozens of copies.

const DEFAULT_MS = 6000;
const ERROR_MS = 9000;

let container = null;
const active = new Map();

export function initNotice(el) {
  container = el;
}

export function notify(text, { kind = 'error', timeout } = {}) {
  if (!container || !text) return;
  const key = `${kind}:${text}`;
  const existing = active.get(key);
  if (existing) {
    clearTimeout(existing.timer);
    existing.timer = setTimeout(() => dismiss(key), timeout ?? (kind === 'error' ? ERROR_MS : DEFAULT_MS));
    return;
  }

  const toast = document.createElement('div');
  toast.className = `toast toast-${kind}`;
  toast.setAttribute('role', kind === 'error' ? 'alert' : 'status');

  const message = document.createElement('span');
  message.className = 'toast-text';
  message.textContent = text;

  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'toast-close';
  close.setAttribute('aria-label', 'Dismiss');
  close.textContent = '×';
  close.addEventListener('click', () => dismiss(key));

  toast.append(message, close);
  container.append(toast);
  const timer = setTimeout(() => dismiss(key), timeout ?? (kind === 'error' ? ERROR_MS : DEFAULT_MS));
  active.set(key, { toast, timer });
}

function dismiss(key) {
  const entry = active.get(key);
  if (!entry) return;
  clearTimeout(entry.timer);
  entry.toast.remove();
  active.delete(key);
}

export function clearNotices() {
  for (const key of [...active.keys()]) dismiss(key);
}
