// DOM rendering. Everything from the server (and above all model output) is
// untrusted, so text only ever goes in through textContent / attributes.

import { timeElement } from './time.js';
import { traceUrl } from './tracing.js';

// Render signatures live off-DOM so message bodies are not duplicated into attributes.
const signatures = new WeakMap();

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

let intentOptions = [];

/** The intents an operator may correct an insight's to (the taxonomy, then `other`). */
export function setIntentOptions(names) {
  intentOptions = names.map(String);
}

function str(value) {
  return typeof value === 'string' ? value : value == null ? '' : String(value);
}

// ---------------------------------------------------------------- inbox list

export const STATUS_LABELS = { open: 'Open', pending: 'Pending', resolved: 'Resolved' };

function listItemSignature(summary, unread) {
  return JSON.stringify([
    summary.version,
    summary.customer_id,
    summary.subject,
    summary.last_message_preview,
    summary.last_author_role,
    summary.last_activity_at,
    summary.message_count,
    summary.awaiting_reply,
    summary.latest_intent,
    summary.latest_insight_status,
    summary.status,
    summary.assignee,
    Array.isArray(summary.headline) ? summary.headline : null,
    unread,
  ]);
}

function fillListItem(item, summary, unread) {
  const top = el('div', 'conv-top');
  const dot = el('span', 'unread-dot');
  dot.append(el('span', 'visually-hidden', 'Unread: '));
  const customer = el('span', 'conv-customer', summary.customer_id);
  const time = timeElement(summary.last_activity_at, 'rel-time conv-time');
  top.append(dot, customer, time);

  const line = el('div', 'conv-line');
  const subject = str(summary.subject).trim();
  if (subject) {
    line.textContent = subject;
  } else {
    const preview = str(summary.last_message_preview);
    line.textContent = summary.last_author_role === 'operator' ? `You: ${preview}` : preview;
    line.classList.add('conv-preview');
  }
  line.title = line.textContent;

  const tags = el('div', 'conv-tags');
  if (summary.latest_intent) {
    tags.append(el('span', 'badge list-intent', summary.latest_intent));
  } else if (summary.latest_insight_status === 'processing') {
    tags.append(el('span', 'conv-ai-hint', 'AI analysing…'));
  } else if (summary.latest_insight_status === 'unavailable') {
    tags.append(el('span', 'conv-ai-hint', 'AI unavailable'));
  }
  if (summary.awaiting_reply) tags.append(el('span', 'awaiting-label', 'Awaiting reply'));
  const status = STATUS_LABELS[summary.status] ? summary.status : 'open';
  if (status !== 'open') tags.append(el('span', `status-label status-${status}`, STATUS_LABELS[status]));
  if (summary.assignee) {
    const assignee = el('span', 'conv-assignee');
    assignee.append(el('span', 'visually-hidden', 'Assigned to '), document.createTextNode(`@${str(summary.assignee)}`));
    assignee.title = `Assigned to ${str(summary.assignee)}`;
    tags.append(assignee);
  }

  const headline = Array.isArray(summary.headline) ? headlineElement(summary.headline) : null;
  if (headline) item.replaceChildren(top, line, headline, tags);
  else item.replaceChildren(top, line, tags);
}

// A search hit's excerpt: plain-text parts from the server, the matched words in <mark>.
function headlineElement(parts) {
  const line = el('div', 'conv-headline');
  for (const part of parts) {
    if (!part || typeof part.text !== 'string') continue;
    line.append(part.match ? el('mark', 'conv-match', part.text) : document.createTextNode(part.text));
  }
  line.title = line.textContent;
  return line.textContent ? line : null;
}

function createListItem(summary) {
  const item = el('div', 'conv-item');
  item.setAttribute('role', 'option');
  item.dataset.conversationId = summary.conversation_id;
  return item;
}

/**
 * Keyed update of #conversation-list: items are reused so focus, hover and
 * scroll survive the frequent pushes.
 */
export function renderConversationList(listEl, items, { selectedId, isUnread }) {
  const focusedId = listEl.contains(document.activeElement)
    ? document.activeElement.dataset.conversationId
    : null;

  const existing = new Map();
  for (const child of listEl.children) existing.set(child.dataset.conversationId, child);

  // Roving tabindex: one tab stop for the list, on the selected (or first) item.
  const tabStopId = items.some((s) => s.conversation_id === selectedId)
    ? selectedId
    : items[0] && items[0].conversation_id;

  items.forEach((summary, index) => {
    const id = summary.conversation_id;
    let item = existing.get(id);
    existing.delete(id);
    if (!item) item = createListItem(summary);

    const unread = isUnread(summary) && id !== selectedId;
    const signature = listItemSignature(summary, unread);
    if (signatures.get(item) !== signature) {
      fillListItem(item, summary, unread);
      signatures.set(item, signature);
    }
    item.classList.toggle('unread', unread);
    item.classList.toggle('awaiting', Boolean(summary.awaiting_reply));
    item.dataset.version = String(summary.version);
    const selected = id === selectedId;
    item.setAttribute('aria-selected', selected ? 'true' : 'false');
    item.tabIndex = id === tabStopId ? 0 : -1;

    const current = listEl.children[index];
    if (current !== item) listEl.insertBefore(item, current || null);
  });

  for (const stale of existing.values()) stale.remove();

  if (focusedId && document.activeElement === document.body) {
    const again = findListItem(listEl, focusedId);
    if (again) again.focus({ preventScroll: true });
  }
}

export function findListItem(listEl, id) {
  for (const child of listEl.children) {
    if (child.dataset.conversationId === id) return child;
  }
  return null;
}

// ---------------------------------------------------------- conversation view

export function formatDuration(ms) {
  const n = Number(ms);
  if (!Number.isFinite(n) || n < 0) return '';
  if (n < 100) return '<0.1 s';
  return `${(n / 1000).toFixed(1)} s`;
}

function spinner() {
  const s = el('span', 'spinner');
  s.setAttribute('aria-hidden', 'true');
  return s;
}

const STRATEGY_LABELS = {
  short_answer: { label: 'Short answer', title: 'A simple question: a direct, short reply' },
  careful_analysis: { label: 'Careful analysis', title: 'Several points: the reply answers each' },
  escalation: { label: 'Escalate', title: 'A complaint or possible fraud: hand it to a specialist team' },
};

export function createAiPanel(insight, draft) {
  const status = insight ? insight.status : 'processing';
  const panel = el('section', 'ai-panel');
  panel.dataset.status = ['processing', 'available', 'unavailable'].includes(status) ? status : 'processing';
  panel.setAttribute('aria-label', 'AI assistance');

  const head = el('div', 'ai-head');
  const stateEl = el('span', 'ai-status');
  const drafting = panel.dataset.status === 'processing' && typeof draft === 'string' && draft !== '';
  if (drafting) {
    stateEl.append(spinner(), document.createTextNode('AI is writing a reply…'));
  } else if (panel.dataset.status === 'processing') {
    stateEl.append(spinner(), document.createTextNode(insight ? 'AI is analysing this message…' : 'Waiting for AI…'));
  } else if (panel.dataset.status === 'unavailable') {
    stateEl.textContent = 'AI unavailable';
  } else {
    stateEl.textContent = 'AI assist';
  }
  head.append(stateEl);
  if (insight && insight.intent) head.append(el('span', 'badge intent-badge', insight.intent));
  const strategy = insight && STRATEGY_LABELS[insight.strategy];
  if (strategy && panel.dataset.status !== 'processing') {
    const badge = el('span', `badge strategy-badge strategy-${insight.strategy}`, strategy.label);
    badge.title = strategy.title;
    head.append(badge);
  }
  panel.append(head);

  if (drafting) {
    // Not the suggestion yet: no "Use" button until the finished insight replaces it.
    const box = el('div', 'ai-suggestion ai-draft');
    box.setAttribute('aria-busy', 'true');
    box.append(el('div', 'ai-suggestion-label', 'Draft reply · still being written'), el('p', 'ai-draft-text', draft));
    panel.append(box);
  }
  if (!insight) return panel;

  if (panel.dataset.status === 'unavailable' && insight.error) {
    panel.append(el('p', 'ai-error', insight.error));
  }
  if (insight.summary) panel.append(el('p', 'ai-summary', insight.summary));

  const reply = str(insight.suggested_reply);
  if (reply.trim()) {
    const box = el('div', 'ai-suggestion');
    box.append(
      el('div', 'ai-suggestion-label', 'Suggested reply · AI-generated, review before sending'),
      el('p', 'ai-suggested-reply', reply),
    );
    panel.append(box);
  }

  if (panel.dataset.status === 'processing') return panel;
  const list = sourcesList(insight.articles);
  if (list) panel.append(list);
  const metaParts = [];
  if (insight.model) metaParts.push(str(insight.model));
  const duration = formatDuration(insight.duration_ms);
  if (insight.duration_ms != null && duration) metaParts.push(duration);
  if (Number(insight.revision) > 1) metaParts.push(`revision ${Number(insight.revision)}`);
  const foot = el('div', 'ai-foot');
  const meta = el('span', 'ai-meta', metaParts.join(' · '));
  const link = traceUrl(insight.trace_id);
  if (link) {
    const a = el('a', 'ai-trace-link', 'trace');
    a.href = link;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    a.title = `Open trace ${insight.trace_id}: every hop from the request to this insight`;
    a.dataset.traceId = insight.trace_id;
    meta.append(metaParts.length ? ' · ' : '', a);
  }
  foot.append(meta);
  if (insight.intent && panel.dataset.status === 'available') {
    // Correcting teaches the AI: the message becomes a labelled example.
    const select = el('select', 'intent-correct');
    select.setAttribute('aria-label', 'Correct the intent');
    select.title = 'Wrong intent? Pick the right one: the AI learns it';
    const current = str(insight.intent);
    const names = intentOptions.includes(current) ? intentOptions : [current, ...intentOptions];
    for (const name of names) {
      const option = el('option', '', name);
      option.value = name;
      option.selected = name === current;
      select.append(option);
    }
    select.dataset.current = current;
    foot.append(select);
  }
  const regenerate = el('button', 'btn btn-small btn-ghost regenerate-insight', 'Regenerate');
  regenerate.type = 'button';
  regenerate.title = 'Ask the AI for a fresh analysis and suggestion';
  foot.append(regenerate);
  if (reply.trim()) {
    const use = el('button', 'btn btn-small use-suggestion', 'Use suggestion');
    use.type = 'button';
    use.title = 'Copy the suggestion into the reply box for review. Nothing is sent.';
    foot.append(use);
  }
  panel.append(foot);
  return panel;
}

/** "Sources: " and a link per help article the model consulted; null when there are none. */
function sourcesList(articles) {
  const sources = Array.isArray(articles) ? articles : [];
  if (!sources.length) return null;
  const list = el('p', 'ai-sources', 'Sources: ');
  sources.forEach((article, index) => {
    if (index) list.append(', ');
    const a = el('a', 'ai-source', article.title);
    a.href = `/api/v1/knowledge/${encodeURIComponent(article.slug)}`;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    a.dataset.slug = article.slug;
    list.append(a);
  });
  return list;
}

/** The articles behind an assistant's message: those of the customer message before it whose
 *  insight's suggested reply it is (the answer is that reply, stored as sent). */
function answerSources(messages, index) {
  const body = messages[index].body;
  for (let i = index - 1; i >= 0; i -= 1) {
    const insight = messages[i].insight;
    if (messages[i].author_role === 'customer' && insight && insight.suggested_reply === body) return insight.articles || [];
  }
  return [];
}

function messageSignature(msg, ownUsername, sources) {
  // the intent choices too: the panels are drawn again once the taxonomy has loaded
  return JSON.stringify([msg.pending ? 'p' : 'm', msg.body, msg.author_id, msg.submitted_at, msg.insight, msg.draft, ownUsername, sources, intentOptions.length]);
}

function createMessage(msg, ownUsername, sources) {
  const role = ['operator', 'assistant'].includes(msg.author_role) ? msg.author_role : 'customer';
  const article = el('article', `message message-${role}`);
  article.dataset.messageId = msg.message_id;
  article.dataset.authorRole = role;
  if (msg.pending) article.classList.add('pending');

  const bubble = el('div', 'bubble');
  const meta = el('div', 'message-meta');
  const own = role === 'operator' && msg.author_id && msg.author_id === ownUsername;
  const author = role === 'assistant' ? `AI assistant (${str(msg.author_id)}), to the customer` : msg.author_id || role;
  meta.append(el('span', 'message-author', own ? 'You' : author));
  if (msg.pending) {
    const state = el('span', 'message-state');
    state.append(spinner(), document.createTextNode('sending…'));
    meta.append(state);
  } else {
    meta.append(timeElement(msg.submitted_at || msg.created_at, 'rel-time message-time'));
  }
  bubble.append(meta, el('div', 'message-body', msg.body));
  if (role === 'assistant') {
    const list = sourcesList(sources);
    if (list) bubble.append(list);
  }
  article.append(bubble);

  if (role === 'customer') article.append(createAiPanel(msg.insight || null, msg.draft));
  return article;
}

/** Keyed update of the message list; unchanged messages keep their nodes (and text selection). */
export function renderMessages(container, messages, { ownUsername }) {
  // A replaced node takes focus with it; remember where it was to put it back.
  const active = document.activeElement;
  const focusedMessage = active && container.contains(active) ? active.closest('[data-message-id]') : null;
  const focusedId = focusedMessage ? focusedMessage.dataset.messageId : null;
  const focusedClass = active
    ? ['use-suggestion', 'regenerate-insight'].find((c) => active.classList.contains(c)) || null
    : null;

  const existing = new Map();
  for (const child of container.children) existing.set(child.dataset.messageId, child);

  messages.forEach((msg, index) => {
    const sources = msg.author_role === 'assistant' ? answerSources(messages, index) : null;
    const signature = messageSignature(msg, ownUsername, sources);
    let node = existing.get(msg.message_id);
    existing.delete(msg.message_id);
    if (!node || signatures.get(node) !== signature) {
      const fresh = createMessage(msg, ownUsername, sources);
      signatures.set(fresh, signature);
      if (node) node.replaceWith(fresh);
      node = fresh;
    }
    const current = container.children[index];
    if (current !== node) container.insertBefore(node, current || null);
  });

  for (const stale of existing.values()) stale.remove();

  if (focusedId && !container.contains(document.activeElement)) {
    const node = [...container.children].find((c) => c.dataset.messageId === focusedId);
    const target = node && focusedClass ? node.querySelector(`.${focusedClass}`) : null;
    if (target) target.focus({ preventScroll: true });
  }
}

export function renderConversationHeader(customerEl, subjectEl, conversation) {
  customerEl.textContent = str(conversation.customer_id);
  const subject = str(conversation.subject).trim();
  subjectEl.textContent = subject || 'No subject';
  subjectEl.classList.toggle('muted', !subject);
}

// ------------------------------------------------------ conversation lifecycle

/** The status select, the assignee and the "Assign to me" / "Unassign" button. */
export function renderLifecycleControls(refs, conversation, ownUsername) {
  const status = STATUS_LABELS[conversation.status] ? conversation.status : 'open';
  if (document.activeElement !== refs.statusEl) refs.statusEl.value = status;
  refs.statusEl.dataset.current = status;
  const assignee = str(conversation.assignee);
  const mine = Boolean(assignee) && assignee === ownUsername;
  refs.assigneeEl.textContent = assignee ? `Assigned to ${mine ? 'you' : assignee}` : 'Unassigned';
  refs.assigneeEl.classList.toggle('assigned', Boolean(assignee));
  refs.assigneeEl.dataset.assignee = assignee;
  refs.assignEl.textContent = mine ? 'Unassign' : 'Assign to me';
  refs.assignEl.dataset.action = mine ? 'unassign' : 'assign';
}

/** The AI summary made when the conversation was last resolved, at the top of it. */
export function renderResolutionSummary(sectionEl, conversation) {
  const summary = conversation.resolution_summary;
  if (!summary || typeof summary !== 'object') {
    sectionEl.hidden = true;
    sectionEl.replaceChildren();
    delete sectionEl.dataset.status;
    return;
  }
  const status = ['processing', 'available', 'unavailable'].includes(summary.status) ? summary.status : 'processing';
  sectionEl.dataset.status = status;
  const head = el('div', 'resolution-summary-head');
  const body = [];
  if (status === 'processing') {
    head.append(spinner(), document.createTextNode('Summarising the resolved conversation…'));
    sectionEl.setAttribute('aria-busy', 'true');
  } else {
    sectionEl.removeAttribute('aria-busy');
    head.textContent = status === 'available' ? 'Resolution summary' : 'Resolution summary unavailable';
    if (status === 'available') body.push(el('p', 'resolution-summary-text', summary.text));
    else body.push(el('p', 'resolution-summary-text resolution-summary-error', summary.error || 'No reason given'));
    const meta = [];
    if (Number(summary.resolution) > 1) meta.push(`resolve ${Number(summary.resolution)}`);
    if (summary.model) meta.push(`AI-generated by ${str(summary.model)}`);
    if (conversation.status !== 'resolved') meta.push('reopened since');
    if (meta.length) body.push(el('p', 'resolution-summary-meta', meta.join(' · ')));
  }
  sectionEl.replaceChildren(head, ...body);
  sectionEl.hidden = false;
}

function describeEvent(event) {
  const data = event && typeof event.data === 'object' && event.data ? event.data : {};
  const actor = str(event.actor) || 'someone';
  switch (event.kind) {
    case 'message':
      if (data.author_role === 'assistant') return `The AI assistant answered the customer (message ${str(data.seq)})`;
      return data.author_role === 'operator'
        ? `${actor} replied (message ${str(data.seq)})`
        : `${actor} wrote (message ${str(data.seq)})`;
    case 'handoff':
      return `The AI assistant handed the conversation to a person: ${str(data.reason)}${event.actor ? ` (${actor})` : ''}`;
    case 'insight':
      if (data.status === 'requested') return `${actor} asked for a fresh AI insight (revision ${str(data.revision)})`;
      if (data.status === 'available') {
        return `AI insight ready (revision ${str(data.revision)})${data.intent ? `: ${str(data.intent)}` : ''}`;
      }
      return `AI insight unavailable (revision ${str(data.revision)})${data.error ? `: ${str(data.error)}` : ''}`;
    case 'status': {
      const to = STATUS_LABELS[data.to] || str(data.to);
      if (data.reason) return `Status ${to} (${str(data.reason)} from ${actor})`;
      return `${actor} set the status to ${to}`;
    }
    case 'assignment':
      if (!data.to) return data.from === event.actor ? `${actor} unassigned themselves` : `${actor} unassigned ${str(data.from)}`;
      return data.to === event.actor ? `${actor} took the conversation` : `${actor} assigned it to ${str(data.to)}`;
    case 'summary':
      return data.status === 'available'
        ? 'AI resolution summary ready'
        : `AI resolution summary unavailable${data.error ? `: ${str(data.error)}` : ''}`;
    default:
      return str(event.kind);
  }
}

/** The event log, oldest first, in the collapsible "Activity" list. */
export function renderActivity(listEl, countEl, events) {
  const items = Array.isArray(events) ? events : [];
  const signature = JSON.stringify(items.map((e) => e.id));
  countEl.textContent = items.length ? `(${items.length})` : '';
  if (signatures.get(listEl) === signature) return;
  signatures.set(listEl, signature);
  listEl.replaceChildren(
    ...items.map((event) => {
      const li = el('li', `activity-item activity-${str(event.kind)}`, describeEvent(event));
      li.dataset.kind = str(event.kind);
      li.append(timeElement(event.created_at, 'rel-time'));
      return li;
    }),
  );
}
