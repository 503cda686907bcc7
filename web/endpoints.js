// Every API route the client uses, and the adapters that turn each answer into the shape the
// views read. When a route or a response shape changes, this is the only file to edit.
// Entries marked ASSUMED follow PRODUCT.md / the seed because the route was not yet built when
// this was written; the views never read raw answers, only what these functions return.

import { get, post, call, upload as xhrUpload, availableRoutes } from './api.js';

const enc = encodeURIComponent;
const arr = (v) => (Array.isArray(v) ? v : []);
const first = (o, ...keys) => {
  for (const k of keys) if (o && o[k] !== undefined && o[k] !== null) return o[k];
  return undefined;
};

/** Whether the server serves `path` (an OpenAPI path such as `/protected/resource/userFiles`). */
export async function has(path) {
  return (await availableRoutes()).has(path);
}

// ---------------------------------------------------------------- auth (§3, built)

export const auth = {
  signup: (phone, name, role) => post('/auth/signup', { phone, name, role }),
  signupVerify: (id, otp) => post(`/auth/signup/verify/${enc(id)}`, { otp }),
  signin: (phone) => post('/auth/signin', { phone }),
  signinVerify: (id, otp) => post(`/auth/signin/verify/${enc(id)}`, { otp }),
  resend: (purpose, phone) => post(`/auth/${purpose}/resendotp`, { phone }),
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

// ---------------------------------------------------------------- files (§5, branch `files`)

/**
 * ASSUMED file shape: `{id, file_name|name, size_bytes|size, content_type, tags[], report_type,
 * report_date, created_at, shared_with?: [{user_id|grantee_id, name, kind, expires_at, access_id}]}`.
 */
function file(f) {
  f = f || {};
  return {
    id: first(f, 'id', 'file_id'),
    name: first(f, 'file_name', 'name', 'filename') || 'Untitled file',
    size: Number(first(f, 'size_bytes', 'size')),
    type: first(f, 'content_type', 'type') || '',
    tags: arr(f.tags),
    reportType: f.report_type || null,
    reportDate: f.report_date || null,
    createdAt: first(f, 'created_at', 'uploaded_at'),
    sharedWith: arr(first(f, 'shared_with', 'grants', 'access')).map((g) => ({
      userId: first(g, 'grantee_id', 'user_id', 'doctor_id'),
      name: first(g, 'grantee_name', 'name') || (g.grantee && g.grantee.name) || 'A doctor',
      kind: g.kind || 'grant',
      expiresAt: first(g, 'expires_at', 'ends_at'),
      accessId: first(g, 'access_id', 'id'),
    })),
    // Doctor-side fields (sharedWithMe / patientFileData).
    accessId: first(f, 'access_id', 'grant_id'),
    kind: f.kind || null,
    expiresAt: first(f, 'expires_at', 'ends_at'),
    patient: f.patient ? person(f.patient) : (f.owner ? person(f.owner) : null),
  };
}

export const FILE_LIMIT_BYTES = 5 * 1024 * 1024;
export const FILE_TYPES = {
  'application/pdf': 'PDF', 'image/png': 'PNG', 'image/jpeg': 'JPEG', 'image/webp': 'WebP', 'application/dicom': 'DICOM',
};
export const FILE_EXTENSIONS = ['pdf', 'png', 'jpg', 'jpeg', 'webp', 'dcm', 'dicom'];
export const PAGE_SIZE = 10;

export const files = {
  /** ASSUMED `{files[], total, page}` for `userFiles?q=<page>` (10 a page, newest first). */
  async list(page = 1) {
    const d = await get('/protected/resource/userFiles', { q: page });
    const list = arr(d.files).map(file);
    const total = Number(first(d, 'total', 'count'));
    return { files: list, page, total: Number.isFinite(total) ? total : null, hasMore: d.has_more ?? null };
  },
  /**
   * multipart `file`, `tags[]` (one part per tag), `report_type`, `report_date`.
   * Returns `{promise, abort}`; the promise gives the answer's data (ASSUMED `{detail, file?}`).
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
  /** `{url, detail}` for a 30-minute share. */
  async sharedUrl(accessId) {
    const d = await get(`/protected/resource/sharedFileURL/${enc(accessId)}`);
    return d.url;
  },
  /** Permanent grant, optionally ending after `minutes` (`&e=`). */
  grant: (id, userId, minutes) =>
    post(`/protected/resource/createFileAccess/${enc(id)}`, undefined, { p: userId, t: 'r', e: minutes || undefined }),
  revoke: (id, userId) => post(`/protected/resource/revokeFileAccess/${enc(id)}`, undefined, { p: userId }),
  /** `{detail, access_id}` */
  share30: (id, userId) => post(`/protected/resource/tempFileShare/${enc(id)}`, undefined, { p: userId, t: 'r' }),
  remove: (id) => post(`/protected/resource/deleteFile/${enc(id)}`),
  /** ASSUMED `{files[]}`, each with access_id/kind/expires_at for the doctor. */
  async patientFiles(patientId) {
    const d = await get(`/protected/resource/patientFileData/${enc(patientId)}`);
    return arr(d.files).map(file);
  },
  /** ASSUMED `{files[]}` (or `{items[]}`), each with `patient`, `access_id`, `kind`, `expires_at`. */
  async sharedWithMe() {
    const d = await get('/protected/resource/sharedWithMe');
    return arr(first(d, 'files', 'items', 'shared')).map(file);
  },
  /**
   * ASSUMED `{entries[]}` (or `{events[]}`, `{log[]}`), each
   * `{at|created_at, action, actor: {id, name}, file: {id, name} | file_name, grant_id, device, ip}`.
   */
  async accessLog(page = 1) {
    const d = await get('/protected/resource/accessLog', { page });
    const rows = arr(first(d, 'entries', 'events', 'log', 'items'));
    return {
      page,
      hasMore: !!d.has_more,
      entries: rows.map((e) => ({
        at: first(e, 'at', 'created_at', 'timestamp'),
        action: first(e, 'action', 'kind', 'event') || '',
        actor: first(e, 'actor_name', 'by_name') || (e.actor && e.actor.name) || (e.by && e.by.name) || '—',
        file: first(e, 'file_name') || (e.file && (e.file.name || e.file.file_name)) || '—',
        grantId: first(e, 'grant_id', 'access_id') || '',
        device: [first(e, 'device', 'user_agent'), e.ip].filter(Boolean).join(' · '),
      })),
    };
  },
};

// ---------------------------------------------------------------- notifications (§6, branch `notify`)

/** `{id, kind, message, data, created_at, read}` */
export function notification(n) {
  return { id: String(n.id), kind: n.kind || '', message: n.message || '', data: n.data || {}, createdAt: n.created_at, read: !!n.read };
}

export const notifications = {
  streamPath: '/protected/notification/notify',
  /** ASSUMED `{notifications[], page, has_more, unread?}` for `list?page=`. */
  async list(page = 1) {
    const d = await get('/protected/notification/list', { page });
    return { items: arr(first(d, 'notifications', 'items')).map(notification), hasMore: !!d.has_more, unread: d.unread ?? null };
  },
  read: (id) => post(`/protected/notification/readNotification/${enc(id)}`),
  readAll: () => post('/protected/notification/readAll'),
};

export { call };
