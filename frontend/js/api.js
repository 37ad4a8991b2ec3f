// HTTP client for the gateway plus the session (token + operator) it depends on.

const TOKEN_KEY = 'inbox.token';
const OPERATOR_KEY = 'inbox.operator';
const EXPIRES_KEY = 'inbox.expires_at';

export const PAGE_SIZE = 50;
export const MAX_BODY = 4000;

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

let unauthorizedHandler = () => {};

/** Called once per 401 so the app can drop the session and show the login screen. */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

export function getSession() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return null;
  const expiresAt = Number(sessionStorage.getItem(EXPIRES_KEY) || 0);
  let operator = null;
  try {
    operator = JSON.parse(sessionStorage.getItem(OPERATOR_KEY) || 'null');
  } catch {
    operator = null;
  }
  return { token, operator, expiresAt };
}

function saveSession(token, operator, expiresIn) {
  sessionStorage.setItem(TOKEN_KEY, token);
  sessionStorage.setItem(OPERATOR_KEY, JSON.stringify(operator));
  if (Number.isFinite(expiresIn)) {
    sessionStorage.setItem(EXPIRES_KEY, String(Date.now() + expiresIn * 1000));
  } else {
    sessionStorage.removeItem(EXPIRES_KEY);
  }
}

export function clearSession() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(OPERATOR_KEY);
  sessionStorage.removeItem(EXPIRES_KEY);
}

// FastAPI validation errors carry a list in `detail`; flatten it to one readable line.
function detailText(payload, status) {
  const detail = payload && payload.detail;
  if (typeof detail === 'string' && detail) return detail;
  if (Array.isArray(detail)) {
    const parts = detail.map((d) => (d && typeof d.msg === 'string' ? d.msg : '')).filter(Boolean);
    if (parts.length) return parts.join('; ');
  }
  return `Request failed (HTTP ${status})`;
}

async function request(method, path, body, { auth = true } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const session = getSession();
  if (auth && session) headers.Authorization = `Bearer ${session.token}`;

  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'Cannot reach the server. Check your connection.');
  }

  let payload = null;
  const text = await response.text();
  if (text) {
    try {
      payload = JSON.parse(text);
    } catch {
      payload = null;
    }
  }

  if (response.status === 401 && auth) {
    clearSession();
    unauthorizedHandler();
    throw new ApiError(401, 'Session expired, please sign in again');
  }
  if (!response.ok) throw new ApiError(response.status, detailText(payload, response.status));
  return payload;
}

export async function login(username, password) {
  const data = await request('POST', '/api/v1/auth/login', { username, password }, { auth: false });
  if (!data || typeof data.access_token !== 'string') {
    throw new ApiError(500, 'Unexpected response from the server');
  }
  const operator = data.operator || { username, display_name: username };
  saveSession(data.access_token, operator, Number(data.expires_in));
  return operator;
}

export function listConversations(offset = 0, limit = PAGE_SIZE) {
  const qs = new URLSearchParams({ limit: String(limit), offset: String(offset) });
  return request('GET', `/api/v1/conversations?${qs}`);
}

export function getConversation(id) {
  return request('GET', `/api/v1/conversations/${encodeURIComponent(id)}`);
}

export function sendMessage(conversationId, messageId, body) {
  return request('POST', `/api/v1/conversations/${encodeURIComponent(conversationId)}/messages`, {
    message_id: messageId,
    body,
  });
}

export function regenerateInsight(conversationId, messageId) {
  const c = encodeURIComponent(conversationId);
  const m = encodeURIComponent(messageId);
  return request('POST', `/api/v1/conversations/${c}/messages/${m}/regenerate-insight`);
}

/** The deployment's intent taxonomy: `[{name, description, escalate}]`. */
export function listIntents() {
  return request('GET', '/api/v1/intents');
}

/** Give a customer message its right intent; the AI learns it as a labelled example. */
export function correctIntent(conversationId, messageId, intent) {
  const c = encodeURIComponent(conversationId);
  const m = encodeURIComponent(messageId);
  return request('PUT', `/api/v1/conversations/${c}/messages/${m}/intent`, { intent });
}

/** Change a conversation's status and/or assignee: `{status?, assignee?}` (null unassigns). */
export function changeConversation(conversationId, change) {
  return request('PATCH', `/api/v1/conversations/${encodeURIComponent(conversationId)}`, change);
}

/** Record that this operator has seen the conversation at `version` (kept server-side). */
export function markSeen(conversationId, version) {
  return request('POST', `/api/v1/conversations/${encodeURIComponent(conversationId)}/seen`, { version });
}

/** Full-text search: `{items (best first, each with a headline), query, took_ms, …}`. */
export function searchConversations(query, limit = 50) {
  const qs = new URLSearchParams({ q: query, limit: String(limit) });
  return request('GET', `/api/v1/conversations/search?${qs}`);
}
