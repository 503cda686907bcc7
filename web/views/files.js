// A patient's files: the paged list with tags, open, delete; upload with a progress bar and
// clear size/type errors before anything is sent; sharing with a connected doctor
// (permanent, until a date, 30 minutes) and revoking; the access ledger.

import { files, users, FILE_LIMIT_BYTES, FILE_TYPES, FILE_EXTENSIONS, PAGE_SIZE } from '../endpoints.js';
import {
  h, field, radios, onSubmit, fill, empty, announce, confirmDialog, timeEl, fmtSize, badge, errorText,
  setFieldError, fmtDate,
} from '../ui.js';
import { pager } from './people.js';

const REPORT_TYPES = [['', 'Not set'], ['report', 'Report'], ['prescription', 'Prescription'], ['scan', 'Scan'], ['other', 'Other']];
export const REPORT_LABEL = Object.fromEntries(REPORT_TYPES.filter(([v]) => v));

/** Opens a file: asks for a short-lived link, then navigates to it (the server sends it as a download). */
export async function openFile(getUrl, btn) {
  btn.disabled = true;
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
    btn.disabled = gone;
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
  const open = h('button', { type: 'button', class: 'primary', 'aria-label': `Open ${f.name}` }, 'Open');
  const share = h('a', { href: `#/files/${encodeURIComponent(f.id)}/share?name=${encodeURIComponent(f.name)}`, class: 'button secondary', 'aria-label': `Share ${f.name}` }, 'Share');
  const del = h('button', { type: 'button', class: 'secondary danger-text', 'aria-label': `Delete ${f.name}` }, 'Delete');
  open.addEventListener('click', () => openFile(() => files.url(f.id, true), open));
  del.addEventListener('click', async () => {
    const ok = await confirmDialog({ title: `Delete ${f.name}?`, body: 'The file and every share of it are removed. Doctors lose access at once.', confirmLabel: 'Delete file', danger: true });
    if (!ok) return del.focus();
    try {
      await files.remove(f.id);
      announce(`${f.name} was deleted.`);
      reload();
    } catch (err) {
      announce(errorText(err), true);
    }
  });
  return h('li', { class: 'card' },
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
    const p = fileField.querySelector(':scope > .field-error');
    p.hidden = !problem;
    p.textContent = problem || '';
    fileField.classList.toggle('invalid', !!problem);
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
      ctx.navigate('/files');
    } finally {
      cancel.hidden = true;
      if (form.isConnected) progress.hidden = true;
    }
  });
  ctx.root.append(form);
}

const UNTIL = [['permanent', 'Until I revoke it'], ['until', 'Until a date'], ['temp', 'For 30 minutes']];

export function share(ctx) {
  const fileId = ctx.params.id;
  const fileName = ctx.query.get('name');
  const slot = h('div');
  ctx.root.append(h('p', {}, fileName ? ['Who may open ', h('strong', {}, fileName), ', and for how long.'] : 'Who may open this file, and for how long.'), slot);
  fill(slot, async () => {
    const doctors = (await users.connections()).filter((c) => c.peer.role === 'doctor');
    if (!doctors.length) {
      return empty('You can share only with doctors you are connected with.', h('a', { href: '#/doctors', class: 'button primary' }, 'Find a doctor'));
    }
    const options = doctors.map((c) => [c.peer.id, `${c.peer.name}${c.peer.verified ? ' (verified)' : ' (not verified)'}`]);
    const who = field({ label: 'Doctor', name: 'p', type: 'select', options, required: true });
    const how = radios({ legend: 'How long', name: 'how', value: 'permanent', options: UNTIL });
    const until = field({ label: 'Last day of access', name: 'until', type: 'date', hint: 'Access ends at the end of this day.' });
    until.hidden = true;
    how.addEventListener('change', () => { until.hidden = how.querySelector('input:checked').value !== 'until'; });
    const result = h('div', { 'aria-live': 'polite' });
    const form = h('form', { class: 'card narrow', 'aria-label': 'Share this file' }, who, how, until,
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', value: 'share' }, 'Share'),
        h('button', { type: 'submit', class: 'secondary', value: 'revoke' }, 'Revoke this doctor’s access')),
      result);
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
        return;
      }
      const mode = fd.get('how');
      if (mode === 'temp') {
        await files.share30(fileId, doctorId);
        result.replaceChildren(h('p', { class: 'alert ok' }, `Shared with ${name} for 30 minutes (until ${fmtDate(Date.now() + 30 * 60000)}).`));
      } else if (mode === 'until') {
        const day = String(fd.get('until'));
        const end = new Date(`${day}T23:59:59`);
        const minutes = Math.ceil((end.getTime() - Date.now()) / 60000);
        if (!day || !(minutes > 0)) {
          setFieldError(form, 'until', 'Choose a day from today on.');
          until.control.focus();
          return;
        }
        await files.grant(fileId, doctorId, minutes);
        result.replaceChildren(h('p', { class: 'alert ok' }, `Shared with ${name} until ${fmtDate(end)}.`));
      } else {
        await files.grant(fileId, doctorId);
        result.replaceChildren(h('p', { class: 'alert ok' }, `Shared with ${name} until you revoke it.`));
      }
      announce(result.textContent);
    });
    return h('div', {}, form, h('p', {}, h('a', { href: '#/files' }, 'Back to my files')));
  }, 'Loading your doctors…');
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
