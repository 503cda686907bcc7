#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use anyhow::Context;
use auravita::config::{AdminCommand, Cli, Command};
use auravita::{AppState, Server};
use clap::Parser;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let db = auravita::db::Db::connect(&config.database_url(), 2).await?;
            db.migrate().await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Admin(cmd) => admin(config, cmd).await,
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    if std::env::var("AURAVITA_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(mut config: auravita::Config) -> anyhow::Result<()> {
    let started = Instant::now();
    if let Some(fds) = auravita::app::raise_fd_limit() {
        let cap = auravita::app::connection_cap(config.limits.max_connections, fds);
        if cap < config.limits.max_connections {
            tracing::warn!(
                open_file_limit = fds,
                max_connections = cap,
                "AURAVITA_MAX_CONNECTIONS lowered to fit the open-file limit"
            );
            config.limits.max_connections = cap;
        }
    }
    tracing::info!(
        bind = %config.bind,
        database = %auravita::config::redact_url(&config.database_url()),
        storage = %config.storage_url(),
        sms = %config.sms,
        "starting auravita"
    );
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    let state = AppState::build(config).await?;
    let mut server = Server::start(state.clone(), listener).await?;
    tracing::info!(
        addr = %server.addr,
        ready_ms = started.elapsed().as_millis() as u64,
        "ready: web client at http://{}/ and API explorer at /docs",
        server.addr
    );
    let ended = tokio::select! {
        r = server.wait() => Some(r),
        _ = shutdown_signal() => None,
    };
    match ended {
        Some(r) => r,
        None => {
            tracing::info!("shutting down");
            server.shutdown(Duration::from_secs(10)).await;
            // Leaves the database complete on its own (the next start would move them anyway).
            if let Err(e) = state.ledger.flush().await {
                tracing::warn!(error = %e.message, "ledger rows stay in the journal until the next start");
            }
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn admin(config: auravita::Config, cmd: AdminCommand) -> anyhow::Result<()> {
    let db = auravita::db::Db::connect(&config.database_url(), 2).await?;
    db.migrate().await?;
    use auravita::users::admin::{set_doctor_verified, DoctorRef, Verification};
    let (doctor, what) = match &cmd {
        AdminCommand::VerifyDoctor {
            doctor,
            registration_number,
        } => (
            doctor,
            Verification::Verify {
                registration_number,
            },
        ),
        AdminCommand::UnverifyDoctor { doctor } => (doctor, Verification::Unverify),
    };
    let who = match (&doctor.phone, &doctor.oidc_subject) {
        (Some(phone), _) => DoctorRef::Phone(phone),
        (None, Some(subject)) => DoctorRef::Identity {
            issuer: config.oidc_issuer.as_deref().unwrap_or(""),
            subject,
        },
        (None, None) => anyhow::bail!("name the doctor with --phone or --oidc-subject"),
    };
    let verified = matches!(what, Verification::Verify { .. });
    let doctor = set_doctor_verified(&db, who, what).await?;
    println!(
        "doctor {} ({}, registration number {}) is now {}",
        doctor.name,
        doctor.named_by,
        doctor.registration_number.as_deref().unwrap_or("none"),
        if verified { "verified" } else { "unverified" }
    );
    Ok(())
}
