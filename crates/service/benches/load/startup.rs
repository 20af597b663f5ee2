//! (d) start-up: `status-check serve` to ready, against the same binary's `--version`.

use std::net::{Ipv4Addr, TcpListener as StdTcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, ensure};
use axum::http::StatusCode;

use super::*;
use crate::summary::{Summary, num};

fn free_port() -> anyhow::Result<u16> {
    Ok(StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

pub(super) async fn scenario_startup(
    sizes: &Sizes,
    rows: &mut Vec<Row>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let binary = Path::new(env!("CARGO_BIN_EXE_status-check"));
    println!("\n== (d) start-up to ready: `status-check serve`, ROLES=api, fresh SQLite file ==");
    println!(
        "binary: {} (built by cargo for this bench, same profile); spawn → first 200 from \
         GET /health/ready (polled every 1 ms); limit: the same binary's `--version`, spawn → exit",
        binary.display()
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(0)
        .build()?;
    let mut ready_ms = Vec::new();
    for run in 0..sizes.startup_runs.max(1) {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}/health/ready");
        let began = Instant::now();
        let mut child = Command::new(binary)
            .arg("serve")
            .env_clear()
            .env("ROLES", "api")
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATABASE_URL", sqlite_url(&dir.path().join("startup.db")))
            .env("TEMPLATES_DIR", templates_dir())
            // Not called before the first request; `serve` requires them.
            .env("MICRO_MANAGERS_ADDRESS", "http://127.0.0.1:9")
            .env("MEGAZORD_EVENTS_ADDRESS", "http://127.0.0.1:9")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start status-check serve")?;
        let outcome = loop {
            if let Some(status) = child.try_wait()? {
                break Err(anyhow!("serve exited before it was ready ({status})"));
            }
            if began.elapsed() > Duration::from_secs(30) {
                break Err(anyhow!("not ready after 30 s"));
            }
            match client.get(&url).send().await {
                Ok(response) if response.status() == StatusCode::OK => {
                    break Ok(began.elapsed());
                }
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        };
        // Our own child, by its handle.
        let _ = child.kill();
        let _ = child.wait();
        let elapsed = outcome?;
        println!(
            "  run {}: ready after {:.1} ms",
            run + 1,
            elapsed.as_secs_f64() * 1e3
        );
        ready_ms.push(elapsed.as_secs_f64() * 1e3);
    }
    let mut version_ms = Vec::new();
    for _ in 0..sizes.startup_runs.max(1) {
        let began = Instant::now();
        let output = Command::new(binary).arg("--version").output()?;
        let elapsed = began.elapsed();
        ensure!(
            output.status.success()
                && String::from_utf8_lossy(&output.stdout).contains("status-check"),
            "--version failed: {:?}",
            output
        );
        version_ms.push(elapsed.as_secs_f64() * 1e3);
    }
    let ready = median(&ready_ms);
    let version = median(&version_ms);
    println!(
        "median of {}: ready {ready:.1} ms (min {:.1}, max {:.1}); `--version` {version:.1} ms → \
         {:.1}× the process start; target ≤ {TARGET_STARTUP_MS:.0} ms: {}",
        ready_ms.len(),
        ready_ms.iter().copied().fold(f64::INFINITY, f64::min),
        ready_ms.iter().copied().fold(0.0, f64::max),
        ready / version,
        yes_no(ready <= TARGET_STARTUP_MS)
    );
    rows.push(Row {
        scenario: "startup",
        figure: format!("ready {ready:.0} ms (median of {})", ready_ms.len()),
        target: format!("≤ {TARGET_STARTUP_MS:.0} ms"),
        limit: format!("--version {version:.1} ms"),
        ratio: format!("{:.1}× --version", ready / version),
        met: Some(ready <= TARGET_STARTUP_MS),
    });
    summary.set("startup_ms", num(ready));
    Ok(())
}
