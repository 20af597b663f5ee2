//! A write whose COMMIT reached MariaDB but whose answer never came back (the connection lost
//! while the COMMIT was in flight, SPEC §13): a check's create, a monitor session's opening.
//! What was saved holds a subscription, which must stay; the robot is answered with its check.
//! A TCP proxy between the replica and a real MariaDB forwards every byte; armed, it cuts the
//! connection that ran a given statement as soon as the server has answered that
//! transaction's COMMIT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use status_check::workers::consumer::Outcome;

use crate::harness::{create_body, spawn_on};
use crate::lifecycle::given_charging_stopped;
use crate::monitors::{ROBOT, at, stack_on};
use crate::support::{self, TestDb};

/// What marks a transaction as a check's write (its prepared statement's text).
const CHECK_WRITE: &[u8] = b"INSERT INTO status_check_ext (";
/// What marks a transaction as a monitor session's write.
const SESSION_WRITE: &[u8] = b"UPDATE status_check_monitor_state SET session_date";
/// A `COM_QUERY` packet's payload for `COMMIT`, as sqlx sends it.
const COMMIT: &[u8] = b"\x03COMMIT";

/// The proxy: where it listens, whether the next marked COMMIT's answer is to be cut, and how
/// many were.
struct CommitCutter {
    address: SocketAddr,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
}

impl CommitCutter {
    /// A proxy to `server` that cuts the COMMIT answer of a transaction that ran `marker`.
    async fn start(server: SocketAddr, marker: &'static [u8]) -> CommitCutter {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cutter = CommitCutter {
            address: listener.local_addr().unwrap(),
            armed: Arc::default(),
            cuts: Arc::default(),
        };
        let (armed, cuts) = (cutter.armed.clone(), cutter.cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = TcpStream::connect(server).await else {
                    continue;
                };
                let (armed, cuts) = (armed.clone(), cuts.clone());
                tokio::spawn(relay(client, upstream, marker, armed, cuts));
            }
        });
        cutter
    }
}

/// Forwards one connection both ways. The client's side is read packet by packet (MySQL's
/// 4-byte header: length, sequence) to see the marked statement and its COMMIT.
async fn relay(
    client: TcpStream,
    server: TcpStream,
    marker: &[u8],
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let cut_next_answer = AtomicBool::new(false);
    let to_server = async {
        let mut marked = false;
        loop {
            let mut header = [0u8; 4];
            client_read.read_exact(&mut header).await?;
            let length = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
            let mut payload = vec![0u8; length];
            client_read.read_exact(&mut payload).await?;
            marked |= payload.windows(marker.len()).any(|w| w == marker);
            if payload == COMMIT {
                // The client waits for this answer before it sends anything else: whatever
                // the server sends next is it.
                if marked && armed.swap(false, Ordering::SeqCst) {
                    cut_next_answer.store(true, Ordering::SeqCst);
                }
                marked = false;
            }
            server_write.write_all(&header).await?;
            server_write.write_all(&payload).await?;
        }
    };
    let to_client = async {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = server_read.read(&mut buffer).await?;
            if read == 0 {
                return Ok(());
            }
            if cut_next_answer.load(Ordering::SeqCst) {
                cuts.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            client_write.write_all(&buffer[..read]).await?;
        }
    };
    // Either side ending drops both sockets: the client sees its connection lost.
    let _: std::io::Result<()> = tokio::select! {
        ended = to_server => ended,
        ended = to_client => ended,
    };
}

/// A fresh database reached through a cutter of `marker`'s COMMIT answers; `None` when MySQL
/// tests are switched off.
async fn through_cutter(marker: &'static [u8]) -> Option<(TestDb, CommitCutter)> {
    if support::mysql_skipped() {
        return None;
    }
    let url = reqwest::Url::parse(&std::env::var("TEST_MYSQL_URL").unwrap()).unwrap();
    let host = url.host_str().unwrap_or("127.0.0.1");
    let server = tokio::net::lookup_host((host, url.port().unwrap_or(3306)))
        .await
        .unwrap()
        .next()
        .unwrap();
    let cutter = CommitCutter::start(server, marker).await;
    let mut proxied = url.clone();
    proxied.set_host(Some("127.0.0.1")).unwrap();
    proxied.set_port(Some(cutter.address.port())).unwrap();
    // In plain text, so the proxy can read the statements (a server with TLS would agree
    // to it otherwise).
    proxied
        .query_pairs_mut()
        .append_pair("ssl-mode", "disabled");
    Some((support::mysql_db_at(proxied.as_str()).await, cutter))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_commit_answer_is_lost_keeps_the_saved_checks_subscription() {
    let Some((db, cutter)) = through_cutter(CHECK_WRITE).await else {
        return;
    };
    let app = spawn_on(db).await;
    given_charging_stopped(&app, 123, 991).await;
    cutter.armed.store(true, Ordering::SeqCst);
    let (status, body) = app.post_check(ROBOT, &create_body(123)).await;
    assert_eq!(
        cutter.cuts.load(Ordering::SeqCst),
        1,
        "the COMMIT's answer was cut"
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["phase"], "FUTURE");
    assert_eq!(body["subscriptionId"], 991);
    assert_eq!(
        app.upstream_calls("DELETE", "/subscriptions").await,
        0,
        "the saved check's subscription is kept"
    );
    let (status, read) = app
        .get_check(ROBOT, &body["id"].as_i64().unwrap().to_string())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["subscriptionId"], 991);
    let (status, again) = app.post_check(ROBOT, &create_body(123)).await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &body["id"]));
}

/// A monitor session opened at 08:00 whose write's answer is lost: the session is open with
/// its subscription, which stays and delivers (a watched event resets the window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_commit_answer_is_lost_keeps_its_subscription() {
    let Some((db, cutter)) = through_cutter(SESSION_WRITE).await else {
        return;
    };
    let Some(stack) = stack_on(db, at("2026-11-20T07:59:00Z"), &[]).await else {
        return;
    };
    stack.monitor("no-toilet", json!({})).await;
    stack.set("2026-11-20T08:00:00Z");
    cutter.armed.store(true, Ordering::SeqCst);
    let tick = stack.tick_monitor().await;
    assert_eq!(
        cutter.cuts.load(Ordering::SeqCst),
        1,
        "the COMMIT's answer was cut"
    );
    assert_eq!(tick.failed, 1, "{tick:?}");

    let stored = stack.store().get_monitor(ROBOT, "no-toilet").await.unwrap();
    let subscription = stored.unwrap().state.subscription_id.expect("opened");
    let kept = stack.megazord.undeleted_subscriptions();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(stack.store().removal_jobs().backlog().await.unwrap(), 0);
    assert_eq!(
        stack.window("no-toilet").await,
        Some((1, at("2026-11-20T08:00:00Z"), at("2026-11-20T08:10:00Z")))
    );
    stack.set("2026-11-20T08:05:00Z");
    stack.event("TOILET_ACTIVITY").await;
    assert_eq!(stack.consume().await, [Outcome::Applied], "{subscription}");
    assert_eq!(
        stack.window("no-toilet").await,
        Some((1, at("2026-11-20T08:05:00Z"), at("2026-11-20T08:15:00Z"))),
        "reset by the delivery"
    );
}
