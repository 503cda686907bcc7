// Everyone's own pages: the profile (view and edit), two-step sign-in (an authenticator app's
// code after the SMS code), signed-in devices with revoke and sign out everywhere, account
// deletion behind a confirmation, and the notifications list.

import { users, notifications as notifApi, totp, has } from '../endpoints.js';
import { ApiError } from '../api.js';
import * as notify from '../notify.js';
import {
  h, field, onSubmit, fill, empty, announce, confirmDialog, timeEl, verifiedBadge, badge, errorText,
  setBusy, isBusy, keepFocus,
} from '../ui.js';
import { totpField, totpValue, totpError } from './auth.js';

export function profile(ctx) {
  const details = h('section', { 'aria-labelledby': 'p-details' });
  ctx.root.append(details);
  const load = () => fill(details, async () => {
    const me = await ctx.refreshMe();
    const { user, profile: p } = me;
    const doctor = user.role === 'doctor';
    const rows = [
      ['Name', user.name], ['Phone', user.phone || '—'], ['Account', doctor ? 'Doctor' : 'Patient'],
      ['Member since', timeEl(user.created_at)],
    ];
    if (doctor) {
      rows.push(['Verification', verifiedBadge(p.verified)], ['Specialization', p.specialization || '—'],
        ['Qualification', p.qualification || '—'], ['Registration number', p.registration_number || '—'],
        ['Years of experience', p.years_of_experience ?? '—']);
    }
    const out = h('div', { class: 'stack' },
      h('div', { class: 'card' }, h('h2', { id: 'p-details' }, 'Your details'),
        h('dl', { class: 'details' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
        doctor && !p.verified ? h('p', { class: 'hint' }, 'Patients see that your registration has not been checked yet. The Auravita operator verifies doctors after checking the registration number.') : null));
    if (await has('/protected/user/updateProfile')) out.append(editForm(ctx, user, p, load));
    out.append(h('div', { class: 'card' }, h('h2', {}, 'Security'),
      h('p', {}, 'See every device that is signed in to your account, and sign any of them out.'),
      h('a', { href: '#/sessions', class: 'button secondary' }, 'Signed-in devices')));
    if (await has('/protected/user/totp')) out.append(twoStepCard());
    if (await has('/protected/user/deleteProfile')) out.append(deleteCard(ctx));
    return out;
  }, 'Loading your profile…');
  load();
}

function editForm(ctx, user, p, reload) {
  const doctor = user.role === 'doctor';
  const form = h('form', { class: 'card', 'aria-labelledby': 'p-edit' },
    h('h2', { id: 'p-edit' }, 'Edit profile'),
    field({ label: 'Full name', name: 'name', required: true, value: user.name, autocomplete: 'name', maxlength: 100 }),
    doctor ? [
      field({ label: 'Specialization', name: 'specialization', value: p.specialization || '', maxlength: 100 }),
      field({ label: 'Qualification', name: 'qualification', value: p.qualification || '', maxlength: 100 }),
      field({ label: 'Registration number', name: 'registration_number', value: p.registration_number || '', maxlength: 50, hint: 'Changing it takes back your verification until the operator checks the new number.' }),
      field({ label: 'Years of experience', name: 'years_of_experience', type: 'number', min: 0, max: 80, inputmode: 'numeric', value: p.years_of_experience ?? '' }),
    ] : null,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save changes')));
  onSubmit(form, async (fd) => {
    const body = { name: String(fd.get('name')).trim() };
    if (doctor) {
      for (const k of ['specialization', 'qualification', 'registration_number']) body[k] = String(fd.get(k)).trim();
      const y = String(fd.get('years_of_experience')).trim();
      if (y !== '') body.years_of_experience = Number(y);
    }
    await users.updateProfile(body);
    announce('Your profile is saved.');
    // Redrawn in place: focus stays on "Save changes".
    await reload();
  });
  return form;
}

/** `abcdefgh…` → `ABCD EFGH …`: blocks of 4 are easier to read out and type. */
export function groupSecret(secret) {
  return String(secret).replace(/[\s=]/g, '').toUpperCase().replace(/(.{4})(?=.)/g, '$1 ');
}

/**
 * Two-step sign-in: whether it is on; off → "Set up" shows the key (and an otpauth link for an
 * authenticator app on this device), then a code turns it on; on → a code turns it off.
 */
function twoStepCard() {
  const body = h('div', {});
  const card = h('section', { class: 'card two-step', 'aria-labelledby': 'totp-title' },
    h('h2', { id: 'totp-title' }, 'Two-step sign-in'), body);

  /** Loads the state and draws it; `note` is a message (`{text, kind}`) to show above it. */
  const load = (note) => fill(body, async () => {
    let state;
    try {
      state = await totp.status();
    } catch (err) {
      if (err instanceof ApiError && err.code === 'TOTP_NOT_AVAILABLE') return h('p', {}, errorText(totpError(err)));
      throw err;
    }
    return state.enabled ? onView(state, note) : offView(state, note);
  }, 'Loading two-step sign-in…');

  const noteEl = (note) => (note
    ? h('div', { class: `alert ${note.kind || 'ok'} note`, role: note.kind === 'error' ? 'alert' : 'status', tabindex: '-1' }, h('p', {}, note.text))
    : null);

  /** After a change: the note takes focus, so keyboard and screen-reader users hear it and stay here. */
  const focusNote = () => body.querySelector('.note')?.focus();

  function offView(state, note) {
    const setup = h('button', { type: 'button', class: 'primary' }, 'Set up');
    const out = h('div', {},
      noteEl(note),
      h('p', {}, h('span', { class: 'meta' }, 'Status: '), badge('Off')),
      h('p', {}, 'When it is on, signing in asks for a 6-digit code from an authenticator app on your phone (for example Google Authenticator, Microsoft Authenticator, Aegis or 2FAS) after the SMS code. Someone who gets hold of your SMS codes still cannot sign in.'),
      state.pending ? h('p', { class: 'hint' }, 'You started setting it up but did not turn it on. Set it up again to get a new key.') : null,
      h('div', { class: 'actions' }, setup));
    setup.addEventListener('click', async () => {
      out.querySelector('.setup-error')?.remove();
      setup.disabled = true;
      setup.setAttribute('aria-busy', 'true');
      try {
        const key = await totp.setup();
        const panel = setupView(key);
        body.replaceChildren(panel);
        panel.querySelector('h3').focus();
      } catch (err) {
        if (err instanceof ApiError && err.code === 'TOTP_ALREADY_ENABLED') return load({ text: errorText(totpError(err)) }).then(focusNote);
        setup.disabled = false;
        setup.removeAttribute('aria-busy');
        const box = h('div', { class: 'alert error setup-error', role: 'alert' }, h('p', {}, errorText(totpError(err))));
        setup.closest('.actions').before(box);
      }
    });
    return out;
  }

  function setupView(key) {
    const code = totpField('Enter the code the app now shows for Auravita, to check that it is set up right.');
    const sms = totpField('So that only the person with your phone can turn this on.',
      { label: 'Code from the SMS we sent you', name: 'sms_code' });
    const sentTo = h('p', { class: 'sms-sent', role: 'status' }, smsSentText(key.sms));
    const resend = h('button', { type: 'button', class: 'link-button' }, 'Send the SMS code again');
    const cancel = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
    const form = h('form', { 'aria-labelledby': 'totp-confirm' },
      h('h3', { id: 'totp-confirm' }, '2. Enter both codes to turn it on'),
      code,
      sentTo,
      sms,
      h('p', {}, resend),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Turn on'), cancel));
    cancel.addEventListener('click', () => load().then(() => card.querySelector('button')?.focus()));
    resend.addEventListener('click', async () => {
      resend.disabled = true;
      resend.setAttribute('aria-busy', 'true');
      try {
        sentTo.textContent = `A new code is on its way. ${smsSentText(await totp.resendSms())}`;
        sentTo.classList.remove('error');
      } catch (err) {
        sentTo.textContent = errorText(smsError(err));
        sentTo.classList.add('error');
      } finally {
        resend.disabled = false;
        resend.removeAttribute('aria-busy');
      }
    });
    onSubmit(form, async (fd) => {
      const value = totpValue(form, code, fd);
      if (!value) return;
      const smsValue = totpValue(form, sms, fd, 'Enter the 6 digits of the code we sent by SMS.');
      if (!smsValue) return;
      let state;
      try {
        state = await totp.enable(value, smsValue);
      } catch (err) {
        if (err instanceof ApiError && err.code === 'TOTP_ALREADY_ENABLED') {
          await load({ text: errorText(totpError(err)) });
          return focusNote();
        }
        if (err instanceof ApiError && err.code === 'NOT_FOUND') {
          throw new ApiError({ status: err.status, code: err.code, details: err.details, message: 'This setup is no longer waiting for a code. Press Cancel, then Set up again.' });
        }
        throw smsError(totpError(err));
      }
      const n = state.signedOutSessions;
      const others = n === null ? 'Every other device was signed out.'
        : n === 0 ? 'No other device was signed in.'
          : `${n} other ${n === 1 ? 'device was' : 'devices were'} signed out; signing in there now needs the authenticator code too.`;
      announce('Two-step sign-in is on.');
      await load({ text: `Two-step sign-in is on. ${others}` });
      focusNote();
    });
    const uri = /^otpauth:\/\//i.test(key.uri) ? key.uri : null;
    return h('div', { class: 'totp-setup' },
      h('h3', { id: 'totp-add', tabindex: '-1' }, '1. Add Auravita to your authenticator app'),
      h('p', {}, uri ? 'On this phone, open the link. On another device, add an account in the app and type the key by hand (spaces do not matter).'
        : 'In your authenticator app, add an account and type this key by hand (spaces do not matter).'),
      h('dl', { class: 'secret-box' },
        h('dt', {}, 'Secret key'),
        h('dd', {}, h('code', { class: 'secret', id: 'totp-secret' }, groupSecret(key.secret)))),
      h('p', { class: 'hint' }, 'Keep this key private: anyone with it can make your codes. It is shown only now.'),
      uri ? h('p', {}, h('a', { href: uri, class: 'button secondary' }, 'Open in authenticator app')) : null,
      form);
  }

  function onView(state, note) {
    const code = totpField('To turn it off, enter the code your authenticator app shows for Auravita now.');
    const form = h('form', { 'aria-labelledby': 'totp-off' },
      h('h3', { id: 'totp-off' }, 'Turn off two-step sign-in'),
      code,
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'secondary danger-text' }, 'Turn off')));
    onSubmit(form, async (fd) => {
      const value = totpValue(form, code, fd);
      if (!value) return;
      try {
        await totp.disable(value);
      } catch (err) {
        if (err instanceof ApiError && err.code === 'TOTP_NOT_ENABLED') {
          await load({ text: errorText(totpError(err)) });
          return focusNote();
        }
        throw totpError(err);
      }
      announce('Two-step sign-in is off.');
      await load({ text: 'Two-step sign-in is off. Signing in now needs only the SMS code.' });
      focusNote();
    });
    return h('div', {},
      noteEl(note),
      h('p', {}, h('span', { class: 'meta' }, 'Status: '), badge('On', 'ok'),
        state.enabledAt ? [' ', h('span', { class: 'meta' }, 'since ', timeEl(state.enabledAt))] : null),
      h('p', {}, 'Signing in asks for the 6-digit code from your authenticator app after the SMS code.'),
      form);
  }

  load();
  return card;
}

function deleteCard(ctx) {
  const btn = h('button', { type: 'button', class: 'danger' }, 'Delete my account');
  const card = h('div', { class: 'card danger-zone' }, h('h2', {}, 'Delete account'),
    h('p', {}, 'This erases your account for good: you are signed out everywhere, your files and every share of them are deleted, and you disappear from other people’s lists. It cannot be undone.'),
    btn);
  btn.addEventListener('click', async () => {
    const ok = await confirmDialog({
      title: 'Delete your account?', body: 'Your files, shares, connections and notifications will be erased. This cannot be undone.',
      confirmLabel: 'Delete account', danger: true, typeToConfirm: 'DELETE',
    });
    if (!ok) return btn.focus();
    try {
      await users.deleteProfile();
      ctx.signedOut('Your account has been deleted.');
    } catch (err) {
      card.append(h('p', { class: 'alert error', role: 'alert' }, errorText(err)));
    }
  });
  return card;
}

export function sessions(ctx) {
  const list = h('section', { 'aria-label': 'Devices' });
  const everywhere = h('button', { type: 'button', class: 'danger' }, 'Sign out everywhere');
  ctx.root.append(h('p', {}, 'These devices are signed in to your account. If you do not recognise one, sign it out.'), list,
    h('div', { class: 'card' }, h('h2', {}, 'Sign out everywhere'),
      h('p', {}, 'Ends every session, including this one.'), everywhere));
  const load = () => fill(list, async () => {
    const rows = await users.sessions();
    if (!rows.length) return empty('No devices are signed in.');
    return h('ul', { class: 'cards' }, rows.map((s) => {
      const revoke = s.current ? null : h('button', { type: 'button', class: 'secondary', 'data-ctl': 'signout', 'aria-label': `Sign out ${s.device}` }, 'Sign out');
      revoke?.addEventListener('click', async () => {
        if (isBusy(revoke)) return;
        setBusy(revoke, true);
        try {
          await users.revokeSession(s.id);
          announce(`${s.device} is signed out.`);
          await load();
        } catch (err) {
          setBusy(revoke, false);
          announce(errorText(err), true);
        }
      });
      return h('li', { class: 'card row', 'data-key': s.id },
        h('div', {},
          h('h2', { class: 'h3' }, s.device, s.current ? [' ', badge('This device', 'ok')] : null),
          h('p', { class: 'meta' }, s.ip ? `IP ${s.ip} · ` : '', 'signed in ', timeEl(s.createdAt), ' · last active ', timeEl(s.lastSeenAt))),
        revoke);
    }));
  }, 'Loading devices…');
  load();
  everywhere.addEventListener('click', async () => {
    const ok = await confirmDialog({ title: 'Sign out everywhere?', body: 'Every device, this one included, will need a new code to sign in.', confirmLabel: 'Sign out everywhere', danger: true });
    if (!ok) return everywhere.focus();
    try {
      await users.signoutEverywhere();
      ctx.signedOut('You are signed out on every device.');
    } catch (err) {
      announce(errorText(err), true);
    }
  });
}

/** Where a notification leads, by kind and the reader's role. */
function linkFor(n) {
  const doctor = n.kind === 'file_shared' || n.kind === 'file_access_granted';
  if (doctor) return ['#/shared', 'See shared files'];
  if (n.kind === 'connection_requested') return ['#/requests', 'See requests'];
  if (n.kind === 'connection_accepted' || n.kind === 'connection_rejected') return ['#/requests', 'See requests'];
  if (n.kind === 'new_sign_in') return ['#/sessions', 'See signed-in devices'];
  return null;
}

/** The notification's link; following it marks the notification read. */
function followLink(n, canRead) {
  const [href, text] = linkFor(n);
  const a = h('a', { href }, text);
  if (!n.read && canRead && n.canMarkRead) {
    a.addEventListener('click', () => {
      notify.markRead(n.id);
      notifApi.read(n.id).catch(() => {});
    });
  }
  return a;
}

/** Why a sign-in alert is not new here: it is for the devices signed in before it. */
function signInNote(n) {
  if (n.thisSession) return h('p', { class: 'meta' }, 'This is the sign-in of the device you are using now. The devices signed in before it show it as new until one of them marks it read.');
  if (!n.read && !n.canMarkRead) return h('p', { class: 'meta' }, 'This sign-in came before this device’s own, so it is for your older devices to mark read.');
  return null;
}

const KIND_LABEL = {
  connection_requested: 'Connection request', connection_accepted: 'Request accepted', connection_rejected: 'Request declined',
  connection_ended: 'Connection ended', file_access_granted: 'File shared', file_access_revoked: 'Access revoked',
  file_shared: 'Shared for 30 minutes', patient_account_created: 'Account created', new_sign_in: 'New sign-in',
  sign_in_stopped: 'Sign-in stopped', two_step_changed: 'Two-step sign-in changed',
};

export async function notifications(ctx) {
  const [canList, canRead, canReadAll, canStream] = await Promise.all([
    has('/protected/notification/list'), has('/protected/notification/readNotification/{notification_id}'),
    has('/protected/notification/readAll'), has(notifApi.streamPath)]);
  if (!canList && !canStream) {
    ctx.root.append(h('div', { class: 'alert' }, h('p', {}, 'This part of Auravita is not available on this server yet.')));
    return;
  }
  const readAll = canReadAll ? h('button', { type: 'button', class: 'secondary' }, 'Mark all as read') : null;
  // The region announces additions only, so a redraw must add nothing but new notifications:
  // items already shown are kept (and patched in place when read), never rebuilt. It becomes a
  // live region after the first drawing, so the list already there is not read out on arrival.
  const list = h('section', { 'aria-label': 'Notifications' });
  ctx.root.append(h('p', {}, 'New notifications appear here as they happen.'), readAll ? h('div', { class: 'actions' }, readAll) : null, list);

  const fresh = (n) => !n.read && n.canMarkRead;
  const item = (n) => {
    const mark = fresh(n) && canRead ? h('button', { type: 'button', class: 'secondary small', 'data-ctl': 'mark', 'aria-label': `Mark as read: ${n.message}` }, 'Mark as read') : null;
    mark?.addEventListener('click', async () => {
      if (isBusy(mark)) return;
      setBusy(mark, true);
      try {
        await notifApi.read(n.id);
        notify.markRead(n.id);
      } catch (err) {
        setBusy(mark, false);
        announce(errorText(err), true);
      }
    });
    const li = h('li', { class: `card row${fresh(n) ? ' unread' : ''}`, 'data-kind': n.kind, 'data-key': n.id },
      h('div', {},
        h('p', { class: 'meta' }, fresh(n) ? h('span', { class: 'dot' }, 'New · ') : '', KIND_LABEL[n.kind] || 'Notice', ' · ', timeEl(n.createdAt)),
        h('p', {}, n.message),
        signInNote(n),
        linkFor(n) ? h('p', {}, followLink(n, canRead)) : null),
      mark);
    li.fresh = fresh(n);
    return li;
  };
  /** Brings a shown item up to date without adding anything: read → no dot, no button. */
  const patch = (li, n) => {
    if (li.fresh && !fresh(n)) {
      li.classList.remove('unread');
      li.querySelector('.dot')?.remove();
      li.querySelector('[data-ctl="mark"]')?.remove();
      li.fresh = false;
    }
  };
  const shown = new Map();
  const draw = () => keepFocus(list, () => {
    const items = notify.all();
    if (!items.length) {
      shown.clear();
      return list.replaceChildren(empty('No notifications yet.'));
    }
    let ul = list.querySelector(':scope > ul.notifications');
    if (!ul) {
      ul = h('ul', { class: 'cards notifications' });
      shown.clear();
      list.replaceChildren(ul);
    }
    const keep = new Set(items.map((n) => n.id));
    for (const [id, li] of shown) if (!keep.has(id)) { li.remove(); shown.delete(id); }
    let at = ul.firstElementChild;
    for (const n of items) {
      let li = shown.get(n.id);
      if (li) patch(li, n);
      else shown.set(n.id, (li = item(n)));
      if (li === at) at = at.nextElementSibling;
      else ul.insertBefore(li, at);
    }
  });
  readAll?.addEventListener('click', async () => {
    try {
      await notifApi.readAll();
      notify.markAllRead();
      announce('All notifications are marked as read.');
    } catch (err) {
      announce(errorText(err), true);
    }
  });
  const onChange = () => (list.isConnected ? draw() : notify.events.removeEventListener('change', onChange));
  notify.events.addEventListener('change', onChange);
  if (canList) {
    await fill(list, async () => {
      const d = await notifApi.list(1);
      notify.merge(d.items);
      return h('div');
    }, 'Loading notifications…');
  }
  draw();
  list.setAttribute('aria-live', 'polite');
  list.setAttribute('aria-relevant', 'additions');
}

/** Where the setup's SMS code went, and until when it works. */
function smsSentText(sent) {
  const until = sent && sent.expiresAt ? new Date(sent.expiresAt) : null;
  const when = until && !Number.isNaN(until.getTime())
    ? ` It works until ${until.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })}.` : '';
  return `We sent a 6-digit code by SMS to ${sent && sent.sentTo ? sent.sentTo : 'your phone'}.${when}`;
}

/** The SMS code's refusals in words; the field they concern is `sms_code`. */
const SMS_WORDS = {
  OTP_INVALID: 'That SMS code is not right. Check the latest SMS from Auravita.',
  OTP_DEAD: 'There were too many wrong SMS codes. Use "Send the SMS code again" for a new one.',
  OTP_EXPIRED: 'The SMS code has expired. Use "Send the SMS code again" for a new one.',
  OTP_COOLDOWN: 'A code was sent moments ago. Wait a little before asking for another.',
  OTP_HOURLY_LIMIT: 'Too many codes were sent to your phone this hour.',
};

function smsError(err) {
  if (!(err instanceof ApiError) || !SMS_WORDS[err.code]) return err;
  return new ApiError({
    status: err.status, code: err.code, message: SMS_WORDS[err.code],
    details: { ...err.details, field: 'sms_code' }, retryAfter: err.retryAfter,
  });
}
