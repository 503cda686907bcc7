// Patients and doctors finding each other: doctor search (by name or phone) with the verified
// badge and a request button, the connection requests of both sides, and a patient's doctors.

import { users, has } from '../endpoints.js';
import { ApiError } from '../api.js';
import {
  h, field, radios, onSubmit, fill, empty, announce, confirmDialog, timeEl, verifiedBadge, badge, errorText,
  setBusy, isBusy,
} from '../ui.js';
import { toE164 } from './auth.js';
import { onLive } from '../notify.js';

function doctorLine(d) {
  return [
    h('h2', { class: 'h3' }, d.name, ' ', verifiedBadge(d.verified)),
    h('p', { class: 'meta' }, [d.specialization, d.qualification, d.years !== null ? `${d.years} years’ experience` : null]
      .filter(Boolean).join(' · ') || 'No professional details yet'),
    d.verified ? null : h('p', { class: 'hint' }, 'Auravita has not checked this doctor’s registration yet.'),
  ];
}

export function findDoctors(ctx) {
  const by = radios({ legend: 'Search by', name: 'by', value: 'name', options: [['name', 'Name'], ['phone', 'Phone number']] });
  const q = field({ label: 'Doctor’s name or phone', name: 'name', required: true, type: 'search', autocomplete: 'off', hint: 'For a phone, include the country code, for example +91 98765 43210.' });
  const form = h('form', { class: 'card', role: 'search', 'aria-label': 'Find a doctor' },
    by, q, h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Search')));
  const results = h('section', { 'aria-label': 'Search results', 'aria-live': 'polite' });
  ctx.root.append(form, results);

  let page = 1;
  let last = null;
  /** Doctors this patient is connected with, or has a request waiting with: no second request. */
  const relations = async () => {
    const [conns, reqs] = await Promise.all([
      users.connections().catch(() => []),
      users.requests().catch(() => ({ outgoing: [] })),
    ]);
    const rel = new Map();
    for (const r of reqs.outgoing) if (r.status === 'pending') rel.set(r.peer.id, 'requested');
    for (const c of conns) rel.set(c.peer.id, 'connected');
    return rel;
  };
  const run = () => fill(results, async () => {
    const { mode, text } = last;
    let doctors = [];
    let hasMore = false;
    const rel = relations();
    if (mode === 'phone') {
      try {
        doctors = await users.searchByNumber(toE164('', text.startsWith('+') ? text : '+' + text));
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 404)) throw err;
      }
    } else {
      const d = await users.searchByName(text, page);
      doctors = d.doctors;
      hasMore = d.hasMore;
    }
    const known = await rel;
    if (!doctors.length) return empty(page > 1 ? 'No more doctors.' : 'No doctor matches that search.');
    const out = h('div', {}, mode === 'name' && (page > 1 || hasMore) ? h('p', { class: 'meta' }, `Page ${page}`) : null,
      h('ul', { class: 'cards' }, doctors.map((d) => h('li', { class: 'card row', 'data-key': d.id },
        h('div', {}, doctorLine(d)), requestButton(d, known.get(d.id))))));
    if (mode === 'name' && (page > 1 || hasMore)) out.append(pager(page, hasMore, (p) => { page = p; run(); }));
    return out;
  }, 'Searching…');

  onSubmit(form, async (fd) => {
    last = { mode: fd.get('by'), text: String(fd.get('name')).trim() };
    page = 1;
    await run();
  });
}

/** Where a doctor stands with this patient: a badge, or the button to ask. */
function relationBadge(state) {
  return state === 'connected' ? badge('Connected', 'ok') : badge('Requested', 'warn');
}

function requestButton(d, state) {
  if (state) return h('div', { class: 'row-actions' }, h('span', { 'data-ctl': 'request', tabindex: '-1' }, relationBadge(state)));
  const btn = h('button', { type: 'button', class: 'primary', 'data-ctl': 'request', 'aria-label': `Request to connect with ${d.name}` }, 'Request to connect');
  const error = h('p', { class: 'field-error', role: 'alert', hidden: true });
  const slot = h('div', { class: 'row-actions' }, btn, error);
  btn.addEventListener('click', async () => {
    if (isBusy(btn)) return;
    if (!d.verified) {
      const ok = await confirmDialog({ title: `Connect with ${d.name}?`, body: 'Auravita has not verified this doctor’s registration. Only connect if you know who they are.', confirmLabel: 'Send request' });
      btn.focus();
      if (!ok) return;
    }
    setBusy(btn, true);
    try {
      await users.requestDoctor(d.id);
      // The button is gone: focus moves to what replaced it, which says what happened.
      const sent = h('span', { 'data-ctl': 'request', tabindex: '-1' }, badge('Request sent', 'ok'));
      slot.replaceChildren(sent);
      sent.focus();
      announce(`Your request was sent to ${d.name}.`);
    } catch (err) {
      setBusy(btn, false);
      error.textContent = errorText(err);
      error.hidden = false;
    }
  });
  return slot;
}

export function pager(page, hasMore, go, total) {
  const prev = h('button', { type: 'button', class: 'secondary', disabled: page <= 1 }, 'Previous page');
  const next = h('button', { type: 'button', class: 'secondary', disabled: !hasMore }, 'Next page');
  prev.addEventListener('click', () => go(page - 1));
  next.addEventListener('click', () => go(page + 1));
  return h('nav', { class: 'pager', 'aria-label': 'Pages' }, prev,
    h('span', { class: 'meta' }, total ? `Page ${page} of ${total}` : `Page ${page}`), next);
}

export function requests(ctx) {
  const doctor = ctx.session.me.user.role === 'doctor';
  const slot = h('div');
  ctx.root.append(h('p', {}, doctor
    ? 'Patients who want to share their files with you. Accepting lets them share; it shows you nothing until they do.'
    : 'Your requests to doctors. A doctor has to accept before you can share files with them.'), slot);
  const load = () => fill(slot, async () => {
    const { incoming, outgoing } = await users.requests();
    const pendingIn = incoming.filter((r) => r.status === 'pending');
    const out = h('div', { class: 'stack' });
    if (doctor || pendingIn.length) {
      out.append(h('section', { 'aria-labelledby': 'req-in' }, h('h2', { id: 'req-in' }, 'Waiting for you'),
        pendingIn.length ? h('ul', { class: 'cards' }, pendingIn.map((r) => incomingItem(r, load))) : empty('No requests are waiting.')));
    }
    if (!doctor) {
      out.append(h('section', { 'aria-labelledby': 'req-out' }, h('h2', { id: 'req-out' }, 'Sent by you'),
        outgoing.length ? h('ul', { class: 'cards' }, outgoing.map((r) => outgoingItem(r, load)))
          : empty('You have not asked any doctor yet.', h('a', { href: '#/doctors', class: 'button primary' }, 'Find a doctor'))));
    }
    return out;
  }, 'Loading requests…');
  load();
  onLive(slot, ['connection_requested', 'connection_accepted', 'connection_rejected'], load);
}

function incomingItem(r, reload) {
  const accept = h('button', { type: 'button', class: 'primary', 'data-ctl': 'accept', 'aria-label': `Accept ${r.peer.name}` }, 'Accept');
  const reject = h('button', { type: 'button', class: 'secondary', 'data-ctl': 'decline', 'aria-label': `Decline ${r.peer.name}` }, 'Decline');
  const error = h('p', { class: 'field-error', role: 'alert', hidden: true });
  const li = h('li', { class: 'card row', 'data-key': `in:${r.id}` },
    h('div', {}, h('h3', {}, r.peer.name), r.note ? h('p', {}, `“${r.note}”`) : null, h('p', { class: 'meta' }, 'Asked ', timeEl(r.createdAt)), error),
    h('div', { class: 'row-actions' }, accept, reject));
  const act = (fn, done) => async () => {
    if (isBusy(accept) || isBusy(reject)) return;
    setBusy(accept, true);
    setBusy(reject, true);
    try {
      await fn(r.id);
      announce(done);
      await reload();
    } catch (err) {
      setBusy(accept, false);
      setBusy(reject, false);
      error.textContent = errorText(err);
      error.hidden = false;
    }
  };
  accept.addEventListener('click', act(users.accept, `You are now connected with ${r.peer.name}.`));
  reject.addEventListener('click', act(users.reject, `You declined ${r.peer.name}.`));
  return li;
}

const STATUS = { pending: ['Waiting', 'warn'], accepted: ['Accepted', 'ok'], rejected: ['Declined', 'bad'] };

function outgoingItem(r, reload) {
  const [label, kind] = STATUS[r.status] || [r.status, ''];
  const cancel = r.status === 'pending' ? h('button', { type: 'button', class: 'secondary', 'data-ctl': 'withdraw', 'aria-label': `Withdraw request to ${r.peer.name}` }, 'Withdraw') : null;
  cancel?.addEventListener('click', async () => {
    if (isBusy(cancel)) return;
    setBusy(cancel, true);
    try {
      await users.cancelRequest(r.id);
      announce('Request withdrawn.');
      await reload();
    } catch (err) {
      setBusy(cancel, false);
      announce(errorText(err), true);
    }
  });
  return h('li', { class: 'card row', 'data-key': `out:${r.id}` },
    h('div', {}, doctorLine(r.peer), h('p', { class: 'meta' }, badge(label, kind), ' · sent ', timeEl(r.createdAt))),
    cancel);
}

export function connections(ctx) {
  const slot = h('div');
  ctx.root.append(h('p', {}, 'Doctors you are connected with. You choose which files each of them can see.'), slot);
  const load = () => fill(slot, async () => {
    const list = await users.connections();
    if (!list.length) return empty('You are not connected with any doctor yet.', h('a', { href: '#/doctors', class: 'button primary' }, 'Find a doctor'));
    return h('ul', { class: 'cards' }, list.map((c) => {
      const end = h('button', { type: 'button', class: 'secondary', 'data-ctl': 'disconnect', 'aria-label': `Disconnect from ${c.peer.name}` }, 'Disconnect');
      end.addEventListener('click', async () => {
        if (isBusy(end)) return;
        const ok = await confirmDialog({ title: `Disconnect from ${c.peer.name}?`, body: 'Every file you shared with this doctor stops being shared at once.', confirmLabel: 'Disconnect', danger: true });
        end.focus();
        if (!ok) return;
        setBusy(end, true);
        try {
          await users.deleteConnection(c.id);
          announce(`You are no longer connected with ${c.peer.name}.`);
          await load();
        } catch (err) {
          setBusy(end, false);
          announce(errorText(err), true);
        }
      });
      return h('li', { class: 'card row', 'data-key': c.id }, h('div', {}, doctorLine(c.peer), h('p', { class: 'meta' }, 'Connected since ', timeEl(c.createdAt))), end);
    }));
  }, 'Loading your doctors…');
  load();
  onLive(slot, ['connection_ended', 'connection_accepted'], load);
}

export { has };
