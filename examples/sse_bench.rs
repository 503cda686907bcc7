//! Load client for bench/sse.sh: signs up N users, opens one notification stream each, then
//! causes events for random users at a fixed rate and measures, per event, the time from the
//! causing response to the event's arrival on the stream. Two causes, both real actions:
//! `share` (default): the N users are doctors, a few patients each upload a file, and each event
//! is a 30-minute share of a patient's file with a random doctor (`file_shared`; the response's
//! `access_id` is in the event's data); `signin`: the N users are patients, and each event is a
//! sign-in (`new_sign_in`; the causing request's unique user agent is echoed in the data).
//! All traffic goes to `--base`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::watch;

#[derive(Parser, Debug, Clone)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:18080")]
    base: String,
    /// The server's SMS outbox (codes are read from it).
    #[arg(long)]
    outbox: String,
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Events per second during the measured phase.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    #[arg(long, default_value_t = 30)]
    secs: u64,
    /// What raises the events: `share` or `signin`.
    #[arg(long, default_value = "share")]
    cause: String,
    /// Patients sharing files (with `--cause share`).
    #[arg(long, default_value_t = 8)]
    patients: usize,
    /// The server's pid, to sample its resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// Codes seen in the outbox: phone → (how many so far, latest).
#[derive(Default)]
struct Codes {
    map: Mutex<HashMap<String, (u64, String)>>,
}

impl Codes {
    fn count(&self, phone: &str) -> u64 {
        self.map
            .lock()
            .unwrap()
            .get(phone)
            .map(|c| c.0)
            .unwrap_or(0)
    }

    async fn wait(
        &self,
        gen: &mut watch::Receiver<u64>,
        phone: &str,
        after: u64,
    ) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some((n, code)) = self.map.lock().unwrap().get(phone) {
                if *n > after {
                    return Ok(code.clone());
                }
            }
            tokio::time::timeout_at(deadline, gen.changed()).await??;
        }
    }
}

async fn tail_outbox(path: String, codes: Arc<Codes>, gen: watch::Sender<u64>) {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut pos = 0u64;
    let mut rest = String::new();
    let mut g = 0u64;
    loop {
        if let Ok(mut f) = tokio::fs::File::open(&path).await {
            let _ = f.seek(std::io::SeekFrom::Start(pos)).await;
            let mut chunk = String::new();
            if let Ok(n) = f.read_to_string(&mut chunk).await {
                pos += n as u64;
                rest.push_str(&chunk);
                let mut changed = false;
                while let Some(i) = rest.find('\n') {
                    let line: String = rest.drain(..=i).collect();
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        let to = v["to"].as_str().unwrap_or("").to_string();
                        let code = v["body"].as_str().unwrap_or("").chars().take(6).collect();
                        let mut m = codes.map.lock().unwrap();
                        let e = m.entry(to).or_insert((0, String::new()));
                        e.0 += 1;
                        e.1 = code;
                        changed = true;
                    }
                }
                if changed {
                    g += 1;
                    let _ = gen.send(g);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

struct Ctx {
    args: Args,
    http: reqwest::Client,
    codes: Arc<Codes>,
    gen: watch::Receiver<u64>,
}

fn phone(i: usize) -> String {
    format!("+9197{:08}", i)
}

async fn post(
    http: &reqwest::Client,
    url: String,
    body: Value,
    ua: Option<&str>,
) -> anyhow::Result<reqwest::Response> {
    let mut req = http.post(url).json(&body);
    if let Some(ua) = ua {
        req = req.header("user-agent", ua);
    }
    let res = req.send().await?;
    anyhow::ensure!(res.status() == 200, "status {}", res.status());
    Ok(res)
}

async fn signup(ctx: &Ctx, i: usize, role: &str) -> anyhow::Result<String> {
    let p = phone(i);
    let before = ctx.codes.count(&p);
    let r: Value = post(
        &ctx.http,
        format!("{}/auth/signup", ctx.args.base),
        json!({"phone": p, "name": format!("Bench {i}"), "role": role}),
        None,
    )
    .await?
    .json()
    .await?;
    let id = r["data"]["id"].as_str().unwrap_or_default().to_string();
    let code = ctx.codes.wait(&mut ctx.gen.clone(), &p, before).await?;
    let res = post(
        &ctx.http,
        format!("{}/auth/signup/verify/{id}", ctx.args.base),
        json!({"otp": code}),
        None,
    )
    .await?;
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("auravita_session="))
        .map(|v| v.split(';').next().unwrap().to_string())
        .ok_or_else(|| anyhow::anyhow!("no cookie"))?;
    Ok(cookie)
}

/// Signs up user `i`, retrying: SQLite answers some concurrent sign-ups with "database is
/// locked" (a deferred transaction that reads, then writes); the measured phase counts every
/// failure.
async fn signup_retrying(ctx: &Ctx, i: usize, role: &str) -> anyhow::Result<String> {
    let mut tries = 0;
    loop {
        match signup(ctx, i, role).await {
            Ok(c) => return Ok(c),
            Err(e) if tries >= 20 => return Err(e),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20 * tries)).await;
            }
        }
    }
}

/// The signed-in user's id.
async fn user_id(ctx: &Ctx, cookie: &str) -> anyhow::Result<String> {
    let v: Value = ctx
        .http
        .get(format!("{}/protected/user/sessionDetail", ctx.args.base))
        .header("cookie", cookie)
        .send()
        .await?
        .json()
        .await?;
    v["data"]["user"]["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no user id in {v}"))
}

/// Uploads a small PDF as the patient behind `cookie`; returns the file's id.
async fn upload(ctx: &Ctx, cookie: &str) -> anyhow::Result<String> {
    let mut pdf = b"%PDF-1.4\n".to_vec();
    pdf.extend((0..4096u32).map(|i| (i * 31 % 251) as u8));
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(pdf).file_name("bench.pdf"),
    );
    let res = ctx
        .http
        .post(format!("{}/protected/resource/uploadFile", ctx.args.base))
        .header("cookie", cookie)
        .multipart(form)
        .send()
        .await?;
    anyhow::ensure!(res.status() == 201, "upload: status {}", res.status());
    let v: Value = res.json().await?;
    v["data"]["file"]["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no file id in {v}"))
}

/// Shares `file` with `doctor` for 30 minutes; returns the share's access id and when its
/// response arrived.
async fn share(
    ctx: &Ctx,
    cookie: &str,
    file: &str,
    doctor: &str,
) -> anyhow::Result<(String, Instant)> {
    let res = ctx
        .http
        .post(format!(
            "{}/protected/resource/tempFileShare/{file}?p={doctor}&t=r",
            ctx.args.base
        ))
        .header("cookie", cookie)
        .send()
        .await?;
    anyhow::ensure!(res.status() == 200, "share: status {}", res.status());
    let v: Value = res.json().await?;
    let at = Instant::now();
    let id = v["data"]["access_id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no access id in {v}"))?;
    Ok((id.to_string(), at))
}

/// A sign-in for user `i`, tagged `n`; returns when the verify response has arrived.
async fn sign_in(ctx: &Ctx, i: usize, n: u64) -> anyhow::Result<Instant> {
    let p = phone(i);
    let before = ctx.codes.count(&p);
    let r: Value = post(
        &ctx.http,
        format!("{}/auth/signin", ctx.args.base),
        json!({"phone": p}),
        None,
    )
    .await?
    .json()
    .await?;
    let id = r["data"]["id"].as_str().unwrap_or_default().to_string();
    let code = ctx.codes.wait(&mut ctx.gen.clone(), &p, before).await?;
    let ua = format!("sse-bench/{n}");
    let _res = post(
        &ctx.http,
        format!("{}/auth/signin/verify/{id}", ctx.args.base),
        json!({"otp": code}),
        Some(&ua),
    )
    .await?;
    Ok(Instant::now())
}

#[derive(Default)]
struct Streams {
    open: AtomicU64,
    ended: AtomicU64,
    failed: AtomicU64,
    events: AtomicU64,
    /// Arrival time by tag (the share's access id, or the sign-in's number).
    arrivals: Mutex<HashMap<String, Instant>>,
}

async fn follow(http: reqwest::Client, base: String, cookie: String, st: Arc<Streams>) {
    let res = match http
        .get(format!("{base}/protected/notification/notify"))
        .header("cookie", cookie)
        .send()
        .await
    {
        Ok(r) if r.status() == 200 => r,
        _ => {
            st.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    st.open.fetch_add(1, Ordering::Relaxed);
    let mut body = res.bytes_stream();
    let mut buf = String::new();
    while let Some(Ok(chunk)) = body.next().await {
        let now = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            st.events.fetch_add(1, Ordering::Relaxed);
            if let Ok(v) = serde_json::from_str::<Value>(data) {
                let tag = match v["kind"].as_str() {
                    Some("file_shared") => v["data"]["access_id"].as_str(),
                    _ => v["data"]["user_agent"]
                        .as_str()
                        .and_then(|t| t.strip_prefix("sse-bench/")),
                };
                if let Some(tag) = tag {
                    st.arrivals.lock().unwrap().insert(tag.to_string(), now);
                }
            }
        }
    }
    st.open.fetch_sub(1, Ordering::Relaxed);
    st.ended.fetch_add(1, Ordering::Relaxed);
}

fn rss_kb(pid: Option<u32>) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let codes = Arc::new(Codes::default());
    let (gen_tx, gen_rx) = watch::channel(0u64);
    tokio::spawn(tail_outbox(args.outbox.clone(), codes.clone(), gen_tx));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .timeout(Duration::from_secs(30))
        .build()?;
    let ctx = Arc::new(Ctx {
        args: args.clone(),
        http,
        codes,
        gen: gen_rx,
    });

    // 1. Users: the stream holders (doctors when sharing, patients when signing in), and the
    // patients who share.
    let sharing = match args.cause.as_str() {
        "share" => true,
        "signin" => false,
        other => anyhow::bail!("--cause is share or signin, not {other}"),
    };
    let t = Instant::now();
    let role = if sharing { "doctor" } else { "patient" };
    let cookies: Vec<String> = futures::stream::iter(0..args.users)
        .map(|i| {
            let ctx = ctx.clone();
            async move { signup_retrying(&ctx, i, role).await }
        })
        .buffered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    println!("signed up {} {role}s in {:.1?}", cookies.len(), t.elapsed());
    // Sharing: each doctor's id, and per patient (cookie, file id).
    let mut doctors = Vec::new();
    let mut sharers = Vec::new();
    if sharing {
        doctors = futures::stream::iter(cookies.iter())
            .map(|c| user_id(&ctx, c))
            .buffered(32)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        for k in 0..args.patients.max(1) {
            let cookie = signup_retrying(&ctx, args.users + k, "patient").await?;
            let file = upload(&ctx, &cookie).await?;
            sharers.push((cookie, file));
        }
        println!("{} patients each uploaded a file", sharers.len());
    }
    let doctors = Arc::new(doctors);
    let sharers = Arc::new(sharers);
    let base_rss = rss_kb(args.server_pid);

    // 2. Streams (their own client: no total timeout on an endless body).
    let stream_http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let st = Arc::new(Streams::default());
    let t = Instant::now();
    for (k, cookie) in cookies.iter().enumerate() {
        tokio::spawn(follow(
            stream_http.clone(),
            args.base.clone(),
            cookie.clone(),
            st.clone(),
        ));
        if k % 200 == 199 {
            // Let the server accept in batches rather than all 10,000 at once.
            while st.open.load(Ordering::Relaxed) + st.failed.load(Ordering::Relaxed) + 100
                < k as u64
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while st.open.load(Ordering::Relaxed) + st.failed.load(Ordering::Relaxed) < args.users as u64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kb(args.server_pid);
    println!(
        "streams open: {} (failed {}) in {:.1?}; server RSS before streams {:?} kB, with streams open {:?} kB",
        st.open.load(Ordering::Relaxed),
        st.failed.load(Ordering::Relaxed),
        t.elapsed(),
        base_rss.map(|r| r.0),
        idle_rss.map(|r| r.0)
    );

    // 3. Load: `rate` events per second for random users (sign-ins never overlap for one user).
    let busy = Arc::new(Mutex::new(HashSet::new()));
    let responses = Arc::new(Mutex::new(HashMap::<String, Instant>::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let total = args.rate * args.secs;
    let start = tokio::time::Instant::now();
    let mut peak_rss = 0u64;
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        tokio::time::sleep_until(start + Duration::from_secs_f64(n as f64 / args.rate as f64))
            .await;
        if n % args.rate == 0 {
            if let Some((rss, _)) = rss_kb(args.server_pid) {
                peak_rss = peak_rss.max(rss);
            }
        }
        let (ctx, busy, responses, errors) =
            (ctx.clone(), busy.clone(), responses.clone(), errors.clone());
        let (doctors, sharers) = (doctors.clone(), sharers.clone());
        tasks.push(tokio::spawn(async move {
            let caused = if sharing {
                let (doctor, sharer) = {
                    let mut rng = rand::thread_rng();
                    (
                        rng.gen_range(0..doctors.len()),
                        rng.gen_range(0..sharers.len()),
                    )
                };
                let (cookie, file) = &sharers[sharer];
                share(&ctx, cookie, file, &doctors[doctor]).await
            } else {
                let user = loop {
                    let u = rand::thread_rng().gen_range(0..ctx.args.users);
                    if busy.lock().unwrap().insert(u) {
                        break u;
                    }
                    tokio::task::yield_now().await;
                };
                let r = sign_in(&ctx, user, n).await.map(|at| (n.to_string(), at));
                busy.lock().unwrap().remove(&user);
                r
            };
            match caused {
                Ok((tag, at)) => {
                    responses.lock().unwrap().insert(tag, at);
                }
                Err(e) => {
                    if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("causing an event failed: {e:#}");
                    }
                }
            }
        }));
    }
    let caused_in = start.elapsed();
    for t in tasks {
        let _ = t.await;
    }
    let load_secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    if let Some((rss, _)) = rss_kb(args.server_pid) {
        peak_rss = peak_rss.max(rss);
    }
    let hwm = rss_kb(args.server_pid).map(|r| r.1);

    // 4. Results.
    let responses = responses.lock().unwrap().clone();
    let arrivals = st.arrivals.lock().unwrap().clone();
    let mut lat = Vec::new();
    let mut lost = 0;
    let mut early = 0;
    for (n, at) in &responses {
        match arrivals.get(n) {
            Some(arr) => {
                if arr < at {
                    early += 1;
                }
                lat.push(arr.saturating_duration_since(*at));
            }
            None => lost += 1,
        }
    }
    lat.sort();
    println!(
        "events caused: {} ok, {} failed, scheduled over {:.1?} ({:.0}/s achieved over {:.1}s)",
        responses.len(),
        errors.load(Ordering::Relaxed),
        caused_in,
        responses.len() as f64 / load_secs,
        load_secs
    );
    println!(
        "delivered: {} matched, {} lost, {} arrived before their response; streams still open {} (ended {})",
        lat.len(),
        lost,
        early,
        st.open.load(Ordering::Relaxed),
        st.ended.load(Ordering::Relaxed)
    );
    println!(
        "latency response→event: p50 {:.1?} p90 {:.1?} p99 {:.1?} max {:.1?}",
        pct(&lat, 0.50),
        pct(&lat, 0.90),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or_default()
    );
    if args.server_pid.is_some() {
        println!(
            "server RSS: peak sampled under load {} MB, high-water mark {} MB",
            peak_rss / 1024,
            hwm.unwrap_or(0) / 1024
        );
    }
    Ok(())
}
