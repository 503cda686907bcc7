//! Every setting, as a command-line flag with an `AURAVITA_*` environment fallback. The defaults
//! all derive from the data folder, so `auravita serve` runs with no set-up at all.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

#[derive(Parser, Debug)]
#[command(
    name = "auravita",
    version,
    about = "Medical documents, shared on the patient's terms"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the API and the web client (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Operator tasks.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Mark a doctor as verified after checking the registration number. The number you checked
    /// must be the one the doctor has on file now.
    VerifyDoctor {
        #[command(flatten)]
        doctor: DoctorArg,
        #[arg(long)]
        registration_number: String,
    },
    /// Take a doctor's verification back.
    UnverifyDoctor {
        #[command(flatten)]
        doctor: DoctorArg,
    },
}

/// The doctor an admin command acts on: by phone, or by the identity provider's subject (for a
/// doctor who signs in only through `AURAVITA_OIDC_ISSUER` and may have no phone).
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct DoctorArg {
    #[arg(long)]
    pub phone: Option<String>,
    /// The `sub` of the doctor's tokens from the configured issuer.
    #[arg(long)]
    pub oidc_subject: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct Config {
    /// Listen address.
    #[arg(
        long,
        env = "AURAVITA_BIND",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub bind: SocketAddr,

    /// Public base URL: decides cookie `Secure`, links and the allowed `Origin`.
    #[arg(
        long,
        env = "AURAVITA_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub public_url: url::Url,

    /// Folder for the embedded defaults (SQLite database, objects, secret).
    #[arg(
        long,
        env = "AURAVITA_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// `sqlite://...` or `postgres://...`; default `sqlite://<data dir>/auravita.db`.
    #[arg(
        long,
        env = "AURAVITA_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<SecretString>,

    /// `file:///path` or `s3://bucket`; default `file://<data dir>/objects`.
    #[arg(long, env = "AURAVITA_STORAGE_URL", global = true)]
    pub storage_url: Option<String>,

    #[arg(long, env = "AURAVITA_S3_ENDPOINT", global = true)]
    pub s3_endpoint: Option<String>,
    #[arg(
        long,
        env = "AURAVITA_S3_REGION",
        default_value = "us-east-1",
        global = true
    )]
    pub s3_region: String,
    #[arg(
        long,
        env = "AURAVITA_S3_ACCESS_KEY_ID",
        global = true,
        hide_env_values = true
    )]
    pub s3_access_key_id: Option<String>,
    #[arg(
        long,
        env = "AURAVITA_S3_SECRET_ACCESS_KEY",
        global = true,
        hide_env_values = true
    )]
    pub s3_secret_access_key: Option<SecretString>,

    /// `console` (codes in the log) or `twilio`.
    #[arg(long, env = "AURAVITA_SMS", default_value = "console", global = true)]
    pub sms: String,
    #[arg(long, env = "AURAVITA_TWILIO_ACCOUNT_SID", global = true)]
    pub twilio_account_sid: Option<String>,
    #[arg(
        long,
        env = "AURAVITA_TWILIO_AUTH_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub twilio_auth_token: Option<SecretString>,
    #[arg(long, env = "AURAVITA_TWILIO_FROM", global = true)]
    pub twilio_from: Option<String>,
    #[arg(
        long,
        env = "AURAVITA_TWILIO_API_BASE",
        default_value = "https://api.twilio.com",
        global = true
    )]
    pub twilio_api_base: String,
    /// Every SMS is also appended here as one JSON line `{"to","body","sent_at"}`.
    #[arg(long, env = "AURAVITA_SMS_OUTBOX", global = true)]
    pub sms_outbox: Option<PathBuf>,

    /// Key for OTP hashing and local download links; default: generated once in the data folder.
    /// Every instance behind one load balancer must share it.
    #[arg(long, env = "AURAVITA_SECRET", global = true, hide_env_values = true)]
    pub secret: Option<SecretString>,

    #[arg(long, env = "AURAVITA_OIDC_ISSUER", global = true)]
    pub oidc_issuer: Option<String>,
    #[arg(long, env = "AURAVITA_OIDC_AUDIENCE", global = true)]
    pub oidc_audience: Option<String>,
    #[arg(long, env = "AURAVITA_OIDC_JWKS_URL", global = true)]
    pub oidc_jwks_url: Option<String>,

    /// Take the client address from the last `X-Forwarded-For` hop (only behind a trusted proxy).
    #[arg(
        long,
        env = "AURAVITA_TRUST_PROXY",
        default_value_t = false,
        global = true
    )]
    pub trust_proxy: bool,

    #[command(flatten)]
    pub limits: Limits,
}

/// The numbers behind the security rules; all configurable, defaults as in the product contract.
#[derive(Args, Debug, Clone)]
pub struct Limits {
    /// Lifetime of a one-time code, seconds.
    #[arg(
        long,
        env = "AURAVITA_OTP_TTL_SECS",
        default_value_t = 300,
        global = true
    )]
    pub otp_ttl_secs: i64,
    /// Wrong tries before a code is dead.
    #[arg(
        long,
        env = "AURAVITA_OTP_MAX_ATTEMPTS",
        default_value_t = 5,
        global = true
    )]
    pub otp_max_attempts: i64,
    /// Minimum seconds between two codes to one phone.
    #[arg(
        long,
        env = "AURAVITA_OTP_COOLDOWN_SECS",
        default_value_t = 60,
        global = true
    )]
    pub otp_cooldown_secs: i64,
    /// Codes per phone per hour.
    #[arg(
        long,
        env = "AURAVITA_OTP_PER_HOUR",
        default_value_t = 5,
        global = true
    )]
    pub otp_per_hour: i64,
    /// Codes one phone receives per hour in all its lanes together (its own and its devices',
    /// `crate::auth::device`). The phone's own lane may use this minus `AURAVITA_OTP_PER_HOUR`
    /// or minus half of it, whichever leaves more (`otp::phone_lane_share`); the rest is kept
    /// for the owner's browsers.
    #[arg(
        long,
        env = "AURAVITA_OTP_PHONE_PER_HOUR",
        default_value_t = 10,
        global = true
    )]
    pub otp_phone_per_hour: i64,
    /// First back-off after a code dies of wrong tries, seconds; doubles each time, up to the max.
    #[arg(
        long,
        env = "AURAVITA_OTP_BACKOFF_SECS",
        default_value_t = 30,
        global = true
    )]
    pub otp_backoff_secs: i64,
    #[arg(
        long,
        env = "AURAVITA_OTP_BACKOFF_MAX_SECS",
        default_value_t = 3600,
        global = true
    )]
    pub otp_backoff_max_secs: i64,
    /// How long a device cookie gives its browser its own lane of the per-phone code limits,
    /// days from the sign-in that set it (`crate::auth::device`).
    #[arg(
        long,
        env = "AURAVITA_DEVICE_COOKIE_DAYS",
        default_value_t = 180,
        global = true
    )]
    pub device_cookie_days: i64,
    /// Requests per client IP per minute on `/auth`.
    #[arg(
        long,
        env = "AURAVITA_AUTH_IP_PER_MINUTE",
        default_value_t = 30,
        global = true
    )]
    pub auth_ip_per_minute: i64,
    /// Session idle timeout, seconds.
    #[arg(
        long,
        env = "AURAVITA_SESSION_IDLE_SECS",
        default_value_t = 1800,
        global = true
    )]
    pub session_idle_secs: i64,
    /// Session absolute lifetime, seconds.
    #[arg(
        long,
        env = "AURAVITA_SESSION_ABSOLUTE_SECS",
        default_value_t = 43200,
        global = true
    )]
    pub session_absolute_secs: i64,
    /// Largest upload, bytes.
    #[arg(long, env = "AURAVITA_MAX_UPLOAD_BYTES", default_value_t = 5 * 1024 * 1024, global = true)]
    pub max_upload_bytes: u64,
    /// Live notification streams per user; the oldest is closed first.
    #[arg(
        long,
        env = "AURAVITA_MAX_STREAMS_PER_USER",
        default_value_t = 5,
        global = true
    )]
    pub max_streams_per_user: usize,
    /// Seconds between keep-alive comments on a notification stream (each also re-checks the
    /// stream's session).
    #[arg(
        long,
        env = "AURAVITA_SSE_KEEPALIVE_SECS",
        default_value_t = 15,
        global = true
    )]
    pub sse_keepalive_secs: u64,
    /// Seconds the server waits on a client: for a request's head (then the connection is
    /// closed), between requests on one connection (closed too), and between two pieces of a
    /// request's body (408). Nothing else is timed: a steady upload or an event stream lasts as
    /// long as it needs.
    #[arg(
        long,
        env = "AURAVITA_CLIENT_TIMEOUT_SECS",
        default_value_t = 30,
        global = true
    )]
    pub client_timeout_secs: u64,
    /// Connections served at once. Past it the server stops accepting until one closes, and new
    /// connections wait in the kernel's queue: a flood of connections cannot use up the file
    /// descriptors the database, the object store and open streams need.
    #[arg(
        long,
        env = "AURAVITA_MAX_CONNECTIONS",
        default_value_t = 16_384,
        global = true
    )]
    pub max_connections: usize,
    /// Connections one client (an IPv4 address, or an IPv6 /64) may hold open at once; past it a
    /// new connection is answered 429 and closed. 0 lifts the limit. Not applied with
    /// `AURAVITA_TRUST_PROXY`: there every connection comes from the proxy, which limits clients
    /// itself (`limit_conn` in `deploy/nginx.conf`).
    #[arg(
        long,
        env = "AURAVITA_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 256,
        global = true
    )]
    pub max_connections_per_client: usize,
    /// Database pool size.
    #[arg(
        long,
        env = "AURAVITA_DB_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub db_max_connections: u32,
}

impl Limits {
    /// How often a session's `last_seen_at` is written: on a request at least this long after
    /// the last write (a write on every request would queue reads behind the writer). A tenth of
    /// the idle timeout, at most a minute.
    pub fn session_touch_ms(&self) -> i64 {
        (self.session_idle_secs * 100).clamp(1, 60_000)
    }

    /// How long after its recorded `last_seen_at` a session stays live: the idle timeout plus the
    /// touch interval, since a request within that interval was not recorded. So a session ends
    /// no sooner than the idle timeout after its last request, and at most a tenth (or a minute)
    /// later.
    pub fn session_idle_ms(&self) -> i64 {
        self.session_idle_secs * 1000 + self.session_touch_ms()
    }
}

impl Config {
    /// Parse from flags and environment only, as tests do with `Config::for_tests`.
    pub fn database_url(&self) -> String {
        use secrecy::ExposeSecret;
        match &self.database_url {
            Some(u) => u.expose_secret().to_string(),
            None => format!("sqlite://{}/auravita.db", self.data_dir.display()),
        }
    }

    pub fn storage_url(&self) -> String {
        match &self.storage_url {
            Some(u) => u.clone(),
            None => {
                let dir = std::path::absolute(self.data_dir.join("objects"))
                    .unwrap_or_else(|_| self.data_dir.join("objects"));
                format!("file://{}", dir.display())
            }
        }
    }

    pub fn https(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// The `Origin` a browser sends for pages served from the public URL.
    pub fn public_origin(&self) -> String {
        self.public_url.origin().ascii_serialization()
    }

    /// The session cookie's name: `__Host-` prefixed when served over https.
    pub fn cookie_name(&self) -> &'static str {
        if self.https() {
            "__Host-auravita_session"
        } else {
            "auravita_session"
        }
    }

    /// The device cookie's name (`crate::auth::device`): `__Host-` prefixed when served over https.
    pub fn device_cookie_name(&self) -> &'static str {
        if self.https() {
            "__Host-auravita_device"
        } else {
            "auravita_device"
        }
    }

    /// A configuration from defaults only (no flags, no environment), for tests and tools.
    pub fn defaults_in(data_dir: &std::path::Path) -> Config {
        let mut cli = Cli::parse_from(["auravita"]);
        cli.config.data_dir = data_dir.to_path_buf();
        cli.config
    }
}

/// A database URL with any password removed, for logs.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("****"));
            }
            u.to_string()
        }
        Err(_) => "<unparseable url>".into(),
    }
}
