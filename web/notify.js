// Live notifications: one EventSource per signed-in tab on /protected/notification/notify, a
// store keyed by id (the stream replays unread ones on connect, so duplicates are merged), the
// unread badge in the header, and a change event the notifications view listens to.

import { notifications as api, notification, has } from './endpoints.js';
import { get, ApiError } from './api.js';
import { announce } from './ui.js';

const store = new Map();
let source = null;
let retryTimer = null;
export const events = new EventTarget();

export function all() {
  return [...store.values()].sort((a, b) => Number(b.id) - Number(a.id) || String(b.createdAt).localeCompare(String(a.createdAt)));
}

/** Unread, counting only what this session may mark read: a sign-in alert is news to the
 *  devices signed in before the session it reports, not to that session or newer ones. */
export function unread() {
  return all().filter((n) => !n.read && n.canMarkRead).length;
}

export function merge(list, { live = false } = {}) {
  for (const raw of list) {
    const n = 'createdAt' in raw ? raw : notification(raw);
    const isNew = !store.has(n.id);
    store.set(n.id, { ...store.get(n.id), ...n });
    if (live && isNew && !n.read && n.canMarkRead) {
      announce(`New notification: ${n.message}`);
      events.dispatchEvent(new CustomEvent('live', { detail: n }));
    }
  }
  changed();
}

/** Calls `fn` for each live notification of one of `kinds` while `root` is on screen. */
export function onLive(root, kinds, fn) {
  const listener = (ev) => {
    if (!root.isConnected) return events.removeEventListener('live', listener);
    if (kinds.includes(ev.detail.kind)) fn(ev.detail);
  };
  events.addEventListener('live', listener);
}

export function markRead(id) {
  const n = store.get(String(id));
  if (n) n.read = true;
  changed();
}

export function markAllRead() {
  for (const n of store.values()) if (n.canMarkRead) n.read = true;
  changed();
}

/** Redraws at most once per 50 ms: a stream replaying hundreds of unread notifications on
 *  connect arrives as hundreds of events, and a redraw of the whole list for each one froze the
 *  page (600 unread: 20 s). */
let pending = null;
function changed() {
  if (pending) return;
  pending = setTimeout(() => {
    pending = null;
    renderBadge();
    events.dispatchEvent(new Event('change'));
  }, 50);
}

function renderBadge() {
  const badge = document.getElementById('notif-badge');
  const num = document.getElementById('notif-count');
  if (!badge || !num) return;
  const count = unread();
  num.textContent = count > 99 ? '99+' : String(count);
  badge.hidden = count === 0;
}

export async function start() {
  stop();
  if (!(await has(api.streamPath))) return;
  connect();
}

function connect() {
  source = new EventSource(api.streamPath, { withCredentials: true });
  source.addEventListener('notification', (ev) => {
    try {
      merge([JSON.parse(ev.data)], { live: true });
    } catch {
      // A malformed event is skipped; the next reconnect replays from the last good id.
    }
  });
  source.addEventListener('open', () => document.body.classList.remove('stream-down'));
  source.addEventListener('error', () => {
    // The browser retries by itself while the stream is CONNECTING; once CLOSED (e.g. signed
    // out, server restarting) it gives up, so try again a little later.
    if (source && source.readyState === EventSource.CLOSED) {
      document.body.classList.add('stream-down');
      source = null;
      retryTimer = setTimeout(retry, 10000);
    }
  });
}

/** Reconnects unless the session has ended: an EventSource does not say why it closed, so one
 *  request asks (a 401 there signs the page out, which stops the stream for good). */
async function retry() {
  try {
    await get('/protected/user/sessionDetail');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
  }
  if (!source) connect();
}

export function stop() {
  clearTimeout(retryTimer);
  clearTimeout(pending);
  pending = null;
  if (source) source.close();
  source = null;
  store.clear();
  renderBadge();
}
