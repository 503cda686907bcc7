// Sign-up and sign-in with a one-time code: the phone (country code + number), then the code,
// with resend and its cooldown shown (the server's 429 tells how long to wait). An account with
// two-step sign-in on then asks for the code from an authenticator app (TOTP) before signing in.

import { auth } from '../endpoints.js';
import { ApiError } from '../api.js';
import { h, field, radios, onSubmit, setFieldError, clearErrors, showFormError, announce, sentence, toDate } from '../ui.js';

const COUNTRIES = [
  ['+91', 'India (+91)'], ['+1', 'United States / Canada (+1)'], ['+44', 'United Kingdom (+44)'],
  ['+61', 'Australia (+61)'], ['+971', 'United Arab Emirates (+971)'], ['+65', 'Singapore (+65)'],
  ['+49', 'Germany (+49)'], ['+33', 'France (+33)'], ['+81', 'Japan (+81)'], ['+27', 'South Africa (+27)'],
  ['+234', 'Nigeria (+234)'], ['+880', 'Bangladesh (+880)'], ['+92', 'Pakistan (+92)'], ['+94', 'Sri Lanka (+94)'],
  ['+977', 'Nepal (+977)'],
];
const COOLDOWN_SECS = 60;

/** Country code and national number as two labelled controls; errors for `phone` land below both. */
export function phoneField(name = 'phone') {
  const cc = field({ label: 'Country code', name: `${name}_cc`, type: 'select', options: COUNTRIES, value: '+91', autocomplete: 'tel-country-code' });
  const num = field({ label: 'Phone number', name: `${name}_number`, type: 'tel', required: true, autocomplete: 'tel-national', inputmode: 'tel', placeholder: '98765 43210' });
  const wrap = h('div', { class: 'field phone', 'data-field': name },
    h('div', { class: 'phone-row' }, cc, num),
    h('p', { class: 'field-error', id: `${num.control.id}-perr`, hidden: true }));
  num.control.setAttribute('aria-describedby', `${num.control.getAttribute('aria-describedby')} ${num.control.id}-perr`);
  wrap.value = () => toE164(cc.control.value, num.control.value);
  return wrap;
}

/** `+91` and `098765 43210` → `+919876543210`; a number typed with its own `+` wins. */
export function toE164(cc, raw) {
  const s = String(raw).trim();
  if (s.startsWith('+')) return '+' + s.slice(1).replace(/\D/g, '');
  const digits = s.replace(/\D/g, '').replace(/^0+/, '');
  return cc + digits;
}

/** Why the last sign-in had to start over; shown once above the phone number, until the next try. */
let restartNotice = null;

export function signin(ctx) {
  const phone = phoneField();
  const notice = restartNotice;
  restartNotice = null;
  const form = h('form', { class: 'card narrow', 'aria-label': 'Sign in' },
    notice ? h('div', { class: 'form-error alert error', role: 'alert' }, h('p', {}, notice)) : null,
    h('p', {}, 'We will send a 6-digit code to your phone.'),
    phone,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Send code')),
    h('p', { class: 'aside' }, 'New to Auravita? ', h('a', { href: '#/signup' }, 'Create an account')));
  onSubmit(form, async () => {
    const number = phone.value();
    const d = await auth.signin(number);
    codeStep(ctx, { purpose: 'signin', id: d.id, phone: number, message: d.message });
  });
  ctx.root.append(form);
}

export function signup(ctx) {
  const name = field({ label: 'Full name', name: 'name', required: true, autocomplete: 'name', maxlength: 100 });
  const phone = phoneField();
  const role = radios({ legend: 'I am a', name: 'role', value: 'patient', options: [['patient', 'Patient'], ['doctor', 'Doctor']] });
  const form = h('form', { class: 'card narrow', 'aria-label': 'Create your account' },
    name, phone, role,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Send code')),
    h('p', { class: 'aside' }, 'Already have an account? ', h('a', { href: '#/signin' }, 'Sign in')));
  onSubmit(form, async (fd) => {
    const number = phone.value();
    const d = await auth.signup(number, String(fd.get('name')).trim(), fd.get('role'));
    codeStep(ctx, { purpose: 'signup', id: d.id, phone: number, message: d.message });
  });
  ctx.root.append(form);
}

function codeStep(ctx, challenge) {
  let { id } = challenge;
  const code = field({
    label: '6-digit code', name: 'otp', required: true, inputmode: 'numeric', autocomplete: 'one-time-code',
    maxlength: 6, pattern: '[0-9]{6}', hint: `Sent by SMS to ${challenge.phone}. It works for 5 minutes.`,
  });
  const resend = h('button', { type: 'button', class: 'secondary' }, 'Send a new code');
  const wait = h('p', { class: 'hint cooldown', id: 'cooldown' });
  resend.setAttribute('aria-describedby', 'cooldown');
  const back = h('button', { type: 'button', class: 'link-button' }, 'Use a different number');
  const form = h('form', { class: 'card narrow', 'aria-label': 'Enter your code' },
    h('p', { role: 'status' }, sentence(challenge.message || 'We sent a 6-digit code to your phone.')),
    code,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, challenge.purpose === 'signup' ? 'Create account' : 'Sign in')),
    h('div', { class: 'resend' }, resend, wait),
    back);

  let timer = null;
  const cooldown = (secs) => {
    clearInterval(timer);
    let left = Math.ceil(secs);
    const tick = () => {
      if (!form.isConnected) return clearInterval(timer);
      if (left <= 0) {
        clearInterval(timer);
        resend.disabled = false;
        wait.textContent = 'You can ask for a new code now.';
        return;
      }
      resend.disabled = true;
      wait.textContent = `You can ask for a new code in ${left} s.`;
      left--;
    };
    tick();
    timer = setInterval(tick, 1000);
  };
  cooldown(COOLDOWN_SECS);

  resend.addEventListener('click', async () => {
    clearErrors(form);
    resend.disabled = true;
    try {
      const d = await auth.resend(challenge.purpose, challenge.phone, id);
      id = d.id;
      announce('A new code is on its way.');
      cooldown(COOLDOWN_SECS);
      code.control.focus();
    } catch (err) {
      if (err instanceof ApiError && err.retryAfter) cooldown(err.retryAfter);
      else resend.disabled = false;
      showFormError(form, err);
    }
  });
  back.addEventListener('click', () => ctx.navigate(challenge.purpose === 'signup' ? '/signup' : '/signin'));

  onSubmit(form, async (fd) => {
    const otp = String(fd.get('otp')).replace(/\s/g, '');
    if (!/^\d{6}$/.test(otp)) {
      setFieldError(form, 'otp', 'Enter the 6 digits from the SMS.');
      code.control.focus();
      return;
    }
    if (challenge.purpose === 'signup') await auth.signupVerify(id, otp);
    else {
      const d = await auth.signinVerify(id, otp);
      if (d.secondFactor) {
        clearInterval(timer);
        secondStep(ctx, d.secondFactor);
        return;
      }
    }
    clearInterval(timer);
    await ctx.signedIn();
    announce(challenge.purpose === 'signup' ? 'Welcome to Auravita.' : 'You are signed in.');
  });

  ctx.root.replaceChildren(form);
  document.getElementById('page-title').textContent = 'Enter your code';
  code.control.focus();
}

// ---------------------------------------------------------------- two-step sign-in (TOTP)

/** The server's refusals of an authenticator code, in words (its own message is the fallback). */
const TOTP_WORDS = {
  TOTP_INVALID: 'That code is not right. Enter the code your authenticator app shows for Auravita now.',
  TOTP_DEAD: 'There were too many wrong authenticator codes, so this sign-in was stopped. Start again with your phone number.',
  SECOND_FACTOR_EXPIRED: 'The 5 minutes for entering the authenticator code ran out. Start again with your phone number.',
  SECOND_FACTOR_USED: 'This sign-in was already finished. Start again with your phone number.',
  TOTP_ALREADY_ENABLED: 'Two-step sign-in is already on for your account.',
  TOTP_NOT_ENABLED: 'Two-step sign-in is already off for your account.',
  TOTP_NOT_AVAILABLE: 'Two-step sign-in is not available for accounts that sign in through an identity provider.',
  REAUTH_REQUIRED: 'To turn on two-step sign-in, sign out and sign in again with a code from your phone, then turn it on within 10 minutes.',
};

/** After these the second step cannot go on: the person starts again from the phone number. */
const START_AGAIN = {
  TOTP_DEAD: TOTP_WORDS.TOTP_DEAD,
  SECOND_FACTOR_EXPIRED: TOTP_WORDS.SECOND_FACTOR_EXPIRED,
  SECOND_FACTOR_USED: TOTP_WORDS.SECOND_FACTOR_USED,
  NOT_FOUND: 'This sign-in is no longer waiting for a code. Start again with your phone number.',
};

/** The same error with the words above (attempts left and wait times are still added by errorText). */
export function totpError(err) {
  if (!(err instanceof ApiError) || !TOTP_WORDS[err.code]) return err;
  return new ApiError({ status: err.status, code: err.code, message: TOTP_WORDS[err.code], details: err.details, retryAfter: err.retryAfter });
}

/**
 * A labelled 6-digit code input; its name is the API's, so a refusal blaming that field lands
 * below it. By default the authenticator app's `code`.
 */
export function totpField(hint, { label = '6-digit code from your authenticator app', name = 'code' } = {}) {
  return field({
    label, name, required: true, inputmode: 'numeric',
    autocomplete: 'one-time-code', maxlength: 7, class: 'code-input', spellcheck: false, hint,
  });
}

/** The 6 digits typed (spaces dropped), or null after saying what is wrong next to the field. */
export function totpValue(form, wrap, fd, missing = 'Enter the 6 digits your authenticator app shows.') {
  const name = wrap.control.name;
  const value = String(fd.get(name) || '').replace(/\s/g, '');
  if (/^\d{6}$/.test(value)) return value;
  setFieldError(form, name, missing);
  wrap.control.focus();
  return null;
}

function secondStep(ctx, second) {
  const code = totpField('Open the authenticator app where you added Auravita. Its code changes every 30 seconds.');
  const until = toDate(second.expiresAt);
  const back = h('button', { type: 'button', class: 'link-button' }, 'Start again with your phone number');
  const form = h('form', { class: 'card narrow', 'aria-label': 'Two-step sign-in' },
    h('p', { role: 'status' }, 'Your SMS code was right. Two-step sign-in is on for this account, so one more step: enter the 6-digit code from your authenticator app.'),
    h('p', { class: 'hint' }, until
      ? `Enter it by ${until.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })}.`
      : 'Enter it within 5 minutes.'),
    code,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Sign in')),
    back);
  back.addEventListener('click', () => ctx.navigate('/signin'));

  onSubmit(form, async (fd) => {
    const value = totpValue(form, code, fd);
    if (!value) return;
    try {
      await auth.signinTotp(second.id, value);
    } catch (err) {
      if (err instanceof ApiError && START_AGAIN[err.code]) {
        restartNotice = START_AGAIN[err.code];
        ctx.navigate('/signin');
        return;
      }
      throw totpError(err);
    }
    await ctx.signedIn();
    announce('You are signed in.');
  });

  ctx.root.replaceChildren(form);
  document.getElementById('page-title').textContent = 'Two-step sign-in';
  code.control.focus();
}
