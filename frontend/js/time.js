// Relative timestamps ("2 min ago") with the absolute time kept in `title`.

const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });
const sameYearFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
const otherYearFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', year: 'numeric' });

export function parseTime(iso) {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? 0 : t;
}

export function relativeTime(iso, now = Date.now()) {
  const t = parseTime(iso);
  if (!t) return '';
  const seconds = Math.round((now - t) / 1000);
  // Small negative values are clock skew between browser and server, not the future.
  if (seconds < 45) return 'just now';
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.round(hours / 24);
  if (days === 1) return 'yesterday';
  if (days < 7) return `${days} days ago`;
  const date = new Date(t);
  const fmt = date.getFullYear() === new Date(now).getFullYear() ? sameYearFormat : otherYearFormat;
  return fmt.format(date);
}

export function fullTime(iso) {
  const t = parseTime(iso);
  return t ? fullFormat.format(new Date(t)) : '';
}

/** A <time> element that refreshRelativeTimes() keeps current. */
export function timeElement(iso, className = 'rel-time') {
  const el = document.createElement('time');
  el.className = className;
  el.dataset.relative = '';
  setTime(el, iso);
  return el;
}

export function setTime(el, iso) {
  if (el.dateTime !== iso) {
    el.dateTime = iso || '';
    el.title = fullTime(iso);
  }
  el.textContent = relativeTime(iso);
}

export function refreshRelativeTimes(root = document) {
  const now = Date.now();
  for (const el of root.querySelectorAll('time[data-relative]')) {
    el.textContent = relativeTime(el.dateTime, now);
  }
}
