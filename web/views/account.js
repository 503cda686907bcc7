// Everyone's own pages: the profile (view and edit), signed-in devices with revoke and sign out
// everywhere, account deletion behind a confirmation, and the notifications list.

import { users, notifications as notifApi, has } from '../endpoints.js';
import * as notify from '../notify.js';
import {
  h, field, onSubmit, fill, empty, announce, confirmDialog, timeEl, verifiedBadge, badge, errorText,
} from '../ui.js';

export function profile(ctx) {
  const details = h('section', { 'aria-labelledby': 'p-details' });
  ctx.root.append(details);
  fill(details, async () => {
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
    if (await has('/protected/user/updateProfile')) out.append(editForm(ctx, user, p));
    out.append(h('div', { class: 'card' }, h('h2', {}, 'Security'),
      h('p', {}, 'See every device that is signed in to your account, and sign any of them out.'),
      h('a', { href: '#/sessions', class: 'button secondary' }, 'Signed-in devices')));
    if (await has('/protected/user/deleteProfile')) out.append(deleteCard(ctx));
    return out;
  }, 'Loading your profile…');
}

function editForm(ctx, user, p) {
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
    ctx.navigate('/profile');
  });
  return form;
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
      const revoke = s.current ? null : h('button', { type: 'button', class: 'secondary', 'aria-label': `Sign out ${s.device}` }, 'Sign out');
      revoke?.addEventListener('click', async () => {
        revoke.disabled = true;
        try {
          await users.revokeSession(s.id);
          announce(`${s.device} is signed out.`);
          load();
        } catch (err) {
          revoke.disabled = false;
          announce(errorText(err), true);
        }
      });
      return h('li', { class: 'card row' },
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
  if (!n.read && canRead) {
    a.addEventListener('click', () => {
      notify.markRead(n.id);
      notifApi.read(n.id).catch(() => {});
    });
  }
  return a;
}

const KIND_LABEL = {
  connection_requested: 'Connection request', connection_accepted: 'Request accepted', connection_rejected: 'Request declined',
  connection_ended: 'Connection ended', file_access_granted: 'File shared', file_access_revoked: 'Access revoked',
  file_shared: 'Shared for 30 minutes', patient_account_created: 'Account created', new_sign_in: 'New sign-in',
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
  const list = h('section', { 'aria-label': 'Notifications', 'aria-live': 'polite', 'aria-relevant': 'additions' });
  ctx.root.append(h('p', {}, 'New notifications appear here as they happen.'), readAll ? h('div', { class: 'actions' }, readAll) : null, list);

  const draw = () => {
    const items = notify.all();
    if (!items.length) return list.replaceChildren(empty('No notifications yet.'));
    list.replaceChildren(h('ul', { class: 'cards notifications' }, items.map((n) => {
      const mark = !n.read && canRead ? h('button', { type: 'button', class: 'secondary small', 'aria-label': `Mark as read: ${n.message}` }, 'Mark as read') : null;
      mark?.addEventListener('click', async () => {
        try {
          await notifApi.read(n.id);
          notify.markRead(n.id);
        } catch (err) {
          announce(errorText(err), true);
        }
      });
      return h('li', { class: `card row${n.read ? '' : ' unread'}`, 'data-kind': n.kind },
        h('div', {},
          h('p', { class: 'meta' }, n.read ? '' : h('span', { class: 'dot' }, 'New · '), KIND_LABEL[n.kind] || 'Notice', ' · ', timeEl(n.createdAt)),
          h('p', {}, n.message),
          linkFor(n) ? h('p', {}, followLink(n, canRead)) : null),
        mark);
    })));
  };
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
}
