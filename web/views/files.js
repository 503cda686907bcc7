// A patient's files: the paged list with tags, open, delete; upload with a progress bar and
// clear size/type errors before anything is sent; sharing with a connected doctor
// (permanent, until a date, 30 minutes) and revoking; the access ledger.

import { files, users, has, FILE_LIMIT_BYTES, FILE_TYPES, FILE_EXTENSIONS, PAGE_SIZE } from '../endpoints.js';
import {
  h, field, radios, onSubmit, fill, empty, announce, confirmDialog, timeEl, fmtSize, badge, errorText,
  setFieldError, clearErrors, fmtDate, fmtLeft, verifiedBadge, setBusy, isBusy,
} from '../ui.js';
import { ApiError } from '../api.js';
import { onLive } from '../notify.js';
import { pager } from './people.js';

const REPORT_TYPES = [['', 'Not set'], ['report', 'Report'], ['prescription', 'Prescription'], ['scan', 'Scan'], ['other', 'Other']];
export const REPORT_LABEL = Object.fromEntries(REPORT_TYPES.filter(([v]) => v));

/** Opens a file: asks for a short-lived link, then navigates to it (the server sends it as a download). */
export async function openFile(getUrl, btn) {
  if (isBusy(btn)) return;
  // Busy, not disabled: the button keeps keyboard focus.
  setBusy(btn, true);
  let gone = false;
  try {
    const url = await getUrl();
    location.assign(url);
    announce('Your file is downloading.');
  } catch (err) {
    announce(errorText(err), true);
    const row = btn.closest('li, tr');
    // 410: this access was revoked or ran out; 404: the file or the access is gone.
    gone = err.status === 410 || err.status === 404;
    if (row) {
      row.querySelector('.open-error')?.remove();
      row.append(h('p', { class: 'field-error open-error', role: 'alert' }, errorText(err)));
      const left = row.querySelector('.time-left');
      if (gone && left) {
        left.removeAttribute('data-end');
        left.textContent = 'No longer shared';
      }
    }
  } finally {
    setBusy(btn, false);
    if (gone) setBusy(btn, true, { progress: false });
  }
}

export function list(ctx) {
  const page = Math.max(1, Number(ctx.query.get('page')) || 1);
  const slot = h('div');
  ctx.root.append(h('div', { class: 'actions' }, h('a', { href: '#/upload', class: 'button primary' }, 'Upload a file')), slot);
  const load = () => fill(slot, async () => {
    const d = await files.list(page);
    if (!d.files.length) {
      return page > 1 ? empty('There are no files on this page.', h('a', { href: '#/files' }, 'Back to the first page'))
        : empty('You have not uploaded any files yet.', h('a', { href: '#/upload', class: 'button primary' }, 'Upload your first file'));
    }
    const pages = d.total !== null ? Math.max(1, Math.ceil(d.total / PAGE_SIZE)) : null;
    const hasMore = pages !== null ? page < pages : (d.hasMore ?? d.files.length === PAGE_SIZE);
    return h('div', {},
      d.total !== null ? h('p', { class: 'meta' }, `${d.total} file${d.total === 1 ? '' : 's'}`) : null,
      h('ul', { class: 'cards files' }, d.files.map((f) => fileItem(f, load))),
      page > 1 || hasMore ? pager(page, hasMore, (p) => ctx.navigate(`/files?page=${p}`), pages) : null);
  }, 'Loading your files…');
  load();
}

function fileItem(f, reload) {
  const open = h('button', { type: 'button', class: 'primary', 'data-ctl': 'open', 'aria-label': `Open ${f.name}` }, 'Open');
  const share = h('a', { href: `#/files/${encodeURIComponent(f.id)}/share?name=${encodeURIComponent(f.name)}`, class: 'button secondary', 'data-ctl': 'share', 'aria-label': `Share ${f.name}` }, 'Share');
  const del = h('button', { type: 'button', class: 'secondary danger-text', 'data-ctl': 'delete', 'aria-label': `Delete ${f.name}` }, 'Delete');
  open.addEventListener('click', () => openFile(() => files.url(f.id, true), open));
  del.addEventListener('click', async () => {
    if (isBusy(del)) return;
    const ok = await confirmDialog({ title: `Delete ${f.name}?`, body: 'The file and every share of it are removed. Doctors lose access at once.', confirmLabel: 'Delete file', danger: true });
    del.focus();
    if (!ok) return;
    setBusy(del, true);
    try {
      await files.remove(f.id);
      announce(`${f.name} was deleted.`);
      await reload();
    } catch (err) {
      setBusy(del, false);
      announce(errorText(err), true);
    }
  });
  return h('li', { class: 'card', 'data-key': f.id },
    h('div', { class: 'row' },
      h('div', {},
        h('h2', { class: 'h3' }, f.name),
        h('p', { class: 'meta' }, [FILE_TYPES[f.type] || f.type, Number.isFinite(f.size) ? fmtSize(f.size) : null,
          REPORT_LABEL[f.reportType], f.reportDate ? `dated ${f.reportDate}` : null].filter(Boolean).join(' · '), ' · uploaded ', timeEl(f.createdAt)),
        f.tags.length ? h('ul', { class: 'tags', 'aria-label': 'Tags' }, f.tags.map((t) => h('li', {}, badge(t)))) : null),
      h('div', { class: 'row-actions' }, open, share, del)));
}

function extension(name) {
  const m = /\.([^.]+)$/.exec(name || '');
  return m ? m[1].toLowerCase() : '';
}

/** Checks what we can before sending; the server decides the type from the bytes anyway. */
export function checkFile(file) {
  if (!file) return 'Choose a file to upload.';
  if (file.size === 0) return `${file.name} is empty.`;
  if (file.size > FILE_LIMIT_BYTES) return `${file.name} is too large to upload: files can be at most ${FILE_LIMIT_BYTES / (1024 * 1024)} MB.`;
  if (!FILE_TYPES[file.type] && !FILE_EXTENSIONS.includes(extension(file.name))) {
    return `${file.name} is not a PDF, PNG, JPEG, WebP or DICOM file, so it cannot be uploaded.`;
  }
  return null;
}

export function upload(ctx) {
  const fileField = field({ label: 'File', name: 'file', type: 'file', required: true, accept: '.pdf,.png,.jpg,.jpeg,.webp,.dcm,application/pdf,image/png,image/jpeg,image/webp,application/dicom', hint: 'PDF, PNG, JPEG, WebP or DICOM, up to 5 MB.' });
  const tags = field({ label: 'Tags', name: 'tags', hint: 'Separate tags with commas, for example: blood test, 2024.', autocomplete: 'off' });
  const type = field({ label: 'Kind of document', name: 'report_type', type: 'select', options: REPORT_TYPES, value: '' });
  const date = field({ label: 'Date of the document', name: 'report_date', type: 'date' });
  const bar = h('progress', { max: 100, value: 0, id: 'upload-progress', 'aria-label': 'Upload progress' });
  const pct = h('span', { class: 'meta' });
  const progress = h('div', { class: 'progress', hidden: true }, bar, pct);
  const cancel = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Cancel upload');
  const form = h('form', { class: 'card narrow', 'aria-label': 'Upload a file' }, fileField, tags, type, date, progress,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Upload'), cancel));
  fileField.control.addEventListener('change', () => {
    const problem = checkFile(fileField.control.files[0]);
    clearErrors(form);
    if (problem) {
      // Tied to the field (aria-invalid, aria-describedby) and said out loud at once.
      setFieldError(form, 'file', problem);
      announce(problem, true);
    }
  });
  onSubmit(form, async (fd) => {
    const file = fileField.control.files[0];
    const problem = checkFile(file);
    if (problem) {
      setFieldError(form, 'file', problem);
      fileField.control.focus();
      return;
    }
    const tagList = String(fd.get('tags') || '').split(',').map((t) => t.trim()).filter(Boolean);
    progress.hidden = false;
    bar.value = 0;
    pct.textContent = '0%';
    const job = files.upload({ file, tags: tagList, reportType: fd.get('report_type'), reportDate: fd.get('report_date') }, (f) => {
      bar.value = Math.round(f * 100);
      pct.textContent = `${Math.round(f * 100)}%`;
    });
    cancel.hidden = false;
    cancel.onclick = () => job.abort();
    try {
      await job.promise;
      announce(`${file.name} is uploaded.`);
      // Only if the upload form is still on screen: the user may have gone elsewhere meanwhile.
      if (form.isConnected) ctx.navigate('/files');
    } finally {
      cancel.hidden = true;
      if (form.isConnected) progress.hidden = true;
    }
  });
  ctx.root.append(form);
}

const UNTIL = [['permanent', 'Until I revoke it'], ['until', 'Until a date'], ['temp', 'For 30 minutes']];
const MAX_GRANT_MINUTES = 525600; // the server's limit for a grant with an end: a year
const DAY_MS = 86400000;

/** `YYYY-MM-DD` of a local date, as an <input type=date> reads and writes it. */
function isoDay(d) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

function fmtDay(day) {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(y, m - 1, d).toLocaleDateString(undefined, { dateStyle: 'long' });
}

/**
 * Minutes from now to the end of the chosen day (local midnight after it), rounded down so access
 * never runs into the next day; null when the day is not one that can be chosen.
 */
export function minutesUntilEndOf(day, now = Date.now()) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day || '');
  if (!m) return null;
  const end = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]) + 1).getTime();
  const minutes = Math.floor((end - now) / 60000);
  return minutes >= 1 ? minutes : null;
}

/** One live grant or share in words: how long it lasts, and how long is left. */
function accessTerms(a) {
  if (a.kind === 'share') {
    return ['For 30 minutes, until ', timeEl(a.expiresAt), ' · ', h('span', { class: 'time-left', 'data-end': a.expiresAt || '' }, fmtLeft(a.expiresAt))];
  }
  if (a.expiresAt) {
    return ['Until ', timeEl(a.expiresAt), ' · ', h('span', { class: 'time-left', 'data-end': a.expiresAt }, fmtLeft(a.expiresAt))];
  }
  return ['Until you revoke it'];
}

/** Groups items by `keyOf`, in the order each key first appears. */
function groupBy(items, keyOf) {
  const groups = new Map();
  for (const it of items) {
    const k = keyOf(it);
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(it);
  }
  return [...groups.values()];
}

/**
 * One doctor's live access to one file (a grant, a 30-minute share, or both) with a Revoke
 * button: revoking takes back all of it at once, as the server does.
 */
function accessItem(list, { label, withFile }, reload) {
  const { doctor, file } = list[0];
  const revoke = h('button', { type: 'button', class: 'secondary danger-text', 'data-ctl': 'revoke', 'aria-label': label(doctor, file) }, 'Revoke');
  const error = h('p', { class: 'field-error', role: 'alert', hidden: true });
  revoke.addEventListener('click', async () => {
    if (isBusy(revoke)) return;
    setBusy(revoke, true);
    error.hidden = true;
    try {
      try {
        await files.revoke(file.id, doctor.id);
        announce(`${doctor.name} can no longer open ${file.name}. Links already issued stop working within 2 minutes.`);
      } catch (err) {
        // 404: nothing live was left (it ran out, or was revoked elsewhere): the list catches up.
        if (!(err instanceof ApiError && err.status === 404)) throw err;
        announce(`${doctor.name} already had no access to ${file.name}.`);
      }
      await reload();
    } catch (err) {
      setBusy(revoke, false);
      error.textContent = errorText(err);
      error.hidden = false;
    }
  });
  return h('li', { class: 'card row access-item', 'data-key': `${file.id}:${doctor.id}`, 'data-doctor': doctor.id, 'data-file': file.id },
    h('div', {},
      h('h3', {}, doctor.name, ' ', verifiedBadge(doctor.verified)),
      withFile ? h('p', { class: 'meta' }, file.name) : null,
      h('ul', { class: 'terms' }, list.map((a) => h('li', { 'data-kind': a.kind, 'data-access': a.accessId },
        accessTerms(a), h('span', { class: 'meta' }, ' · given ', timeEl(a.grantedAt))))),
      error),
    h('div', { class: 'row-actions' }, revoke));
}

/** Keeps "n min left" current while `root` is on screen, and reloads once something has run out. */
function tickAccess(root, reload) {
  const t = setInterval(() => {
    if (!root.isConnected) return clearInterval(t);
    let ended = false;
    for (const el of root.querySelectorAll('.time-left[data-end]')) {
      if (!el.dataset.end) continue;
      el.textContent = fmtLeft(el.dataset.end);
      if (new Date(el.dataset.end).getTime() <= Date.now()) ended = true;
    }
    if (ended) reload();
  }, 30000);
}

/** "Who can open this file now": the file's live access by doctor, each with Revoke. */
function whoCanOpen(fileId) {
  const slot = h('div', { class: 'access-now' });
  const heading = h('h2', { id: 'who-can-open', tabindex: '-1' }, 'Who can open this file now');
  const section = h('section', { 'aria-labelledby': 'who-can-open' }, heading, slot);
  slot.focusHome = heading;
  let page = 1;
  const load = () => fill(slot, async () => {
    let d = await files.accessGiven({ fileId, page });
    if (!d.access.length && page > 1) {
      page = 1; // the last page emptied: back to the first
      d = await files.accessGiven({ fileId, page });
    }
    if (!d.access.length) return empty('Only you can open this file right now.');
    const ul = h('ul', { class: 'cards' }, groupBy(d.access, (a) => a.doctor.id).map((list) =>
      accessItem(list, { label: (doc) => `Revoke ${doc.name}` }, load)));
    return h('div', {}, ul, d.hasMore || page > 1 ? pager(page, d.hasMore, (p) => { page = p; load(); }, d.pages) : null);
  }, 'Loading who can open this file…');
  tickAccess(slot, () => load());
  onLive(slot, ['connection_ended'], load);
  return { section, load };
}

export function share(ctx) {
  const fileId = ctx.params.id;
  const fileName = ctx.query.get('name');
  const slot = h('div');
  ctx.root.append(h('p', {}, fileName ? ['Who may open ', h('strong', {}, fileName), ', and for how long.'] : 'Who may open this file, and for how long.'), slot);
  fill(slot, async () => {
    const [conns, canList] = await Promise.all([users.connections(), has('/protected/resource/accessGiven')]);
    const doctors = conns.filter((c) => c.peer.role === 'doctor');
    const now = canList ? whoCanOpen(fileId) : null;
    if (now) now.load();
    if (!doctors.length) {
      return h('div', { class: 'stack' },
        empty('You can share only with doctors you are connected with.', h('a', { href: '#/doctors', class: 'button primary' }, 'Find a doctor')),
        now ? now.section : null);
    }
    const options = doctors.map((c) => [c.peer.id, `${c.peer.name}${c.peer.verified ? ' (verified)' : ' (not verified)'}`]);
    const who = field({ label: 'Doctor', name: 'p', type: 'select', options, required: true });
    const how = radios({ legend: 'How long', name: 'how', value: 'permanent', options: UNTIL });
    const today = new Date();
    const minDay = isoDay(today);
    const maxDay = isoDay(new Date(today.getFullYear(), today.getMonth(), today.getDate() + 365));
    const until = field({ label: 'Last day of access', name: 'until', type: 'date', min: minDay, max: maxDay,
      hint: `Access ends at the end of this day. Choose a day from today to ${fmtDay(maxDay)}.` });
    until.hidden = true;
    how.addEventListener('change', () => { until.hidden = how.querySelector('input:checked').value !== 'until'; });
    const result = h('div', { 'aria-live': 'polite' });
    const form = h('form', { class: 'card narrow', 'aria-label': 'Share this file' }, who, how, until,
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', value: 'share' }, 'Share'),
        h('button', { type: 'submit', class: 'secondary', value: 'revoke' }, 'Revoke this doctor’s access')),
      result);
    const untilError = (text) => {
      setFieldError(form, 'until', text);
      until.control.focus();
    };
    onSubmit(form, async (fd, submitter) => {
      const doctorId = String(fd.get('p'));
      const name = doctors.find((c) => c.peer.id === doctorId).peer.name;
      if (submitter && submitter.value === 'revoke') {
        try {
          await files.revoke(fileId, doctorId);
        } catch (err) {
          // 404 here means this doctor holds no live grant or share on the file.
          if (err.status !== 404) throw err;
          result.replaceChildren(h('p', { class: 'alert' }, `${name} has no access to this file right now, so there is nothing to revoke.`));
          return;
        }
        result.replaceChildren(h('p', { class: 'alert ok' }, `Access for ${name} is revoked. Links already issued stop working within 2 minutes.`));
        if (now) await now.load();
        return;
      }
      const mode = fd.get('how');
      if (mode === 'temp') {
        const r = await files.share30(fileId, doctorId);
        // The end as the server set it, not as this device's clock guesses it.
        const end = r && r.expires_at ? r.expires_at : null;
        result.replaceChildren(h('p', { class: 'alert ok' }, `Shared with ${name} for 30 minutes`, end ? ` (until ${fmtDate(end)})` : '', '.'));
      } else if (mode === 'until') {
        const day = String(fd.get('until') || '');
        if (!day) return untilError('Choose the last day of access.');
        if (day < minDay) return untilError('Choose a day from today on.');
        if (day > maxDay) return untilError(`Choose a day no later than ${fmtDay(maxDay)}: access until a date can last at most a year.`);
        const minutes = minutesUntilEndOf(day);
        if (!minutes) return untilError('Choose a day from today on.');
        let r;
        try {
          r = await files.grant(fileId, doctorId, Math.min(minutes, MAX_GRANT_MINUTES));
        } catch (err) {
          if (err instanceof ApiError && err.field === 'e') return untilError(`Choose a day no later than ${fmtDay(maxDay)}: access until a date can last at most a year.`);
          throw err;
        }
        const end = r && r.expires_at ? r.expires_at : new Date(Date.now() + Math.min(minutes, MAX_GRANT_MINUTES) * 60000);
        result.replaceChildren(h('p', { class: 'alert ok' }, `Shared with ${name} until ${fmtDate(end)}.`));
      } else {
        await files.grant(fileId, doctorId);
        result.replaceChildren(h('p', { class: 'alert ok' }, `Shared with ${name} until you revoke it.`));
      }
      announce(result.textContent);
      if (now) await now.load();
    });
    return h('div', { class: 'stack' }, form, now ? now.section : null, h('p', {}, h('a', { href: '#/files' }, 'Back to my files')));
  }, 'Loading your doctors…');
}

/** Every bit of access the patient gave that is still live, by file, each with Revoke. */
export function accessGiven(ctx) {
  const page = Math.max(1, Number(ctx.query.get('page')) || 1);
  const slot = h('div');
  ctx.root.append(h('p', {}, 'Every doctor who can open one of your files right now, and until when. Revoking works at once; links already issued stop working within 2 minutes.'), slot);
  const load = () => fill(slot, async () => {
    const d = await files.accessGiven({ page });
    if (!d.access.length) {
      return page > 1 ? empty('There is nothing on this page.', h('a', { href: '#/access' }, 'Back to the first page'))
        : empty('No doctor can open any of your files right now.', h('a', { href: '#/files', class: 'button secondary' }, 'My files'));
    }
    const byFile = groupBy(d.access, (a) => a.file.id);
    const out = h('div', { class: 'stack' },
      h('p', { class: 'meta' }, `${d.total} ${d.total === 1 ? 'grant or share' : 'grants and shares'} in force`),
      byFile.map((list) => {
        const f = list[0].file;
        const hid = `access-file-${f.id}`;
        return h('section', { class: 'access-file', 'aria-labelledby': hid, 'data-file': f.id },
          h('h2', { id: hid, class: 'h3' }, f.name),
          h('ul', { class: 'cards' }, groupBy(list, (a) => a.doctor.id).map((l) =>
            accessItem(l, { label: (doc, file) => `Revoke ${doc.name}’s access to ${file.name}` }, load))),
          h('p', {}, h('a', { href: `#/files/${encodeURIComponent(f.id)}/share?name=${encodeURIComponent(f.name)}`, 'aria-label': `Share settings for ${f.name}` }, 'Share settings')));
      }),
      d.hasMore || page > 1 ? pager(page, d.hasMore, (p) => ctx.navigate(`/access?page=${p}`), d.pages) : null);
    return out;
  }, 'Loading the access you gave…');
  load();
  tickAccess(slot, () => load());
  onLive(slot, ['connection_ended'], load);
}

const ACTION = { read: 'Opened', grant: 'Shared', share: 'Shared for 30 minutes', revoke: 'Revoked', delete: 'Deleted', end: 'Access ended with the connection' };

export function ledger(ctx) {
  const page = Math.max(1, Number(ctx.query.get('page')) || 1);
  const slot = h('div');
  ctx.root.append(h('p', {}, 'Every time a link to one of your files was issued, and every share and revoke, with who, when and from which device.'), slot);
  const me = ctx.session.me && ctx.session.me.user.id;
  fill(slot, async () => {
    const d = await files.accessLog(page);
    if (!d.entries.length) return empty(page > 1 ? 'No more entries.' : 'Nobody has opened or been given your files yet.');
    const table = h('table', { class: 'ledger' },
      h('caption', { class: 'visually-hidden' }, 'Access log, newest first'),
      h('thead', {}, h('tr', {}, ['When', 'Who', 'What', 'File', 'Device'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, d.entries.map((e) => h('tr', { 'data-action': e.action, 'data-actor': e.actorId },
        h('td', { 'data-label': 'When' }, timeEl(e.at)), h('td', { 'data-label': 'Who' }, e.actorId === me ? 'You' : e.actor),
        h('td', { 'data-label': 'What' }, ACTION[e.action] || e.action, e.subject ? ` · ${e.subject}` : ''), h('td', { 'data-label': 'File' }, e.file),
        h('td', { 'data-label': 'Device' }, e.device || '—')))));
    return h('div', {}, h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Access log' }, table),
      page > 1 || d.hasMore ? pager(page, d.hasMore, (p) => ctx.navigate(`/ledger?page=${p}`)) : null);
  }, 'Loading the access log…');
}
