//! Hermetic `redis-server` processes for tests: each on its own free port, killed on drop,
//! with fault injection (kill, SIGSTOP/SIGCONT, restart empty, flush). Also TLS-only
//! servers, Sentinels (see [`super::topology`]) and cluster nodes: each server owns its
//! process, its temporary directory and its log, which is printed when it cannot start.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A `redis-server` owned by one test.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: PathBuf,
    spec: ServerSpec,
}

/// How to run a server beyond the defaults.
#[derive(Clone, Default)]
pub struct ServerSpec {
    /// TLS only (`--port 0 --tls-port <port>`), with these files.
    pub tls: Option<TlsFiles>,
    /// More `redis-server` arguments (`--cluster-enabled yes`, `--replicaof …`).
    pub args: Vec<String>,
    /// A Sentinel with this configuration (`{port}` and `{dir}` are replaced); `args` are
    /// then ignored.
    pub sentinel_conf: Option<String>,
    /// The `default` user's password (`--requirepass`, and `--masterauth` for replication;
    /// a Sentinel's configuration sets its own): in `url()`, given by `cli()`.
    pub password: Option<String>,
}

/// The certificate files of a TLS server (PEM).
#[derive(Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// `--tls-auth-clients yes` (mutual TLS) or `no`.
    pub auth_clients: bool,
    /// The client certificate and key `redis-cli` presents.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Processes to kill when the test binary exits: servers of topologies shared through
/// statics, which are never dropped.
static AT_EXIT: Mutex<Vec<u32>> = Mutex::new(Vec::new());

extern "C" fn kill_at_exit() {
    let pids = AT_EXIT.lock().map(|p| p.clone()).unwrap_or_default();
    for pid in pids {
        // SAFETY: kill(2) on a pid this process spawned; no memory is touched.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
}

fn register_at_exit(pid: u32) {
    let mut pids = AT_EXIT.lock().unwrap_or_else(|e| e.into_inner());
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    // SAFETY: registers a plain `extern "C"` function that only reads a static.
    REGISTERED.call_once(|| unsafe {
        libc::atexit(kill_at_exit);
    });
    pids.push(pid);
}

fn unregister_at_exit(pid: u32) {
    let mut pids = AT_EXIT.lock().unwrap_or_else(|e| e.into_inner());
    pids.retain(|p| *p != pid);
}

/// A new temporary directory of this test process.
pub fn temp_dir(what: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "infuse-{what}-{}-{n}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> RedisServer {
        RedisServer::start_with(ServerSpec::default())
    }

    /// Starts a server as `spec` says, on a free port, and waits until it answers. Panics
    /// with the end of its log if it does not.
    pub fn start_with(spec: ServerSpec) -> RedisServer {
        let dir = temp_dir("redis");
        // The port may be taken between probing and binding: try a few.
        for _ in 0..5 {
            let mut server = RedisServer {
                port: free_port(),
                child: None,
                dir: dir.clone(),
                spec: spec.clone(),
            };
            if server.spawn() {
                return server;
            }
        }
        panic!(
            "could not start redis-server (is it installed? .ci/run installs it); its log:\n{}",
            log_tail(&dir)
        );
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// The end of the server's log.
    pub fn log(&self) -> String {
        log_tail(&self.dir)
    }

    fn spawn(&mut self) -> bool {
        let port = self.port.to_string();
        let dir = self.dir.to_str().unwrap().to_owned();
        let log = self.log_file().to_str().unwrap().to_owned();
        let mut command = Command::new("redis-server");
        if let Some(conf) = &self.spec.sentinel_conf {
            let path = self.dir.join("sentinel.conf");
            let conf = conf.replace("{port}", &port).replace("{dir}", &dir);
            std::fs::write(&path, format!("{conf}\nlogfile {log}\n")).expect("sentinel.conf");
            command.arg(&path).arg("--sentinel");
        } else {
            match &self.spec.tls {
                Some(tls) => {
                    command.args(["--port", "0", "--tls-port", &port]);
                    command.arg("--tls-cert-file").arg(&tls.cert);
                    command.arg("--tls-key-file").arg(&tls.key);
                    command.arg("--tls-ca-cert-file").arg(&tls.ca);
                    command.args([
                        "--tls-auth-clients",
                        if tls.auth_clients { "yes" } else { "no" },
                    ]);
                }
                None => {
                    command.args(["--port", &port]);
                }
            }
            command.args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &dir,
                "--logfile",
                &log,
            ]);
            if let Some(password) = &self.spec.password {
                command.args(["--requirepass", password, "--masterauth", password]);
            }
            command.args(&self.spec.args);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found on PATH (.ci/run installs it)");
        register_at_exit(child.id());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self
                .cli(&["PING"])
                .map(|o| o.trim() == "PONG")
                .unwrap_or(false)
            {
                return true;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    unregister_at_exit(child.id());
                    self.child = None;
                    return false;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/0`, or `rediss://…` for a TLS server (no `/0` for a
    /// Sentinel).
    pub fn url(&self) -> String {
        let scheme = if self.spec.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let auth = self
            .spec
            .password
            .as_ref()
            .map_or(String::new(), |p| format!(":{p}@"));
        if self.spec.sentinel_conf.is_some() {
            return format!("{scheme}://{auth}127.0.0.1:{}", self.port);
        }
        format!("{scheme}://{auth}127.0.0.1:{}/0", self.port)
    }

    /// Whether the process is running (not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server not running").id()
    }

    /// Runs `redis-cli` against this server, returning its output.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let mut command = Command::new("redis-cli");
        command.args(["-p", &self.port.to_string()]);
        if let Some(tls) = &self.spec.tls {
            command.arg("--tls").arg("--cacert").arg(&tls.ca);
            command.arg("--cert").arg(&tls.client_cert);
            command.arg("--key").arg(&tls.client_key);
        }
        if let Some(password) = &self.spec.password {
            command.args(["-a", password, "--no-auth-warning"]);
        }
        let output = command.args(args).stderr(Stdio::null()).output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Kills the server (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            unregister_at_exit(child.id());
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        signal("-STOP", self.pid());
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        signal("-CONT", self.pid());
    }

    /// Kills the server and starts an empty one on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.spawn() {
            assert!(Instant::now() < deadline, "could not restart redis-server");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn flushall(&self) {
        self.cli(&["FLUSHALL"]).expect("FLUSHALL");
    }

    /// `INFO commandstats` as command (lower case, e.g. `evalsha`) → calls, since start
    /// or the last `CONFIG RESETSTAT`; the harness's own `INFO` and `CONFIG` included.
    pub fn command_stats(&self) -> BTreeMap<String, u64> {
        let stats = self.cli(&["INFO", "commandstats"]).unwrap_or_default();
        stats
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("cmdstat_")?;
                let (name, rest) = rest.split_once(':')?;
                let calls = rest
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .collect()
    }

    /// Number of calls of `command` (lower case, e.g. `evalsha`) since start or the
    /// last `CONFIG RESETSTAT`.
    pub fn command_calls(&self, command: &str) -> u64 {
        self.command_stats().get(command).copied().unwrap_or(0)
    }

    /// Total calls of every command except `INFO` / `CONFIG` (what the test harness sends).
    pub fn total_calls(&self) -> u64 {
        self.command_stats()
            .iter()
            .filter(|(name, _)| !name.starts_with("info") && !name.starts_with("config"))
            .map(|(_, calls)| calls)
            .sum()
    }
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let from = lines.len().saturating_sub(40);
    lines[from..].join("\n")
}

fn signal(which: &str, pid: u32) {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status();
    assert!(
        status.map(|s| s.success()).unwrap_or(false),
        "kill {which} {pid} failed"
    );
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
