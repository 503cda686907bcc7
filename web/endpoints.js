// Every API route the client uses, and the adapters that turn each answer into the shape the
// views read. When a route or a response shape changes, this is the only file to edit.
// The shapes are the server's (src/users, src/files, src/notifications; /openapi.json); the views
// never read raw answers, only what these functions return.

import { get, post, call, upload as xhrUpload, availableRoutes } from './api.js';

const enc = encodeURIComponent;
const arr = (v) => (Array.isArray(v) ? v : []);

/** Whether the server serves `path` (an OpenAPI path such as `/protected/resource/userFiles`). */
export async function has(path) {
  return (await availableRoutes()).has(path);
}

// ---------------------------------------------------------------- auth (§3, built)

export const auth = {
  signup: (phone, name, role) => post('/auth/signup', { phone, name, role }),
  signupVerify: (id, otp) => post(`/auth/signup/verify/${enc(id)}`, { otp }),
  signin: (phone) => post('/auth/signin', { phone }),
  /**
   * `{success, session}` with the session cookie; when the account has two-step sign-in on,
   * `{success: false, session: null, second_factor: {id, method: totp, expires_at}}` and no cookie yet.
   * Gives `{signedIn, secondFactor: {id, method, expiresAt} | null}`.
   */
  async signinVerify(id, otp) {
    const d = (await post(`/auth/signin/verify/${enc(id)}`, { otp })) || {};
    const sf = d.second_factor;
    return {
      signedIn: !sf,
      secondFactor: sf ? { id: sf.id, method: sf.method || 'totp', expiresAt: sf.expires_at || null } : null,
    };
  },
  /** The second step: `{success, session}` with the session cookie. */
  signinTotp: (id, code) => post(`/auth/signin/totp/${enc(id)}`, { code }),
  resend: (purpose, phone, id) => post(`/auth/${purpose}/resendotp`, purpose === 'signup' && id ? { phone, id } : { phone }),
  signout: () => post('/auth/signout'),
};

// ---------------------------------------------------------------- users (§4, branch `users`)

/** A person as shown anywhere: `{id, name, role, verified, specialization, phone}`. */
function person(p) {
  p = p || {};
  return {
    id: p.id,
    name: p.name || 'Unnamed',
    role: p.role,
    verified: !!p.verified,
    specialization: p.specialization || null,
    qualification: p.qualification || null,
    registrationNumber: p.registration_number || null,
    years: p.years_of_experience ?? null,
    phone: p.phone || null,
  };
}

/** Connection: `{id, peer: {...}, peer_phone, created_at}`. */
function connection(c) {
  const peer = person(c.peer || c.doctor || c.patient);
  if (!peer.phone && c.peer_phone) peer.phone = c.peer_phone;
  return { id: c.id, peer, createdAt: c.created_at };
}

/** Request: `{id, peer, note, status, created_at, decided_at}`. */
function request(r) {
  return {
    id: r.id,
    peer: person(r.peer),
    note: r.note || '',
    status: r.status || 'pending',
    createdAt: r.created_at,
  };
}

export const users = {
  /** `{user, profile, connections}` */
  async me() {
    const d = await get('/protected/user/sessionDetail');
    return { user: d.user, profile: d.profile || {}, connections: arr(d.connections).map(connection) };
  },
  /** body: `{name?, specialization?, qualification?, registration_number?, years_of_experience?}` */
  updateProfile: (body) => post('/protected/user/updateProfile', body),
  /** `{success, patient_id, connection}` */
  createPatient: (name, phone) => post('/protected/user/createPatient', { name, phone }),
  deleteProfile: () => post('/protected/user/deleteProfile'),

  /** `{success, request_id, doctor}`; optional note ≤ 200 chars. */
  requestDoctor: (doctorId, note) =>
    post(`/protected/user/connectionRequest/${enc(doctorId)}`, note ? { note } : undefined),
  accept: (id) => post(`/protected/user/acceptConnectionRequest/${enc(id)}`),
  reject: (id) => post(`/protected/user/rejectConnectionRequest/${enc(id)}`),
  cancelRequest: (id) => post(`/protected/user/deletePendingRequest/${enc(id)}`),
  /** `{incoming[], outgoing[]}` */
  async requests() {
    const d = await get('/protected/user/getConnectionRequests');
    return { incoming: arr(d.incoming).map(request), outgoing: arr(d.outgoing).map(request) };
  },
  async connections() {
    const d = await get('/protected/user/connections');
    return arr(d.connections).map(connection);
  },
  deleteConnection: (id) => post(`/protected/user/deleteConnection/${enc(id)}`),

  /** `{doctors[], page, limit, has_more}` */
  async searchByName(name, page = 1, limit = 10) {
    const d = await get('/protected/user/searchDoctorByName', { name, page, limit });
    return { doctors: arr(d.doctors).map(person), page: d.page || page, hasMore: !!d.has_more };
  },
  /** `{doctor}` */
  async searchByNumber(phone) {
    const d = await get('/protected/user/searchDoctorByNumber', { phone });
    return d.doctor ? [person(d.doctor)] : [];
  },

  /** `{sessions: [{id, device, ip, created_at, last_seen_at, current}]}` */
  async sessions() {
    const d = await get('/protected/user/sessions');
    return arr(d.sessions).map((s) => ({
      id: s.id, device: s.device || 'Unknown device', ip: s.ip || '', createdAt: s.created_at,
      lastSeenAt: s.last_seen_at, current: !!s.current,
    }));
  },
  revokeSession: (id) => post(`/protected/user/revokeSession/${enc(id)}`),
  signoutEverywhere: () => post('/protected/user/signoutEverywhere'),
};

// ---------------------------------------------------------------- two-step sign-in (TOTP)

/** `{enabled, enabled_at, pending}` (+ `signed_out_sessions` after enabling). */
function totpState(d) {
  d = d || {};
  const n = Number(d.signed_out_sessions);
  return {
    enabled: !!d.enabled,
    enabledAt: d.enabled_at || null,
    pending: !!d.pending,
    signedOutSessions: Number.isFinite(n) ? n : null,
  };
}

function smsSent(d) {
  d = d || {};
  return { sentTo: String(d.sent_to || ''), expiresAt: d.expires_at || null };
}

export const totp = {
  status: async () => totpState(await get('/protected/user/totp')),
  /**
   * `{secret, otpauth_uri, sms: {sent_to, expires_at}}`: a new setup replaces an unconfirmed one
   * (409 TOTP_ALREADY_ENABLED when on) and sends a code by SMS, which turning it on takes too.
   */
  async setup() {
    const d = await post('/protected/user/totp/setup');
    return { secret: String(d.secret || ''), uri: d.otpauth_uri || '', sms: smsSent(d.sms) };
  },
  /** `{sent_to, expires_at}`: a new SMS code for the waiting setup (the one before stops working). */
  resendSms: async () => smsSent(await post('/protected/user/totp/sms')),
  /** `{enabled: true, enabled_at, pending: false, signed_out_sessions}`: every other device is signed out. */
  enable: async (code, smsCode) => totpState(await post('/protected/user/totp/enable', { code, sms_code: smsCode })),
  /** `{enabled: false, enabled_at: null, pending: false}` */
  disable: async (code) => totpState(await post('/protected/user/totp/disable', { code })),
};

// ---------------------------------------------------------------- files (§5, branch `files`)

/**
 * A file. The owner's list gives FileView `{id, file_name, content_type, size_bytes, sha256, tags[],
 * report_type, report_date, created_at}`; a doctor's lists (sharedWithMe, patientFileData) give
 * SharedFileView `{file: FileView, access_id, access_kind: grant|share, granted_at, expires_at, patient: {id, name}}`.
 */
function file(raw) {
  raw = raw || {};
  const f = raw.file || raw;
  return {
    id: f.id,
    name: f.file_name || 'Untitled file',
    size: Number(f.size_bytes),
    type: f.content_type || '',
    tags: arr(f.tags),
    reportType: f.report_type || null,
    reportDate: f.report_date || null,
    createdAt: f.created_at,
    // Doctor-side fields.
    accessId: raw.access_id || null,
    kind: raw.access_kind || null,
    grantedAt: raw.granted_at || null,
    expiresAt: raw.expires_at || null,
    patient: raw.patient ? person(raw.patient) : null,
  };
}

export const FILE_LIMIT_BYTES = 5 * 1024 * 1024;
export const FILE_TYPES = {
  'application/pdf': 'PDF', 'image/png': 'PNG', 'image/jpeg': 'JPEG', 'image/webp': 'WebP', 'application/dicom': 'DICOM',
};
export const FILE_EXTENSIONS = ['pdf', 'png', 'jpg', 'jpeg', 'webp', 'dcm', 'dicom'];
export const PAGE_SIZE = 10;

export const files = {
  /** `{files[], total, page, per_page}` for `userFiles?q=<page>` (10 a page, newest first). */
  async list(page = 1) {
    const d = await get('/protected/resource/userFiles', { q: page });
    const total = Number(d.total);
    return { files: arr(d.files).map(file), page, total: Number.isFinite(total) ? total : null, perPage: d.per_page || PAGE_SIZE };
  },
  /**
   * multipart `file`, `tags[]` (one part per tag), `report_type`, `report_date`.
   * Returns `{promise, abort}`; the promise gives the answer's data `{detail, file}`.
   */
  upload({ file: blob, tags, reportType, reportDate }, onProgress) {
    const fd = new FormData();
    fd.append('file', blob, blob.name);
    for (const t of tags) fd.append('tags[]', t);
    if (reportType) fd.append('report_type', reportType);
    if (reportDate) fd.append('report_date', reportDate);
    return xhrUpload('/protected/resource/uploadFile', fd, onProgress);
  },
  /** `{url, detail}`: the owner (`o=t`) or a grantee (`o=f`). */
  async url(id, owner) {
    const d = await get(`/protected/resource/fileURL/${enc(id)}`, { o: owner ? 't' : 'f' });
    return d.url;
  },
  /** `{url, detail, expires_at, access_id}` under one grant or share (410 once revoked or expired). */
  async sharedUrl(accessId) {
    const d = await get(`/protected/resource/sharedFileURL/${enc(accessId)}`);
    return d.url;
  },
  /** Permanent grant, optionally ending after `minutes` (`&e=`). */
  grant: (id, userId, minutes) =>
    post(`/protected/resource/createFileAccess/${enc(id)}`, undefined, { p: userId, t: 'r', e: minutes || undefined }),
  revoke: (id, userId) => post(`/protected/resource/revokeFileAccess/${enc(id)}`, undefined, { p: userId }),
  /** `{detail, access_id, expires_at}` */
  share30: (id, userId) => post(`/protected/resource/tempFileShare/${enc(id)}`, undefined, { p: userId, t: 'r' }),
  remove: (id) => post(`/protected/resource/deleteFile/${enc(id)}`),
  /** `{files: SharedFileView[]}`: what one patient shares with the calling doctor right now. */
  async patientFiles(patientId) {
    const d = await get(`/protected/resource/patientFileData/${enc(patientId)}`);
    return arr(d.files).map(file);
  },
  /** `{files: SharedFileView[]}`: everything shared with the calling doctor right now. */
  async sharedWithMe() {
    const d = await get('/protected/resource/sharedWithMe');
    return arr(d.files).map(file);
  },
  /**
   * The access the caller (a patient) gave and that is still live, newest first, 50 a page:
   * `{access: [{access_id, access_kind: grant|share, granted_at, expires_at, file: {id, name},
   * doctor: {id, name, verified}}], total, page, per_page}`; `fileId` limits it to one file.
   */
  async accessGiven({ fileId, page = 1 } = {}) {
    const d = await get('/protected/resource/accessGiven', { f: fileId, page });
    const perPage = Number(d.per_page) || 50;
    const total = Number(d.total) || 0;
    return {
      page,
      perPage,
      total,
      pages: Math.max(1, Math.ceil(total / perPage)),
      hasMore: page * perPage < total,
      access: arr(d.access).map((a) => ({
        accessId: a.access_id,
        kind: a.access_kind === 'share' ? 'share' : 'grant',
        grantedAt: a.granted_at || null,
        expiresAt: a.expires_at || null,
        file: { id: (a.file && a.file.id) || '', name: (a.file && a.file.name) || 'Untitled file' },
        doctor: person(a.doctor),
      })),
    };
  },
  /**
   * `{entries[], total, page, per_page}`, each `{id, action: read|grant|revoke|share|delete,
   * actor: {id, name}, file_id, file_name, access_id, subject: {id, name}|null, at, ip, user_agent}`.
   */
  async accessLog(page = 1) {
    const d = await get('/protected/resource/accessLog', { page });
    const perPage = d.per_page || 20;
    return {
      page,
      total: Number(d.total) || 0,
      hasMore: page * perPage < (Number(d.total) || 0),
      entries: arr(d.entries).map((e) => ({
        id: e.id,
        at: e.at,
        action: e.action || '',
        actor: (e.actor && e.actor.name) || '—',
        actorId: (e.actor && e.actor.id) || '',
        subject: (e.subject && e.subject.name) || null,
        file: e.file_name || '—',
        accessId: e.access_id || '',
        device: [deviceName(e.user_agent), e.ip].filter(Boolean).join(' · '),
      })),
    };
  },
};

/** A short name for a browser from its user agent ("Chrome on Linux"), or the raw text. */
export function deviceName(ua) {
  if (!ua) return '';
  const browser = /Edg\//.test(ua) ? 'Edge' : /Firefox\//.test(ua) ? 'Firefox' : /(Chrome|Chromium)\//.test(ua) ? 'Chrome'
    : /Safari\//.test(ua) ? 'Safari' : null;
  const os = /Android/.test(ua) ? 'Android' : /iPhone|iPad/.test(ua) ? 'iOS' : /Windows/.test(ua) ? 'Windows'
    : /Mac OS X/.test(ua) ? 'macOS' : /Linux/.test(ua) ? 'Linux' : null;
  if (browser && os) return `${browser} on ${os}`;
  return browser || os || (ua.length > 40 ? ua.slice(0, 40) + '…' : ua);
}

// ---------------------------------------------------------------- notifications (§6, branch `notify`)

/** `{id, kind, message, data, created_at, read, this_session, can_mark_read}`: `this_session`
 *  marks a sign-in alert about the session reading it; `can_mark_read` is false for a sign-in
 *  alert this session may not mark read (its own, or an older live session's). */
export function notification(n) {
  return { id: String(n.id), kind: n.kind || '', message: n.message || '', data: n.data || {}, createdAt: n.created_at, read: !!n.read, thisSession: !!n.this_session, canMarkRead: n.can_mark_read !== false };
}

export const notifications = {
  streamPath: '/protected/notification/notify',
  /** `{notifications[], page, page_size, total, unread}` for `list?page=` (20 a page, newest first). */
  async list(page = 1) {
    const d = await get('/protected/notification/list', { page });
    const size = d.page_size || 20;
    return { items: arr(d.notifications).map(notification), hasMore: page * size < (Number(d.total) || 0), unread: d.unread ?? null };
  },
  read: (id) => post(`/protected/notification/readNotification/${enc(id)}`),
  readAll: () => post('/protected/notification/readAll'),
};

export { call };
