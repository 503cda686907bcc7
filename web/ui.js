// DOM helpers shared by every view: element building, labelled form fields with their error
// slots, form submission with envelope errors placed next to their field, loading/empty states,
// announcements for screen readers, a confirmation dialog, and formatting.

import { ApiError } from './api.js';

/** h('button', {class: 'x', onclick: fn, type: 'button'}, 'Text', child, [more]) */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

let uid = 0;
export const newId = (p = 'f') => `${p}-${++uid}`;

/** A sentence from the server ("phone must be ...") made to read as one. */
export function sentence(s) {
  const t = String(s || '').trim();
  if (!t) return '';
  const c = t[0].toUpperCase() + t.slice(1);
  return /[.!?]$/.test(c) ? c : c + '.';
}

/**
 * A labelled control with hint and error slot. `name` is the API field name: an error whose
 * details.field equals it lands here. Returns the wrapper; the control is `wrapper.control`.
 */
export function field({ label, name, type = 'text', hint, options, required, value, ...attrs }) {
  const id = newId(name || 'field');
  const hintId = hint ? `${id}-hint` : null;
  const errId = `${id}-error`;
  let control;
  if (type === 'select') {
    control = h('select', { id, name, required, ...attrs },
      options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)));
  } else if (type === 'textarea') {
    control = h('textarea', { id, name, required, ...attrs }, value || '');
  } else {
    control = h('input', { id, name, type, required, value: value ?? null, ...attrs });
  }
  control.setAttribute('aria-describedby', [hintId, errId].filter(Boolean).join(' '));
  const wrap = h('div', { class: 'field', 'data-field': name },
    h('label', { for: id }, label, required ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null),
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null,
    control,
    h('p', { class: 'field-error', id: errId, hidden: true }));
  wrap.control = control;
  return wrap;
}

/** A group of radio buttons in a fieldset with a legend. */
export function radios({ legend, name, options, value, hint }) {
  const fs = h('fieldset', { class: 'field radios', 'data-field': name },
    h('legend', {}, legend),
    hint ? h('p', { class: 'hint' }, hint) : null,
    options.map(([v, text]) => {
      const id = newId(name);
      return h('div', { class: 'radio' },
        h('input', { type: 'radio', id, name, value: v, checked: v === value }),
        h('label', { for: id }, text));
    }),
    h('p', { class: 'field-error', hidden: true }));
  return fs;
}

export function setFieldError(form, name, message) {
  const wrap = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
  if (!wrap) return false;
  const p = wrap.querySelector(':scope > .field-error');
  p.textContent = message;
  p.hidden = false;
  wrap.classList.add('invalid');
  for (const c of wrap.querySelectorAll('input, select, textarea')) c.setAttribute('aria-invalid', 'true');
  return true;
}

export function clearErrors(form) {
  for (const p of form.querySelectorAll('.field-error')) { p.hidden = true; p.textContent = ''; }
  for (const w of form.querySelectorAll('.invalid')) w.classList.remove('invalid');
  for (const c of form.querySelectorAll('[aria-invalid]')) c.removeAttribute('aria-invalid');
  const a = form.querySelector(':scope > .form-error');
  if (a) a.remove();
}

/** Shows an error in words: next to its field when the server named one, above the form otherwise. */
export function showFormError(form, err) {
  const message = errorText(err);
  const fieldName = err instanceof ApiError ? err.field : null;
  if (fieldName && setFieldError(form, fieldName, message)) {
    const w = form.querySelector(`[data-field="${CSS.escape(fieldName)}"]`);
    const c = w.querySelector('input[aria-invalid], textarea[aria-invalid]') || w.querySelector('[aria-invalid]');
    if (c) c.focus();
    return;
  }
  const box = h('div', { class: 'form-error alert error', role: 'alert', tabindex: '-1' }, message);
  form.prepend(box);
  box.focus();
}

export function errorText(err) {
  if (err instanceof ApiError) {
    const left = err.details.attempts_left;
    const wait = err.status === 429 && err.retryAfter ? ` Try again in ${fmtWait(err.retryAfter)}.` : '';
    return sentence(err.message) + (Number.isInteger(left) ? ` ${left} ${left === 1 ? 'try' : 'tries'} left.` : '') + wait;
  }
  return 'Something went wrong in this page. Reload and try again.';
}

/**
 * Wires a form: on submit, clears old errors, marks the submit buttons busy while `action` runs
 * (aria-disabled, not disabled: a disabled button drops keyboard focus to <body>), and shows any
 * error in words. `action` gets the FormData.
 */
export function onSubmit(form, action) {
  form.noValidate = true;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (form.dataset.busy) return;
    clearErrors(form);
    if (!checkRequired(form)) return;
    const btns = [...form.querySelectorAll('button[type=submit]')];
    form.dataset.busy = '1';
    btns.forEach((b) => setBusy(b, true));
    try {
      await action(new FormData(form), ev.submitter);
    } catch (err) {
      if (form.isConnected) showFormError(form, err);
      else announce(errorText(err), true);
      if (!(err instanceof ApiError)) reportBug(err);
    } finally {
      delete form.dataset.busy;
      btns.forEach((b) => setBusy(b, false));
    }
  });
  return form;
}

/**
 * Marks a button busy (or unusable) while keeping it focusable, so keyboard focus stays where the
 * user left it. Click handlers check `isBusy` first.
 */
export function setBusy(btn, on, { progress = true } = {}) {
  if (on) {
    btn.setAttribute('aria-disabled', 'true');
    if (progress) btn.setAttribute('aria-busy', 'true');
  } else {
    btn.removeAttribute('aria-disabled');
    btn.removeAttribute('aria-busy');
  }
}

export const isBusy = (btn) => btn.getAttribute('aria-disabled') === 'true';

/** Our own required-field check, so the messages read like the rest and sit by their field. */
function checkRequired(form) {
  let first = null;
  for (const c of form.querySelectorAll('[required]')) {
    const empty = c.type === 'file' ? c.files.length === 0 : !String(c.value).trim();
    if (!empty) continue;
    const wrap = c.closest('[data-field]');
    const label = wrap && wrap.querySelector('label, legend');
    setFieldError(form, wrap ? wrap.dataset.field : c.name,
      `${label ? label.firstChild.textContent.trim() : 'This field'} is required.`);
    first = first || c;
  }
  if (first) first.focus();
  return !first;
}

function reportBug(err) {
  // A bug in the client, not an answer from the server: keep it visible to developers.
  console.warn('client error', err);
}

export function loading(text = 'Loading…') {
  return h('p', { class: 'state loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
}

/** An empty state; it is where focus goes when the list whose control had it is gone. */
export function empty(text, action) {
  return h('div', { class: 'state empty', tabindex: '-1', 'data-focus-home': '' }, h('p', {}, text), action || null);
}

export function errorBox(err, retry) {
  return h('div', { class: 'alert error', role: 'alert' },
    h('p', {}, errorText(err)),
    retry ? h('button', { type: 'button', class: 'secondary', onclick: retry }, 'Try again') : null);
}

/**
 * Runs `load` and puts its result (or a loading/error state) into `slot`. The first time the slot
 * shows a loading state; a refresh (a reload after an action, a live update) keeps the old content
 * on screen until the new is ready, and keyboard focus stays on the same logical control (see
 * `keepFocus`). A refresh overtaken by a newer one is dropped.
 */
export async function fill(slot, load, text) {
  const seq = (slot.fillSeq = (slot.fillSeq || 0) + 1);
  const refresh = !!slot.filled;
  if (!refresh) slot.replaceChildren(loading(text));
  slot.setAttribute('aria-busy', 'true');
  try {
    const node = await load();
    if (seq !== slot.fillSeq) return;
    keepFocus(slot, () => slot.replaceChildren(node));
    slot.filled = true;
  } catch (err) {
    if (seq !== slot.fillSeq) return;
    keepFocus(slot, () => slot.replaceChildren(errorBox(err, () => { slot.filled = false; fill(slot, load, text); })));
    if (!(err instanceof ApiError)) reportBug(err);
  } finally {
    if (seq === slot.fillSeq) slot.removeAttribute('aria-busy');
  }
}

// ---- keeping focus across re-renders ----
//
// List items carry `data-key` (stable: an id), their controls `data-ctl` (the control's part:
// "accept", "revoke"). When a re-render replaces the focused control, focus goes to the control
// with the same key and part; if that item is gone, to the same part of the next item (or the one
// before); failing that, to the new content's `[data-focus-home]` (an empty state, a list heading)
// or `root.focusHome` (a list's heading), or the page heading.

const FOCUSABLE = 'a[href], button, input, select, textarea, [tabindex]';

function partOf(el) {
  return el.dataset.ctl || el.id || el.getAttribute('aria-label') || el.textContent.trim();
}

function usable(el) {
  return el.isConnected && !el.disabled && !el.closest('[hidden]') && el.getClientRects().length > 0;
}

function findPart(scope, part) {
  return [scope, ...scope.querySelectorAll(FOCUSABLE)].find((c) => c.matches(FOCUSABLE) && partOf(c) === part && usable(c));
}

/** Where focus is inside `root`, in terms that survive a re-render; null when it is elsewhere. */
export function focusSnapshot(root) {
  const el = document.activeElement;
  if (!el || el === document.body || !root.contains(el)) return null;
  const item = el.closest('[data-key]');
  const own = item && root.contains(item) ? item : null;
  const items = [...root.querySelectorAll('[data-key]')];
  const i = own ? items.indexOf(own) : -1;
  const keys = (list) => list.map((x) => x.dataset.key);
  return {
    el,
    part: partOf(el),
    key: own ? own.dataset.key : null,
    after: i >= 0 ? keys(items.slice(i + 1)) : [],
    before: i >= 0 ? keys(items.slice(0, i).reverse()) : [],
  };
}

export function restoreFocus(root, snap) {
  if (!snap) return;
  // Still there (patched in place), or something else took focus meanwhile (a dialog): leave it.
  if (snap.el.isConnected && document.activeElement === snap.el) return;
  const active = document.activeElement;
  if (active && active !== document.body && !root.contains(active)) return;
  const item = (key) => root.querySelector(`[data-key="${CSS.escape(key)}"]`);
  let target = null;
  if (snap.key !== null) {
    for (const key of [snap.key, ...snap.after, ...snap.before]) {
      const it = item(key);
      if (it && (target = findPart(it, snap.part))) break;
    }
  } else {
    target = findPart(root, snap.part);
  }
  target = target || root.querySelector('[data-focus-home]') || root.focusHome || document.getElementById('page-title');
  if (target) target.focus();
}

/** Runs `render` (which re-draws part of `root`) and puts focus back where it logically was. */
export function keepFocus(root, render) {
  const snap = focusSnapshot(root);
  const out = render();
  restoreFocus(root, snap);
  return out;
}

/** Polite (or assertive) announcement for screen readers, plus a visible toast. */
export function announce(message, assertive = false) {
  const region = document.getElementById(assertive ? 'alert-region' : 'status-region');
  if (region) {
    region.textContent = '';
    setTimeout(() => { region.textContent = message; }, 50);
  }
  const toasts = document.getElementById('toasts');
  if (toasts) {
    const t = h('div', { class: `toast${assertive ? ' error' : ''}` }, message);
    toasts.append(t);
    // A burst of events should not bury the page: only the newest two stay on screen.
    while (toasts.children.length > 2) toasts.firstElementChild.remove();
    setTimeout(() => t.remove(), 5000);
  }
}

/** A modal confirmation with <dialog>. Resolves true when confirmed. `typeToConfirm` asks for a word. */
export function confirmDialog({ title, body, confirmLabel = 'Confirm', danger = false, typeToConfirm }) {
  return new Promise((resolve) => {
    const titleId = newId('dlg');
    const typed = typeToConfirm
      ? field({ label: `Type ${typeToConfirm} to confirm`, name: 'confirm', autocomplete: 'off', spellcheck: false })
      : null;
    const ok = h('button', { type: 'submit', class: danger ? 'danger' : 'primary', disabled: !!typeToConfirm }, confirmLabel);
    const cancel = h('button', { type: 'button', class: 'secondary', value: 'cancel', onclick: () => dlg.close('cancel') }, 'Cancel');
    const dlg = h('dialog', { 'aria-labelledby': titleId, class: 'dialog' },
      h('form', { method: 'dialog' },
        h('h2', { id: titleId }, title),
        body ? h('p', {}, body) : null,
        typed,
        h('div', { class: 'actions' },
          cancel,
          ok)));
    if (typed) {
      typed.control.addEventListener('input', () => {
        ok.disabled = typed.control.value.trim() !== typeToConfirm;
      });
    }
    ok.addEventListener('click', (e) => { e.preventDefault(); dlg.close('ok'); });
    dlg.addEventListener('close', () => { dlg.remove(); resolve(dlg.returnValue === 'ok'); });
    document.body.append(dlg);
    dlg.showModal();
    // A destructive choice is never the one Enter picks by accident.
    (typed ? typed.control : danger ? cancel : ok).focus();
  });
}

// ---- formatting ----

export function toDate(v) {
  if (v === null || v === undefined || v === '') return null;
  const d = typeof v === 'number' ? new Date(v) : new Date(String(v));
  return Number.isNaN(d.getTime()) ? null : d;
}

export function fmtDate(v) {
  const d = toDate(v);
  return d ? d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' }) : '—';
}

export function timeEl(v) {
  const d = toDate(v);
  return d ? h('time', { datetime: d.toISOString() }, fmtDate(d)) : h('span', {}, '—');
}

export function fmtWait(secs) {
  const s = Math.ceil(secs);
  if (s < 90) return `${s} seconds`;
  return `${Math.ceil(s / 60)} minutes`;
}

export function fmtSize(bytes) {
  if (!Number.isFinite(bytes)) return '';
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

/** "12 min left", "2 h 5 min left", "ended"; null end = permanent. */
export function fmtLeft(end, now = Date.now()) {
  const d = toDate(end);
  if (!d) return 'No end date';
  const ms = d.getTime() - now;
  if (ms <= 0) return 'Ended';
  const min = Math.ceil(ms / 60000);
  if (min < 60) return `${min} min left`;
  const hrs = Math.floor(min / 60);
  if (hrs < 48) return `${hrs} h ${min % 60} min left`;
  return `${Math.floor(hrs / 24)} days left`;
}

export function badge(text, kind = '') {
  return h('span', { class: `badge ${kind}`.trim() }, text);
}

export function verifiedBadge(verified) {
  return verified
    ? badge('Verified', 'ok')
    : badge('Not verified', 'warn');
}
