//! The binary carries the shipped templates: `serve` started in an empty folder without
//! `TEMPLATES_DIR` syncs the repository's templates from inside itself and gets ready;
//! with `TEMPLATES_DIR` set it reads that folder instead.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use status_check::template_files::load_dir;
use status_check_engine::Limits;

/// How long the binary may take to migrate, sync the templates and listen.
const START_PATIENCE: Duration = Duration::from_secs(30);

/// `serve` as an API-only replica on a fresh SQLite file in `dir`, run from `dir` with nothing
/// inherited from the test's environment but `extra`. Killed when dropped.
struct Serve {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(dir: &Path, extra: &[(&str, &str)]) -> Serve {
        let database = format!("sqlite://{}", dir.join("status-check.db").display());
        let mut child = Command::new(env!("CARGO_BIN_EXE_status-check"))
            .arg("serve")
            .current_dir(dir)
            .env_clear()
            .envs([
                ("DATABASE_URL", database.as_str()),
                ("ROLES", "api"),
                ("HOST", "127.0.0.1"),
                ("PORT", "0"),
                // Never called: an API replica reads them only when a check is created.
                ("MICRO_MANAGERS_ADDRESS", "http://127.0.0.1:9"),
                ("MEGAZORD_EVENTS_ADDRESS", "http://127.0.0.1:9"),
            ])
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Serve {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The log line whose message is `message` (JSON logs), waiting for it up to the patience.
    fn log(&mut self, message: &str) -> serde_json::Value {
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no {message:?} log line within {START_PATIENCE:?}:\n{}",
                    self.seen.join("\n")
                )
            });
            self.seen.push(line.clone());
            if let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line)
                && entry["message"] == message
            {
                return entry;
            }
        }
    }

    /// The address it serves on, from its "serving" line (`Some(127.0.0.1:PORT)`).
    fn address(&mut self) -> String {
        let serving = self.log("serving");
        let addr = serving["addr"].as_str().expect("addr in the serving line");
        addr.trim_start_matches("Some(")
            .trim_end_matches(')')
            .to_owned()
    }
}

/// Names of the templates the database holds.
async fn synced_names(dir: &Path) -> Vec<String> {
    let url = format!("sqlite://{}?mode=ro", dir.join("status-check.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("the database");
    let names = sqlx::query_scalar(
        "SELECT DISTINCT d.name FROM status_check_template t \
         JOIN status_check_description d ON d.id = t.template_description_id ORDER BY d.name",
    )
    .fetch_all(&pool)
    .await
    .expect("read the templates");
    pool.close().await;
    names
}

/// Names of the templates in a folder, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let loaded = load_dir(dir, &Limits::default()).expect("a templates folder");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let mut names: Vec<String> = loaded
        .templates
        .iter()
        .map(|(_, template)| template.name.to_string())
        .collect();
    names.sort();
    names
}

fn repository_templates() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates")
}

#[tokio::test]
async fn serve_outside_the_repository_syncs_the_templates_it_carries() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(dir.path(), &[]);
    let loaded = serve.log("templates loaded");
    assert_eq!(loaded["from"], "the templates built into the binary");
    let shipped = names_in(&repository_templates());
    assert_eq!(loaded["count"], shipped.len(), "{loaded}");

    let addr = serve.address();
    let ready = reqwest::get(format!("http://{addr}/health/ready"))
        .await
        .expect("the server answers");
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    assert_eq!(synced_names(dir.path()).await, shipped);
}

#[tokio::test]
async fn a_templates_dir_replaces_the_built_in_templates() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("mine");
    std::fs::create_dir(&folder).unwrap();
    std::fs::copy(
        repository_templates().join("robot-is-charging.v1.yaml"),
        folder.join("robot-is-charging.v1.yaml"),
    )
    .unwrap();
    let mut serve = Serve::start(dir.path(), &[("TEMPLATES_DIR", "mine")]);
    let loaded = serve.log("templates loaded");
    assert_eq!(loaded["from"], "mine");
    assert_eq!(loaded["count"], 1);
    serve.address();
    assert_eq!(synced_names(dir.path()).await, ["robot-is-charging"]);
}
