//! The gateway example as a fleet, against a real `redis-server`: a gateway that joins
//! while the `users` breaker is open leaves it open (nothing is reset at boot), ports
//! come from the arguments or the environment, and a taken port or an absent Redis ends
//! with one readable line. (`cargo test` builds the example before running this.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use infuse_tests::support::redis_server::{free_port, RedisServer};

/// The example's binary, beside this test's (`target/<profile>/examples/gateway`).
fn gateway_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let binary = profile.join("examples").join("gateway");
    assert!(binary.exists(), "{} is not built", binary.display());
    binary
}

/// A gateway process, killed when dropped, with the read end of its stdout: closing
/// it early would fail the gateway's next `println!` (a broken pipe) and end it.
struct Gateway(Child, #[allow(dead_code)] BufReader<ChildStdout>);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `gateway --serve args…` with `env`, and waits for its first line.
fn serve(redis: &RedisServer, args: &[&str], env: &[(&str, String)]) -> Gateway {
    let mut child = Command::new(gateway_binary())
        .arg("--serve")
        .args(args)
        .env("REDIS_URL", redis.url())
        .env_remove("GATEWAY_PORT")
        .env_remove("USERS_PORT")
        .env_remove("USERS_URL")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("gateway: curl"), "{first:?}");
    Gateway(child, stdout)
}

/// `method path` on 127.0.0.1:`port`: the status code.
fn http(method: &str, port: u16, path: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

/// Runs the gateway to its end (a mistake ends it at once).
fn run(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = Command::new(gateway_binary());
    command
        .args(args)
        .env_remove("GATEWAY_PORT")
        .env_remove("USERS_PORT")
        .env_remove("USERS_URL")
        .env_remove("REDIS_URL")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the gateway did not end within 10 s ({args:?})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The one line a failed gateway printed.
fn one_line(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    assert!(text.starts_with("gateway: "), "{text}");
    text
}

#[test]
fn a_gateway_joining_the_fleet_keeps_an_open_breaker_open() {
    let redis = RedisServer::start();
    let (first, users, second) = (free_port(), free_port(), free_port());
    let users_url = format!("http://127.0.0.1:{users}");
    let _first = serve(
        &redis,
        &[
            "--port",
            &first.to_string(),
            "--users-port",
            &users.to_string(),
        ],
        &[],
    );
    assert_eq!(http("GET", first, "/profile/7"), 200);
    // users goes down: three failures open the fleet's breaker.
    assert_eq!(http("POST", users, "/toggle"), 200);
    let statuses: Vec<u16> = (0..4).map(|_| http("GET", first, "/profile/7")).collect();
    assert_eq!(statuses, [502, 502, 502, 503], "the breaker opened");
    // users is back, but nobody may know before the reset timeout (2 s).
    assert_eq!(http("POST", users, "/toggle"), 200);

    // A second gateway, its ports from the environment, sharing the first one's users.
    let _second = serve(
        &redis,
        &[],
        &[
            ("GATEWAY_PORT", second.to_string()),
            ("USERS_URL", users_url.clone()),
        ],
    );
    assert_eq!(
        http("GET", second, "/profile/7"),
        503,
        "the new gateway joined the open breaker instead of closing it"
    );
    assert_eq!(
        http("GET", first, "/profile/7"),
        503,
        "still open for everyone"
    );

    // A third on the first one's port: one line saying what to do.
    let taken = run(
        &[
            "--serve",
            "--port",
            &first.to_string(),
            "--users-url",
            &users_url,
        ],
        &[("REDIS_URL", redis.url())],
    );
    let said = one_line(&taken);
    assert!(
        said.contains(&format!("port {first} is already in use"))
            && said.contains("--port N (or $GATEWAY_PORT)"),
        "{said}"
    );
}

#[test]
fn mistakes_end_with_one_readable_line() {
    let absent = format!("redis://127.0.0.1:{}", free_port());
    let said = one_line(&run(&["--serve"], &[("REDIS_URL", absent)]));
    assert!(
        said.contains("no Redis answered") && said.contains("redis-server --port 6379"),
        "{said}"
    );
    let said = one_line(&run(&["--port", "http"], &[]));
    assert!(
        said.contains("--port \"http\" is not a port number"),
        "{said}"
    );
    let said = one_line(&run(&["--serve"], &[("USERS_PORT", "70000".into())]));
    assert!(said.contains("$USERS_PORT \"70000\""), "{said}");
}
