// A doctor's side: their patients, what one patient shares with them, everything shared with
// them with the time left, and registering a patient at the clinic.

import { users, files } from '../endpoints.js';
import { h, field, onSubmit, fill, empty, announce, timeEl, fmtLeft, badge, fmtSize } from '../ui.js';
import { phoneField } from './auth.js';
import { openFile, REPORT_LABEL } from './files.js';
import { onLive } from '../notify.js';

/**
 * Reloads a list when what is shared with the doctor changes while it is on screen: a new share,
 * a revoke, or the end of the connection (which ends every share). Focus stays put (ui.fill).
 */
function reloadOnChange(root, load) {
  onLive(root, ['file_shared', 'file_access_granted', 'file_access_revoked', 'connection_ended'], load);
}

export function patients(ctx) {
  const slot = h('div');
  ctx.root.append(h('div', { class: 'actions' }, h('a', { href: '#/register-patient', class: 'button secondary' }, 'Register a patient')), slot);
  const load = () => fill(slot, async () => {
    const list = (await users.connections()).filter((c) => c.peer.role === 'patient');
    if (!list.length) return empty('No patients are connected with you yet. Patients send you a request; it appears under Requests.');
    return h('ul', { class: 'cards' }, list.map((c) => h('li', { class: 'card row', 'data-key': c.id },
      h('div', {}, h('h2', { class: 'h3' }, c.peer.name), h('p', { class: 'meta' }, c.peer.phone || '', c.peer.phone ? ' · ' : '', 'connected ', timeEl(c.createdAt))),
      h('a', { href: `#/patients/${encodeURIComponent(c.peer.id)}`, class: 'button secondary', 'data-ctl': 'files', 'aria-label': `Shared files from ${c.peer.name}` }, 'Shared files'))));
  }, 'Loading your patients…');
  load();
  onLive(slot, ['connection_accepted', 'connection_ended'], load);
}

/**
 * Opening goes through this grant's or share's own access id, so once the patient revokes it the
 * answer says so (410 "taken back") instead of a bare "not found".
 */
function openButton(f) {
  const btn = h('button', { type: 'button', class: 'primary', 'data-ctl': 'open', 'aria-label': `Open ${f.name}` }, 'Open');
  btn.addEventListener('click', () => openFile(
    () => (f.accessId ? files.sharedUrl(f.accessId) : files.url(f.id, false)), btn));
  return btn;
}

function sharedItem(f, withPatient) {
  const end = f.expiresAt ? [' ', h('span', { class: 'meta' }, '(until ', timeEl(f.expiresAt), ')')] : null;
  return h('li', { class: 'card row', 'data-file': f.id, 'data-key': f.accessId || f.id },
    h('div', {},
      h('h2', { class: 'h3' }, f.name),
      h('p', { class: 'meta' },
        withPatient && f.patient ? `From ${f.patient.name} · ` : '',
        [REPORT_LABEL[f.reportType], Number.isFinite(f.size) ? fmtSize(f.size) : null].filter(Boolean).join(' · '),
        ' ', badge(f.kind === 'share' ? '30-minute share' : 'Shared', f.kind === 'share' ? 'warn' : ''), ' ',
        h('span', { class: 'time-left', 'data-end': f.expiresAt || '' }, fmtLeft(f.expiresAt)), end),
      f.tags.length ? h('ul', { class: 'tags', 'aria-label': 'Tags' }, f.tags.map((t) => h('li', {}, badge(t)))) : null),
    openButton(f));
}

/** Keeps "n min left" current while the list is on screen. */
function tickTimes(root) {
  const t = setInterval(() => {
    if (!root.isConnected) return clearInterval(t);
    for (const el of root.querySelectorAll('.time-left[data-end]')) if (el.dataset.end) el.textContent = fmtLeft(el.dataset.end);
  }, 30000);
}

export function patientFiles(ctx) {
  const slot = h('div');
  ctx.root.append(h('p', {}, h('a', { href: '#/patients' }, 'All patients')), slot);
  const load = () => fill(slot, async () => {
    const [list, conns] = await Promise.all([files.patientFiles(ctx.params.id), users.connections()]);
    const who = conns.find((c) => c.peer.id === ctx.params.id);
    const name = who ? who.peer.name : 'This patient';
    if (!list.length) return empty(`${name} is not sharing any files with you right now.`);
    const ul = h('ul', { class: 'cards' }, list.map((f) => sharedItem(f, false)));
    tickTimes(ul);
    return h('div', {}, h('p', {}, `What ${name} shares with you right now.`), ul);
  }, 'Loading shared files…');
  load();
  reloadOnChange(slot, load);
}

export function sharedWithMe(ctx) {
  const slot = h('div');
  ctx.root.append(h('p', {}, 'Every file patients currently share with you, and how long you can still open it.'), slot);
  const load = () => fill(slot, async () => {
    const list = await files.sharedWithMe();
    if (!list.length) return empty('Nothing is shared with you right now.');
    const ul = h('ul', { class: 'cards' }, list.map((f) => sharedItem(f, true)));
    tickTimes(ul);
    return ul;
  }, 'Loading…');
  load();
  reloadOnChange(slot, load);
}

export function registerPatient(ctx) {
  const name = field({ label: 'Patient’s full name', name: 'name', required: true, autocomplete: 'off', maxlength: 100 });
  const phone = phoneField();
  const result = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'card narrow', 'aria-label': 'Register a patient' },
    h('p', {}, 'Creates the patient’s account, already connected with you. When the patient signs in with a code on this phone, the account becomes theirs.'),
    name, phone, h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Register patient')), result);
  onSubmit(form, async (fd) => {
    const n = String(fd.get('name')).trim();
    await users.createPatient(n, phone.value());
    result.replaceChildren(h('p', { class: 'alert ok' }, `${n} is registered and connected with you.`));
    announce(`${n} is registered.`);
    form.reset();
  });
  ctx.root.append(form);
}
