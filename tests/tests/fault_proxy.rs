//! The test harness's fault proxy (`support::proxy`) against a real `redis-server`: each
//! mode does what it says to raw RESP connections, and switching back to `Pass` heals.
//! Time bounds are only lower bounds or generous "nothing arrived within" waits.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use infuse_tests::support::calls;
use infuse_tests::support::proxy::{FaultProxy, Mode};
use infuse_tests::support::redis_server::RedisServer;

/// How long a reply may take when one is expected (a loaded 2-core machine).
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// How long to wait for a reply that must not come.
const SILENCE: Duration = Duration::from_millis(400);

/// A command in RESP.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend(format!("${}\r\n{arg}\r\n", arg.len()).into_bytes());
    }
    out
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    tokio::time::timeout(
        ANSWER_WITHIN,
        TcpStream::connect(("127.0.0.1", proxy.port())),
    )
    .await
    .expect("connecting to the proxy timed out")
    .expect("connecting to the proxy")
}

/// What the connection reads within `within`: `Some(Ok(bytes))` (empty: end of
/// stream), `Some(Err(kind))` on an error, `None` if nothing came.
async fn read_within(
    stream: &mut TcpStream,
    within: Duration,
) -> Option<Result<Vec<u8>, std::io::ErrorKind>> {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Err(_) => None,
        Ok(Ok(n)) => Some(Ok(buf[..n].to_vec())),
        Ok(Err(e)) => Some(Err(e.kind())),
    }
}

/// Reads until `expected` has arrived (replies may come in pieces).
async fn expect_reply(stream: &mut TcpStream, expected: &str) {
    let deadline = Instant::now() + ANSWER_WITHIN;
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match read_within(stream, left).await {
            Some(Ok(bytes)) if !bytes.is_empty() => got.extend(bytes),
            other => panic!(
                "expected {expected:?}, got {:?} then {other:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    assert_eq!(String::from_utf8_lossy(&got), expected);
}

async fn send(stream: &mut TcpStream, args: &[&str]) {
    stream
        .write_all(&resp(args))
        .await
        .expect("writing a command");
}

async fn ping(stream: &mut TcpStream) {
    send(stream, &["PING"]).await;
    expect_reply(stream, "+PONG\r\n").await;
}

async fn assert_silent(stream: &mut TcpStream, what: &str) {
    if let Some(got) = read_within(stream, SILENCE).await {
        panic!(
            "{what}: expected nothing within {SILENCE:?}, got {:?}",
            got.map(|b| String::from_utf8_lossy(&b).into_owned())
        );
    }
}

/// The connection ends (end of stream or reset) without answering.
async fn assert_closed(stream: &mut TcpStream, what: &str) {
    match read_within(stream, ANSWER_WITHIN).await {
        Some(Ok(bytes)) if bytes.is_empty() => {}
        Some(Err(_)) => {}
        other => panic!(
            "{what}: expected the connection closed, got {:?}",
            other.map(|r| r.map(|b| String::from_utf8_lossy(&b).into_owned()))
        ),
    }
}

fn proxy_to(server: &RedisServer) -> FaultProxy {
    FaultProxy::to_port(server.port())
}

#[tokio::test]
async fn pass_forwards_commands_and_replies() {
    let server = RedisServer::start();
    let proxy = proxy_to(&server);
    assert_eq!(proxy.url(), format!("redis://127.0.0.1:{}", proxy.port()));
    let mut conn = connect(&proxy).await;
    ping(&mut conn).await;
    send(&mut conn, &["SET", "k", "v"]).await;
    expect_reply(&mut conn, "+OK\r\n").await;
    send(&mut conn, &["GET", "k"]).await;
    expect_reply(&mut conn, "$1\r\nv\r\n").await;
    assert_eq!(server.cli(&["GET", "k"]).unwrap().trim(), "v");
    assert_eq!(proxy.open_connections(), 1);
    assert_eq!(proxy.subscriber_connections(), 0);
}

#[tokio::test]
async fn delay_holds_each_chunk_in_both_directions() {
    let server = RedisServer::start();
    let proxy = proxy_to(&server);
    let mut conn = connect(&proxy).await;
    ping(&mut conn).await;
    let delay = Duration::from_millis(300);
    proxy.set(Mode::Delay(delay));
    let start = Instant::now();
    ping(&mut conn).await;
    let took = start.elapsed();
    // Lower bound only: the command and the reply each waited `delay`.
    assert!(took >= delay * 2, "a delayed PING took {took:?}");
    proxy.set(Mode::Pass);
    ping(&mut conn).await;
}

#[tokio::test]
async fn blackhole_holds_connections_and_heals_them() {
    let server = RedisServer::start();
    let proxy = proxy_to(&server);
    let mut conn = connect(&proxy).await;
    ping(&mut conn).await;

    proxy.set(Mode::Blackhole);
    send(&mut conn, &["SET", "held", "1"]).await;
    assert_silent(&mut conn, "a PING in a blackhole").await;
    // The command did not reach the server either.
    assert_eq!(server.cli(&["EXISTS", "held"]).unwrap().trim(), "0");
    // New connections are accepted and held too.
    let mut late = connect(&proxy).await;
    send(&mut late, &["PING"]).await;
    assert_silent(&mut late, "a new connection's PING in a blackhole").await;

    // Healed: what was held is delivered, in order, on both connections.
    proxy.set(Mode::Pass);
    expect_reply(&mut conn, "+OK\r\n").await;
    expect_reply(&mut late, "+PONG\r\n").await;
    assert_eq!(server.cli(&["GET", "held"]).unwrap().trim(), "1");
    ping(&mut conn).await;
}

#[tokio::test]
async fn reset_closes_connections_and_refuses_new_ones_until_healed() {
    let server = RedisServer::start();
    let proxy = proxy_to(&server);
    let mut conn = connect(&proxy).await;
    ping(&mut conn).await;

    proxy.set(Mode::Reset);
    assert_closed(&mut conn, "a connection open when Reset was set").await;
    // A new connection is accepted, then closed at once (the reset may even reach the
    // client while it is still connecting).
    if let Ok(Ok(mut refused)) = tokio::time::timeout(
        ANSWER_WITHIN,
        TcpStream::connect(("127.0.0.1", proxy.port())),
    )
    .await
    {
        let _ = refused.write_all(&resp(&["PING"])).await;
        assert_closed(&mut refused, "a connection made during Reset").await;
    }
    // Healed: new connections work.
    proxy.set(Mode::Pass);
    let mut fresh = connect(&proxy).await;
    ping(&mut fresh).await;
}

#[tokio::test]
async fn drop_replies_runs_commands_but_loses_their_answers() {
    let server = RedisServer::start();
    let proxy = proxy_to(&server);
    let mut conn = connect(&proxy).await;
    ping(&mut conn).await;

    proxy.set(Mode::DropReplies);
    send(&mut conn, &["SET", "k", "written"]).await;
    assert_silent(&mut conn, "a reply under DropReplies").await;
    // The command ran.
    assert_eq!(server.cli(&["GET", "k"]).unwrap().trim(), "written");
    assert!(
        proxy.discarded_bytes() > 0,
        "nothing was counted as discarded"
    );

    // Healed: later replies come back (the lost one stays lost).
    proxy.set(Mode::Pass);
    ping(&mut conn).await;
}

#[tokio::test]
async fn drop_pubsub_loses_messages_while_commands_pass() {
    let server = RedisServer::start();
    let proxy = proxy_to(&server);
    let mut subscriber = connect(&proxy).await;
    send(&mut subscriber, &["SUBSCRIBE", "events"]).await;
    expect_reply(
        &mut subscriber,
        "*3\r\n$9\r\nsubscribe\r\n$6\r\nevents\r\n:1\r\n",
    )
    .await;
    let mut commands = connect(&proxy).await;
    ping(&mut commands).await;
    assert_eq!(proxy.subscriber_connections(), 1);
    assert_eq!(proxy.open_connections(), 2);

    proxy.set(Mode::DropPubSub);
    // The server delivers the message to the subscriber (1 receiver)...
    assert_eq!(
        server.cli(&["PUBLISH", "events", "lost"]).unwrap().trim(),
        "1"
    );
    // ... and the proxy discards it, while commands and replies still pass.
    assert_silent(&mut subscriber, "a message under DropPubSub").await;
    send(&mut commands, &["SET", "k", "v"]).await;
    expect_reply(&mut commands, "+OK\r\n").await;
    send(&mut commands, &["GET", "k"]).await;
    expect_reply(&mut commands, "$1\r\nv\r\n").await;
    assert!(proxy.discarded_bytes() > 0);

    // Healed: the next message arrives.
    proxy.set(Mode::Pass);
    assert_eq!(
        server.cli(&["PUBLISH", "events", "kept"]).unwrap().trim(),
        "1"
    );
    expect_reply(
        &mut subscriber,
        "*3\r\n$7\r\nmessage\r\n$6\r\nevents\r\n$4\r\nkept\r\n",
    )
    .await;
}

#[tokio::test]
async fn drop_replies_spares_subscriber_connections() {
    let server = RedisServer::start();
    let proxy = proxy_to(&server);
    let mut subscriber = connect(&proxy).await;
    // Lower case, and split in two writes: the detection reads RESP as it comes.
    let command = resp(&["psubscribe", "ev*"]);
    let (first, second) = command.split_at(9);
    subscriber.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    subscriber.write_all(second).await.unwrap();
    expect_reply(
        &mut subscriber,
        "*3\r\n$10\r\npsubscribe\r\n$3\r\nev*\r\n:1\r\n",
    )
    .await;
    assert_eq!(proxy.subscriber_connections(), 1);

    proxy.set(Mode::DropReplies);
    assert_eq!(server.cli(&["PUBLISH", "events", "m"]).unwrap().trim(), "1");
    expect_reply(
        &mut subscriber,
        "*4\r\n$8\r\npmessage\r\n$3\r\nev*\r\n$6\r\nevents\r\n$1\r\nm\r\n",
    )
    .await;
}

#[tokio::test]
async fn the_redis_client_through_the_proxy() {
    let server = RedisServer::start();
    let proxy = proxy_to(&server);
    let client = redis::Client::open(proxy.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");

    proxy.set(Mode::Blackhole);
    let held =
        tokio::time::timeout(SILENCE, redis::cmd("PING").query_async::<String>(&mut conn)).await;
    assert!(held.is_err(), "a PING answered in a blackhole: {held:?}");

    proxy.set(Mode::Reset);
    let reset = tokio::time::timeout(
        ANSWER_WITHIN,
        redis::cmd("PING").query_async::<String>(&mut conn),
    )
    .await
    .expect("a PING on a reset connection hung instead of failing");
    assert!(reset.is_err(), "a PING answered on a reset connection");

    proxy.set(Mode::Pass);
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
}

#[tokio::test]
async fn dropping_the_proxy_closes_everything() {
    let server = RedisServer::start();
    let proxy = proxy_to(&server);
    let mut conn = connect(&proxy).await;
    ping(&mut conn).await;
    assert_eq!(
        upstream_clients(&server),
        1,
        "the proxy's upstream connection"
    );
    drop(proxy);
    assert_closed(&mut conn, "a connection through a dropped proxy").await;
    // Its upstream side is closed too.
    let closed = calls::eventually(ANSWER_WITHIN, Duration::from_millis(20), async || {
        upstream_clients(&server) == 0
    })
    .await;
    assert!(
        closed,
        "the server still has the dropped proxy's connection"
    );
}

/// The server's clients other than the `redis-cli` asking.
fn upstream_clients(server: &RedisServer) -> usize {
    let info = server.cli(&["INFO", "clients"]).expect("INFO clients");
    let connected: usize = info
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("connected_clients in INFO");
    connected - 1
}
