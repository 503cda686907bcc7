//! Load client for bench/uploads.sh: signs a patient up (reading the code from the SMS outbox),
//! sends N concurrent uploads of SIZE bytes, then measures download-link issuance (fileURL)
//! against /health/live with the same concurrency for the same time. With BENCH_SERVER_PID set,
//! also the server's CPU time per request in each phase (from /proc, so Linux only).
//! Usage: upload_bench <base-url> <outbox-file> [concurrency=32] [size=5000000] [seconds=5]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let outbox = args.get(2).cloned().expect("outbox path");
    let n: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(32);
    let size: usize = args
        .get(4)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5_000_000);
    let secs: u64 = args.get(5).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;

    let phone = format!("+9198{:08}", std::process::id() % 100_000_000);
    let r: Value = http
        .post(format!("{base}/auth/signup"))
        .json(&json!({"phone": phone, "name": "Bench Patient", "role": "patient"}))
        .send()
        .await?
        .json()
        .await?;
    let id = r["data"]["id"].as_str().expect("signup id").to_string();
    let code = std::fs::read_to_string(&outbox)?
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|m| m["to"] == phone.as_str())
        .and_then(|m| m["body"].as_str().map(|b| b[..6].to_string()))
        .expect("code in outbox");
    let res = http
        .post(format!("{base}/auth/signup/verify/{id}"))
        .json(&json!({"otp": code}))
        .send()
        .await?;
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("auravita_session="))
        .map(|v| v.split(';').next().unwrap().to_string())
        .expect("session cookie");

    let mut body = b"%PDF-1.7\n".to_vec();
    body.extend((0..size - 9).map(|i| (i * 7 % 251) as u8));
    let body = bytes::Bytes::from(body);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let (http, base, cookie, body) = (http.clone(), base.clone(), cookie.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let part =
                reqwest::multipart::Part::stream_with_length(body.clone(), body.len() as u64)
                    .file_name(format!("bench-{i}.pdf"));
            let form = reqwest::multipart::Form::new().part("file", part);
            let r = http
                .post(format!("{base}/protected/resource/uploadFile"))
                .header("cookie", cookie)
                .multipart(form)
                .send()
                .await?;
            let status = r.status();
            let v: Value = r.json().await?;
            anyhow::ensure!(status == 201, "upload {i}: {status} {v}");
            Ok::<String, anyhow::Error>(v["data"]["file"]["id"].as_str().unwrap().to_string())
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mb = (n * size) as f64 / 1e6;
    println!(
        "uploads: {n} x {size} B in {elapsed:.2} s = {:.1} MB/s, {:.1} uploads/s",
        mb / elapsed,
        n as f64 / elapsed
    );

    let file_url = format!("{base}/protected/resource/fileURL/{}?o=t", ids[0]);
    let server = std::env::var("BENCH_SERVER_PID").ok();
    let cpu = || server.as_deref().and_then(cpu_seconds);
    let before = cpu();
    let links = rate(&http, &file_url, &cookie, n, secs).await;
    // Work the links left behind (the ledger moving journaled rows into its table) is theirs:
    // let the server go quiet before /health/live is measured, and count it with fileURL.
    let quiet = settle(&cpu).await;
    let between = cpu();
    let live = rate(&http, &format!("{base}/health/live"), "", n, secs).await;
    let after = cpu();
    println!(
        "fileURL: {links:.0} req/s; /health/live: {live:.0} req/s; ratio {:.2}",
        links / live
    );
    if let (Some(a), Some(b), Some(c)) = (before, between, after) {
        let per = |cpu: f64, rate: f64| cpu * 1e6 / (rate * secs as f64);
        println!(
            "server CPU per request: fileURL {:.1} µs (with {quiet:.2} s of work after the phase); \
             /health/live {:.1} µs",
            per(b - a, links),
            per(c - b, live)
        );
    }
    Ok(())
}

/// Waits until the server has used no more than 10 ms of CPU in each of two 100 ms intervals
/// (at most 20 s); returns how long that took. Without the server's pid: one second.
async fn settle(cpu: &impl Fn() -> Option<f64>) -> f64 {
    let started = Instant::now();
    let Some(mut last) = cpu() else {
        tokio::time::sleep(Duration::from_secs(1)).await;
        return 1.0;
    };
    let mut calm = 0;
    while calm < 2 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = cpu().unwrap_or(last);
        calm = if now - last <= 0.01 { calm + 1 } else { 0 };
        last = now;
    }
    started.elapsed().as_secs_f64()
}

/// The server's user + system CPU time so far, in seconds (Linux: /proc/<pid>/stat, in clock
/// ticks of 1/100 s).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), closed by its ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15 of the line; this split starts at field 3.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Requests per second that `c` workers get through in `secs` seconds (only 200s count).
async fn rate(http: &reqwest::Client, url: &str, cookie: &str, c: usize, secs: u64) -> f64 {
    let ok = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (http, url, cookie, ok) = (
            http.clone(),
            url.to_string(),
            cookie.to_string(),
            ok.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let mut req = http.get(&url);
                if !cookie.is_empty() {
                    req = req.header("cookie", &cookie);
                }
                if let Ok(r) = req.send().await {
                    if r.status() == 200 && r.bytes().await.is_ok() {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    ok.load(Ordering::Relaxed) as f64 / secs as f64
}
