// The app shell: who is signed in, the navigation for their role, hash routing (`#/files`,
// `#/patients/<id>`), focus and title on every view change, and the skip link.
// Views live in views/*.js; each exports functions `(ctx) => void` that fill `ctx.root`.

import { users, has } from './endpoints.js';
import { onSignedOut } from './api.js';
import { h, announce } from './ui.js';
import * as notify from './notify.js';
import * as authViews from './views/auth.js';
import * as accountViews from './views/account.js';
import * as peopleViews from './views/people.js';
import * as fileViews from './views/files.js';
import * as doctorViews from './views/doctor.js';

const HINT = 'auravita.signedIn';

/** `needs`: API paths the screen cannot work without (checked against /openapi.json). */
const ROUTES = [
  { path: '/signin', title: 'Sign in', guest: true, view: authViews.signin },
  { path: '/signup', title: 'Create your account', guest: true, view: authViews.signup },
  { path: '/files', title: 'My files', roles: ['patient'], view: fileViews.list, needs: ['/protected/resource/userFiles'] },
  { path: '/upload', title: 'Upload a file', roles: ['patient'], view: fileViews.upload, needs: ['/protected/resource/uploadFile'] },
  { path: '/files/:id/share', title: 'Share a file', roles: ['patient'], view: fileViews.share, needs: ['/protected/resource/createFileAccess/{file_id}'] },
  { path: '/doctors', title: 'Find a doctor', roles: ['patient'], view: peopleViews.findDoctors, needs: ['/protected/user/searchDoctorByName'] },
  { path: '/requests', title: 'Connection requests', view: peopleViews.requests, needs: ['/protected/user/getConnectionRequests'] },
  { path: '/connections', title: 'My doctors', roles: ['patient'], view: peopleViews.connections, needs: ['/protected/user/connections'] },
  { path: '/access', title: 'Access you gave', roles: ['patient'], view: fileViews.accessGiven, needs: ['/protected/resource/accessGiven'] },
  { path: '/ledger', title: 'Who saw my files', roles: ['patient'], view: fileViews.ledger, needs: ['/protected/resource/accessLog'] },
  { path: '/patients', title: 'My patients', roles: ['doctor'], view: doctorViews.patients, needs: ['/protected/user/connections'] },
  { path: '/patients/:id', title: 'Patient files', roles: ['doctor'], view: doctorViews.patientFiles, needs: ['/protected/resource/patientFileData/{patient_id}'] },
  { path: '/shared', title: 'Shared with me', roles: ['doctor'], view: doctorViews.sharedWithMe, needs: ['/protected/resource/sharedWithMe'] },
  { path: '/register-patient', title: 'Register a patient', roles: ['doctor'], view: doctorViews.registerPatient, needs: ['/protected/user/createPatient'] },
  { path: '/notifications', title: 'Notifications', view: accountViews.notifications },
  { path: '/profile', title: 'My profile', view: accountViews.profile },
  { path: '/sessions', title: 'Signed-in devices', view: accountViews.sessions, needs: ['/protected/user/sessions'] },
];

const NAV = {
  guest: [['/signin', 'Sign in'], ['/signup', 'Create account']],
  patient: [['/files', 'My files'], ['/upload', 'Upload'], ['/doctors', 'Find a doctor'], ['/requests', 'Requests'],
    ['/connections', 'My doctors'], ['/access', 'Access you gave'], ['/ledger', 'Access log'], ['/profile', 'Profile']],
  doctor: [['/requests', 'Requests'], ['/patients', 'Patients'], ['/shared', 'Shared with me'],
    ['/register-patient', 'Register a patient'], ['/profile', 'Profile']],
};

const HOME = { patient: '/files', doctor: '/requests' };

export const session = { me: null };

function match(path) {
  for (const r of ROUTES) {
    const names = [];
    const re = new RegExp('^' + r.path.replace(/:(\w+)/g, (_, n) => { names.push(n); return '([^/]+)'; }) + '$');
    const m = path.match(re);
    if (!m) continue;
    try {
      return { route: r, params: Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(m[i + 1])])) };
    } catch {
      return null; // A malformed escape (#/patients/%E0): the page for unknown addresses.
    }
  }
  return null;
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs] = raw.split('?');
  return { path: path || '/', query: new URLSearchParams(qs || '') };
}

export function navigate(path) {
  if (location.hash === '#' + path) render();
  else location.hash = path;
}

function role() {
  return session.me ? session.me.user.role : 'guest';
}

function renderShell() {
  const r = role();
  const nav = document.getElementById('nav-list');
  const { path } = parseHash();
  nav.replaceChildren(...NAV[r].map(([p, label]) => h('li', {},
    h('a', { href: '#' + p, 'aria-current': path === p || path.startsWith(p + '/') ? 'page' : null }, label))));
  const signedIn = !!session.me;
  document.getElementById('user-tools').hidden = !signedIn;
  const who = document.getElementById('who');
  who.textContent = signedIn ? `${session.me.user.name} · ${r === 'doctor' ? 'Doctor' : 'Patient'}` : '';
  document.body.dataset.role = r;
}

let renderSeq = 0;
let firstRender = true;

async function render() {
  const seq = ++renderSeq;
  const { path, query } = parseHash();
  closeMenu();
  const main = document.getElementById('main');
  if (path === '/') return navigate(session.me ? HOME[role()] : '/signin');
  const found = match(path);
  if (!found) return show(main, 'Page not found', (root) => root.append(
    h('p', {}, 'There is no page at this address.'), h('a', { href: '#/' }, 'Go to the start page')));
  const { route, params } = found;
  if (route.guest && session.me) return navigate(HOME[role()]);
  if (!route.guest && !session.me) {
    sessionStorage.setItem('auravita.after', path);
    return navigate('/signin');
  }
  renderShell();
  if (route.roles && !route.roles.includes(role())) {
    return show(main, route.title, (root) => root.append(
      h('p', { class: 'alert' }, `This page is for ${route.roles.join(' and ')}s.`)));
  }
  if (route.needs) {
    const missing = [];
    for (const n of route.needs) if (!(await has(n))) missing.push(n);
    if (seq !== renderSeq) return;
    if (missing.length) {
      return show(main, route.title, (root) => root.append(h('div', { class: 'alert' },
        h('p', {}, 'This part of Auravita is not available on this server yet.'))));
    }
  }
  show(main, route.title, (root) => route.view({ root, params, query, session, navigate, refreshMe, signedIn, signedOut }));
}

/** Replaces the view: title, heading, then focus on the heading so keyboard and screen-reader users start there. */
function show(main, title, build) {
  document.title = `${title} · Auravita`;
  const heading = h('h1', { tabindex: '-1', id: 'page-title' }, title);
  const root = h('div', { class: 'view' });
  main.replaceChildren(heading, root);
  const done = build(root);
  // On first load the skip link stays first in the tab order; after that each view change
  // moves focus to the new heading.
  if (!firstRender) heading.focus();
  firstRender = false;
  return done;
}

async function refreshMe() {
  session.me = await users.me();
  renderShell();
  return session.me;
}

/** After a code was accepted: load who we are, start notifications, go where the user was heading. */
async function signedIn() {
  localStorage.setItem(HINT, '1');
  await refreshMe();
  notify.start();
  const after = sessionStorage.getItem('auravita.after');
  sessionStorage.removeItem('auravita.after');
  const target = after && match(after) && !match(after).route.guest ? after : HOME[role()];
  navigate(target);
}

function signedOut(message) {
  localStorage.removeItem(HINT);
  session.me = null;
  notify.stop();
  renderShell();
  navigate('/signin');
  if (message) announce(message);
}

function closeMenu() {
  const btn = document.getElementById('menu-toggle');
  btn.setAttribute('aria-expanded', 'false');
  document.getElementById('nav').classList.remove('open');
}

function wireShell() {
  const btn = document.getElementById('menu-toggle');
  btn.addEventListener('click', () => {
    const open = btn.getAttribute('aria-expanded') !== 'true';
    btn.setAttribute('aria-expanded', String(open));
    document.getElementById('nav').classList.toggle('open', open);
    if (open) document.querySelector('#nav a')?.focus();
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && btn.getAttribute('aria-expanded') === 'true') { closeMenu(); btn.focus(); }
  });
  // The skip link must not change the hash (that is the router's).
  document.getElementById('skip').addEventListener('click', (e) => {
    e.preventDefault();
    document.getElementById('main').focus();
  });
  document.getElementById('signout').addEventListener('click', async () => {
    const { auth } = await import('./endpoints.js');
    try {
      await auth.signout();
    } catch {
      // Signing out locally is still right: the server session is gone or unreachable.
    }
    signedOut('You are signed out.');
  });
  onSignedOut(() => {
    if (session.me) signedOut('Your session has ended. Sign in again.');
  });
  window.addEventListener('hashchange', () => {
    if (location.hash.startsWith('#/') || location.hash === '') render();
  });
}

async function boot() {
  wireShell();
  if (localStorage.getItem(HINT)) {
    try {
      session.me = await users.me();
      notify.start();
    } catch {
      localStorage.removeItem(HINT);
      session.me = null;
    }
  }
  renderShell();
  await render();
}

boot();

