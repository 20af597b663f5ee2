//! `status-check dev` as a newcomer runs it: the real binary on free ports, its printed
//! walk-through followed to the letter (the printed `curl` lines are executed with `sh`, or
//! replayed with reqwest where curl is missing), then SIGTERM: it exits 0 and removes its
//! temporary database.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long the binary may take to print its walk-through.
const START_PATIENCE: Duration = Duration::from_secs(30);
/// How long a step's effect (the check completing, the robot's message) may take to show.
const STEP_PATIENCE: Duration = Duration::from_secs(20);
/// How long the process may take to stop after SIGTERM.
const STOP_PATIENCE: Duration = Duration::from_secs(15);
/// Pause between two polls of something that has not happened yet.
const POLL: Duration = Duration::from_millis(50);
/// The last line of the check's walk-through.
const LAST_LINE: &str = "Without step 2 the check fails at its deadline";
/// The last line of the monitor's walk-through, which follows.
const MONITOR_LAST_LINE: &str = "Without step 6 an alarm is posted every";

/// The dev process; killed if the test ends (or fails) while it still runs.
struct DevProcess {
    child: Child,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl DevProcess {
    fn start(tmp: &Path) -> DevProcess {
        let templates = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../templates")
            .canonicalize()
            .expect("the repo's templates folder");
        // Free ports, from a CONFIG_FILE: `dev` reads PORT there too (without `--port`), and
        // LOG_FORMAT over its own default. What the dev stack sets itself — every role, its
        // own SQLite file, the simulators' addresses — the file cannot undo: the walk-through
        // below needs the consumer, no MySQL key applies, and an address it replaces is not
        // checked.
        let config = tmp.join("config.yaml");
        std::fs::write(
            &config,
            "PORT: 0\nLOG_FORMAT: json\nROLES: api\nDB_SSL_CA: /nowhere/ca.pem\n\
             MEGAZORD_EVENTS_ADDRESS: megazord:8080\n",
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_status-check"))
            .args(["dev"])
            .current_dir(tmp)
            .env("TEMPLATES_DIR", &templates)
            // The dev database goes into the test's own temporary folder.
            .env("TMPDIR", tmp)
            .env("LOG_LEVEL", "info")
            .env("CONFIG_FILE", &config)
            .env_remove("PORT")
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("status-check starts");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        DevProcess {
            child,
            lines,
            stdout: Vec::new(),
            stderr,
        }
    }

    /// What the process printed so far, for failure messages.
    fn output(&self) -> String {
        let stderr = self.stderr.lock().unwrap();
        let tail: String = {
            let start = stderr.len().saturating_sub(4000);
            let start = (start..stderr.len())
                .find(|i| stderr.is_char_boundary(*i))
                .unwrap_or(stderr.len());
            stderr[start..].to_owned()
        };
        format!(
            "--- stdout ---\n{}\n--- stderr (tail) ---\n{tail}",
            self.stdout.join("\n")
        )
    }

    /// Reads stdout until the walk-through's last line.
    fn read_walkthrough(&mut self) -> String {
        self.read_until(LAST_LINE)
    }

    /// Reads stdout until a line containing `marker`; what was read since the last call.
    fn read_until(&mut self, marker: &str) -> String {
        let from = self.stdout.len();
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let last = line.contains(marker);
                    self.stdout.push(line);
                    if last {
                        return self.stdout[from..].join("\n");
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no walk-through within {START_PATIENCE:?}\n{}",
                    self.output()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    panic!(
                        "status-check dev ended ({status:?}) before printing its walk-through\n{}",
                        self.output()
                    );
                }
            }
        }
    }
}

/// What the walk-through told the newcomer.
#[derive(Debug)]
struct Walkthrough {
    service: String,
    database: PathBuf,
    /// The step the demo check runs, and the step the robot is sent on pass.
    demo_step: i64,
    pass_step: i64,
    /// The `curl` command under each numbered step (1–4), with its line continuations.
    commands: Vec<String>,
}

/// The text after `label` on the line that starts with it (trimmed), up to whitespace.
fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{text}"))
}

/// The integer between `before` and `after` on the first line containing both.
fn number_between(text: &str, before: &str, after: &str) -> i64 {
    text.lines()
        .find_map(|l| {
            let rest = &l[l.find(before)? + before.len()..];
            rest[..rest.find(after)?].trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no number between {before:?} and {after:?} in:\n{text}"))
}

fn parse_walkthrough(text: &str) -> Walkthrough {
    let mut commands: Vec<Option<String>> = vec![None; 4];
    let mut step = None;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(n) = (1..=4).find(|n| line.starts_with(&format!("{n}. "))) {
            step = Some(n);
            continue;
        }
        if !line.starts_with("curl ") {
            continue;
        }
        let mut command = line.to_owned();
        while command.ends_with('\\') {
            let next = lines.next().expect("a continued curl line goes on");
            command.push('\n');
            command.push_str(next);
        }
        let n = step
            .take()
            .unwrap_or_else(|| panic!("a curl line outside a numbered step: {command}"));
        commands[n - 1] = Some(command);
    }
    Walkthrough {
        service: field(text, "service").to_owned(),
        database: PathBuf::from(field(text, "database")),
        demo_step: number_between(text, "1. Start a check at step ", "("),
        pass_step: number_between(text, "next step (", ", for pass"),
        commands: commands
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.unwrap_or_else(|| panic!("no curl line for step {}:\n{text}", i + 1)))
            .collect(),
    }
}

/// The `curl` commands of the monitor's steps 5, 6 and 7, in order.
fn monitor_commands(text: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with("curl ") {
            continue;
        }
        let mut command = line.to_owned();
        while command.ends_with('\\') {
            command.push('\n');
            command.push_str(lines.next().expect("a continued curl line goes on"));
        }
        commands.push(command);
    }
    assert_eq!(
        commands.len(),
        3,
        "steps 5 to 7 each have a curl line:\n{text}"
    );
    commands
}

/// A printed `curl` command, understood: what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Request {
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

/// Splits a shell command line the way `sh` would for what the walk-through prints: words
/// separated by blanks, single-quoted strings, and backslash-newline continuations.
fn shell_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    w.push(q);
                }
            }
            '\\' if chars.peek() == Some(&'\n') => {
                chars.next();
            }
            '\\' => {
                let escaped = chars.next().expect("a backslash escapes something");
                word.get_or_insert_with(String::new).push(escaped);
            }
            '"' => panic!("double quotes in a printed command: {command}"),
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

fn parse_curl(command: &str) -> Request {
    let words = shell_words(command);
    assert_eq!(words.first().map(String::as_str), Some("curl"), "{command}");
    let mut url = None;
    let mut headers = Vec::new();
    let mut body = None;
    let mut words = words.into_iter().skip(1);
    while let Some(word) = words.next() {
        match word.as_str() {
            "-s" => {}
            "-H" => {
                let header = words.next().expect("-H takes a header");
                let (name, value) = header
                    .split_once(':')
                    .unwrap_or_else(|| panic!("not a header: {header}"));
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
            "-d" => body = Some(words.next().expect("-d takes a body")),
            w if w.starts_with('-') => panic!("an unexpected curl option {w} in: {command}"),
            w => {
                assert!(url.is_none(), "two URLs in: {command}");
                url = Some(w.to_owned());
            }
        }
    }
    Request {
        url: url.unwrap_or_else(|| panic!("no URL in: {command}")),
        headers,
        body,
    }
}

/// Runs the printed commands: with `sh` and curl when curl is installed, else by replaying
/// the parsed request with reqwest.
struct Runner {
    curl: bool,
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Runner {
    fn new() -> Runner {
        let curl = Command::new("curl")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !curl {
            eprintln!("note: curl is not installed; replaying the printed commands with reqwest");
        }
        Runner {
            curl,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: reqwest::Client::new(),
        }
    }

    /// Runs the printed command; the HTTP status and the body as JSON.
    fn run(&self, command: &str) -> (u16, Value) {
        if self.curl {
            self.run_curl(command)
        } else {
            self.replay(&parse_curl(command))
        }
    }

    /// The printed line as it is, plus a time limit and the status code after the body.
    fn run_curl(&self, command: &str) -> (u16, Value) {
        let script = format!("{command} --max-time 10 -w '\\n%{{http_code}}'");
        let output = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .expect("sh runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{script}\nexited {:?}: {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let (body, code) = stdout
            .rsplit_once('\n')
            .unwrap_or_else(|| panic!("no status code in curl's output: {stdout}"));
        (code.trim().parse().unwrap(), json(body))
    }

    fn replay(&self, request: &Request) -> (u16, Value) {
        self.runtime.block_on(async {
            let mut builder = match &request.body {
                // curl -d: a POST of the text as given.
                Some(body) => self.http.post(&request.url).body(body.clone()),
                None => self.http.get(&request.url),
            };
            let typed = request
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
            if request.body.is_some() && !typed {
                builder = builder.header("content-type", "application/x-www-form-urlencoded");
            }
            for (name, value) in &request.headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            let response = builder
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{request:?}: {e}"));
            let status = response.status().as_u16();
            (status, json(&response.text().await.unwrap()))
        })
    }
}

impl Runner {
    /// A support page, logged in as the walk-through says (any user, the dev token).
    fn page(&self, url: &str) -> (u16, String) {
        self.runtime.block_on(async {
            let response = self
                .http
                .get(url)
                .basic_auth("support", Some(status_check::dev::DEV_INTERNAL_API_TOKEN))
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            (response.status().as_u16(), response.text().await.unwrap())
        })
    }
}

/// The address ending in `path` that the walk-through printed.
fn printed_address(text: &str, path: &str) -> String {
    text.split_whitespace()
        .find(|word| word.starts_with("http://") && word.ends_with(path))
        .unwrap_or_else(|| panic!("no address ending in {path} in:\n{text}"))
        .to_owned()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Sends SIGTERM with the `kill` command (or the shell's built-in one); false when neither
/// can be run.
fn sigterm(pid: u32) -> bool {
    let pid = pid.to_string();
    let sent = |command: &mut Command| command.status().is_ok_and(|s| s.success());
    sent(Command::new("kill").args(["-TERM", &pid]))
        || sent(Command::new("sh").args(["-c", "kill -TERM \"$0\"", &pid]))
}

#[test]
fn the_printed_walkthrough_works_and_sigterm_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp_path = tmp.path().canonicalize().unwrap();
    let mut dev = DevProcess::start(&tmp_path);
    let text = dev.read_walkthrough();
    // The file's LOG_FORMAT, not dev's `pretty`.
    assert!(
        dev.stderr.lock().unwrap().contains("{\"timestamp\":"),
        "{}",
        dev.output()
    );
    let walk = parse_walkthrough(&text);
    let runner = Runner::new();

    // The walk-through names this run's addresses and a database in a fresh folder of ours.
    assert!(walk.service.starts_with("http://127.0.0.1:"), "{text}");
    assert!(
        !walk.service.trim_end_matches('/').ends_with(":8080"),
        "a free port, PORT from CONFIG_FILE: {text}"
    );
    assert!(
        walk.database.starts_with(&tmp_path),
        "the dev database {} is not under TMPDIR {}",
        walk.database.display(),
        tmp_path.display()
    );
    let db_dir = walk.database.parent().unwrap().to_owned();
    assert!(walk.database.is_file(), "{}", walk.database.display());
    assert_eq!(walk.pass_step, walk.demo_step * 10 + 1, "{text}");
    let requests: Vec<Request> = walk.commands.iter().map(|c| parse_curl(c)).collect();
    assert_eq!(
        requests[0].url,
        format!("{}/v1/status-check/check", walk.service)
    );
    assert!(
        requests[1]
            .url
            .ends_with("/internal/v1/events/robots/42/incomings")
    );
    assert_eq!(
        requests[2].url,
        format!("{}/v1/status-check/check/1", walk.service)
    );
    assert!(requests[3].url.ends_with("/sim/robots/42/messages"));

    // 1. Start the check: it waits for the robot to start charging.
    let (status, check) = runner.run(&walk.commands[0]);
    assert_eq!(status, 201, "step 1: {check}\n{}", dev.output());
    assert_eq!(check["phase"], "FUTURE", "step 1: {check}");
    assert_eq!(check["result"], "PENDING", "step 1: {check}");
    assert_eq!(check["statusCheck"], "robot-is-charging");
    assert_eq!(check["stepId"], walk.demo_step);
    assert_eq!(check["id"], 1, "step 3's printed URL names check 1");
    assert_eq!(
        check["history"][0]["eventName"], "CHARGING_STOPPED",
        "the seeded event counts: {check}"
    );

    // 2. The robot starts charging: Megazord fans the event out to the check's subscription.
    let (status, event) = runner.run(&walk.commands[1]);
    assert_eq!(status, 201, "step 2: {event}\n{}", dev.output());
    assert_eq!(event["eventName"], "CHARGING_STARTED");
    assert_eq!(
        event["outgoingIds"].as_array().map(Vec::len),
        Some(1),
        "step 2: {event}"
    );

    // 3. The check completes with PASS.
    let deadline = Instant::now() + STEP_PATIENCE;
    let done = loop {
        let (status, body) = runner.run(&walk.commands[2]);
        assert_eq!(status, 200, "step 3: {body}");
        if body["phase"] == "COMPLETED" {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "step 3: still {} after {STEP_PATIENCE:?}: {body}\n{}",
            body["phase"],
            dev.output()
        );
        std::thread::sleep(POLL);
    };
    assert_eq!(done["result"], "PASS", "step 3: {done}");
    assert_eq!(done["nextStepId"], walk.pass_step, "step 3: {done}");
    // The same request replayed without the shell sees the same check.
    let (status, replayed) = runner.replay(&requests[2]);
    assert_eq!((status, &replayed), (200, &done));

    // 4. The robot was sent the pass step.
    let deadline = Instant::now() + STEP_PATIENCE;
    let message = loop {
        let (status, body) = runner.run(&walk.commands[3]);
        assert_eq!(status, 200, "step 4: {body}");
        let found = body.as_array().and_then(|messages| {
            messages
                .iter()
                .find(|m| m["payload"]["nextStepId"] == walk.pass_step)
                .cloned()
        });
        if let Some(message) = found {
            break message;
        }
        assert!(
            Instant::now() < deadline,
            "step 4: no message with the pass step after {STEP_PATIENCE:?}: {body}\n{}",
            dev.output()
        );
        std::thread::sleep(POLL);
    };
    assert_eq!(message["to"]["robotId"], "42", "{message}");
    assert_eq!(message["payload"]["id"], 1, "{message}");
    assert_eq!(message["payload"]["phase"], "COMPLETED", "{message}");
    assert_eq!(message["payload"]["result"], "PASS", "{message}");
    assert_eq!(message["payload"]["notificationSeq"], 1, "{message}");

    // The printed page of the check shows its outcome (Basic, any user, the dev token).
    let (status, page) = runner.page(&printed_address(&text, "/internal/ui/checks/1"));
    assert_eq!(status, 200, "{page}");
    let outcome = format!("COMPLETED · PASS · next step {}", walk.pass_step);
    assert!(page.contains(&outcome), "{page}");
    assert_eq!(page.matches("class=\"event-mark\"").count(), 2, "{page}");

    // The demo monitor: its session is open (step 7), the watched event is taken (step 6),
    // and the alarms can be listed (step 5).
    let monitor_text = dev.read_until(MONITOR_LAST_LINE);
    let monitor_steps = monitor_commands(&monitor_text);
    let deadline = Instant::now() + STEP_PATIENCE;
    let monitor = loop {
        let (status, body) = runner.run(&monitor_steps[2]);
        assert_eq!(status, 200, "step 7: {body}\n{}", dev.output());
        if body["windowNumber"].is_number() {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "step 7: no session opened: {body}"
        );
        std::thread::sleep(POLL);
    };
    assert_eq!(monitor["ruleId"], "demo-no-activity", "{monitor}");
    assert_eq!(monitor["window"], "20s", "{monitor}");
    assert!(monitor["subscriptionId"].is_number(), "{monitor}");
    let (status, event) = runner.run(&monitor_steps[1]);
    assert_eq!(status, 201, "step 6: {event}");
    assert_eq!(
        event["outgoingIds"].as_array().map(Vec::len),
        Some(1),
        "step 6 reaches the monitor's subscription: {event}"
    );
    let (status, alarms) = runner.run(&monitor_steps[0]);
    assert_eq!(status, 200, "step 5: {alarms}");
    assert!(alarms.is_array(), "step 5: {alarms}");
    let (status, page) = runner.page(&printed_address(
        &monitor_text,
        "/internal/ui/monitors/42/demo-no-activity",
    ));
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("class=\"window-bar open\""),
        "the open window: {page}"
    );

    // SIGTERM: a clean exit, and the temporary database is gone.
    assert!(db_dir.is_dir());
    let pid = dev.child.id();
    assert!(sigterm(pid), "neither kill nor sh could send SIGTERM");
    let deadline = Instant::now() + STOP_PATIENCE;
    let status = loop {
        if let Some(status) = dev.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running {STOP_PATIENCE:?} after SIGTERM\n{}",
            dev.output()
        );
        std::thread::sleep(POLL);
    };
    assert_eq!(
        status.code(),
        Some(0),
        "exit after SIGTERM\n{}",
        dev.output()
    );
    assert!(
        !db_dir.exists(),
        "the dev database folder {} was left behind",
        db_dir.display()
    );
}

#[test]
fn printed_commands_parse_like_sh_would() {
    let command = "curl -s http://127.0.0.1:1/v1/x -H 'content-type: application/json' -H 'a: b c' \\\n  -d '{\"stepId\": 101}'";
    assert_eq!(
        parse_curl(command),
        Request {
            url: "http://127.0.0.1:1/v1/x".into(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("a".into(), "b c".into())
            ],
            body: Some("{\"stepId\": 101}".into()),
        }
    );
    let text = "\n  service         http://127.0.0.1:5/   (x)\n  database        /t/d/status-check.db (removed on exit)\n\
                1. Start a check at step 103 (robot-is-charging) — …:\ncurl -s A \\\n  -d 'x'\n\n\
                2. b:\ncurl -s B\n\n3. c:\ncurl -s C\n\n4. The robot was told its next step (1031, for pass):\ncurl -s D\n";
    let walk = parse_walkthrough(text);
    assert_eq!(walk.service, "http://127.0.0.1:5/");
    assert_eq!(walk.database, Path::new("/t/d/status-check.db"));
    assert_eq!((walk.demo_step, walk.pass_step), (103, 1031));
    assert_eq!(
        walk.commands,
        [
            "curl -s A \\\n  -d 'x'",
            "curl -s B",
            "curl -s C",
            "curl -s D"
        ]
    );
}
