//! Redis deployments for tests, each owning its servers: a Sentinel-managed master with a
//! replica and three Sentinels, and a Redis Cluster of three masters and three replicas.

use std::time::{Duration, Instant};

use super::proxy::FaultProxy;
use super::redis_server::{RedisServer, ServerSpec, TlsFiles};

/// The master name the Sentinels monitor.
pub const MASTER_NAME: &str = "mymaster";

/// How to run a [`SentinelSet`].
#[derive(Clone, Default)]
pub struct SentinelOptions {
    /// TLS only everywhere (servers, replication, Sentinels).
    pub tls: Option<TlsFiles>,
    /// The master's and replica's `requirepass` (the Sentinels get `auth-pass`).
    pub master_password: Option<String>,
    /// The Sentinels' own `requirepass`.
    pub sentinel_password: Option<String>,
    /// The replica replicates through a [`FaultProxy`] ([`SentinelSet::replication`]), so
    /// that a test can hold back replication (asynchronous replication losing the
    /// master's last writes in a failover). Clients and Sentinels reach both servers
    /// directly.
    pub replication_proxy: bool,
}

/// A master, its replica and three Sentinels (quorum 2, down after 1 s).
pub struct SentinelSet {
    /// The two data servers; which one is master changes with failovers.
    pub servers: Vec<RedisServer>,
    pub sentinels: Vec<RedisServer>,
    /// The proxy the replica replicates through, with
    /// [`SentinelOptions::replication_proxy`].
    pub replication: Option<FaultProxy>,
}

impl SentinelSet {
    pub fn start() -> SentinelSet {
        SentinelSet::start_with(SentinelOptions::default())
    }

    /// As `options` say: TLS only everywhere, passwords.
    pub fn start_with(options: SentinelOptions) -> SentinelSet {
        let SentinelOptions {
            tls,
            master_password,
            sentinel_password,
            replication_proxy,
        } = options;
        let master = RedisServer::start_with(ServerSpec {
            tls: tls.clone(),
            password: master_password.clone(),
            args: if tls.is_some() {
                vec!["--tls-replication".into(), "yes".into()]
            } else {
                vec![]
            },
            ..ServerSpec::default()
        });
        let replication = replication_proxy.then(|| FaultProxy::to_port(master.port()));
        let upstream = replication.as_ref().map_or(master.port(), FaultProxy::port);
        let mut args = vec![
            "--replicaof".into(),
            "127.0.0.1".into(),
            upstream.to_string(),
        ];
        if tls.is_some() {
            args.extend(["--tls-replication".into(), "yes".into()]);
        }
        let replica = RedisServer::start_with(ServerSpec {
            tls: tls.clone(),
            password: master_password.clone(),
            args,
            ..ServerSpec::default()
        });
        let listen = match &tls {
            Some(files) => format!(
                "port 0\ntls-port {{port}}\ntls-replication yes\ntls-auth-clients {}\n\
                 tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n",
                if files.auth_clients { "yes" } else { "no" },
                files.cert.display(),
                files.key.display(),
                files.ca.display()
            ),
            None => "port {port}\n".to_owned(),
        };
        let mut listen = listen;
        if let Some(password) = &sentinel_password {
            listen.push_str(&format!("requirepass {password}\n"));
        }
        let auth_pass = master_password.as_ref().map_or(String::new(), |p| {
            format!("sentinel auth-pass {MASTER_NAME} {p}\n")
        });
        // A replica replicating from another address than the master's (the proxy) is
        // "fixed" by the Sentinels once failover-timeout has passed: with a proxy, that
        // is made longer than any test.
        let failover_timeout = if replication.is_some() { 600_000 } else { 5000 };
        let conf = format!(
            "{listen}bind 127.0.0.1\ndir {{dir}}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} {failover_timeout}\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n{auth_pass}",
            master.port()
        );
        let sentinels = (0..3)
            .map(|_| {
                RedisServer::start_with(ServerSpec {
                    sentinel_conf: Some(conf.clone()),
                    tls: tls.clone(),
                    password: sentinel_password.clone(),
                    ..ServerSpec::default()
                })
            })
            .collect();
        let set = SentinelSet {
            servers: vec![master, replica],
            sentinels,
            replication,
        };
        // Ready once every Sentinel knows the replica and the other Sentinels.
        let ready = wait_until(Duration::from_secs(20), || {
            set.sentinels.iter().all(|s| {
                let info = s
                    .cli(&["SENTINEL", "MASTER", MASTER_NAME])
                    .unwrap_or_default();
                field(&info, "num-slaves") == Some("1")
                    && field(&info, "num-other-sentinels") == Some("2")
            })
        });
        assert!(
            ready,
            "the Sentinels did not see the replica and each other; a Sentinel's log:\n{}",
            set.sentinels[0].log()
        );
        set
    }

    /// The Sentinels' URLs (`rediss://` with TLS).
    pub fn urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::url).collect()
    }

    /// The master's port, as the first answering Sentinel names it.
    pub fn master_port(&self) -> u16 {
        for sentinel in &self.sentinels {
            if let Some(out) = sentinel.cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]) {
                if let Some(port) = out.lines().nth(1).and_then(|p| p.trim().parse().ok()) {
                    return port;
                }
            }
        }
        panic!("no Sentinel names the master")
    }

    /// The data server on `port`.
    pub fn server(&mut self, port: u16) -> &mut RedisServer {
        self.servers
            .iter_mut()
            .find(|s| s.port() == port)
            .expect("no server on that port")
    }

    /// Kills the master (SIGKILL) and returns its port.
    pub fn kill_master(&mut self) -> u16 {
        let port = self.master_port();
        self.server(port).kill();
        port
    }

    /// Waits until the Sentinels name another master than `old`; returns its port.
    pub fn wait_failover(&self, old: u16, within: Duration) -> u16 {
        let mut new = old;
        let done = wait_until(within, || {
            new = self.master_port();
            new != old
        });
        assert!(
            done,
            "no failover within {within:?}; a Sentinel's log:\n{}",
            self.sentinels[0].log()
        );
        new
    }
}

/// Three masters and three replicas, joined by `redis-cli --cluster create` (plain, or
/// TLS only).
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        RedisCluster::start_with(None)
    }

    /// With `tls`: TLS only, for clients, the cluster bus and replication alike.
    pub fn start_with(tls: Option<TlsFiles>) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                let mut args = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    // A replica takes over however long it was cut from its master.
                    "--cluster-replica-validity-factor",
                    "0",
                ]
                .map(String::from)
                .to_vec();
                if let Some(tls) = &tls {
                    args.extend(
                        ["--tls-cluster", "yes", "--tls-replication", "yes"].map(String::from),
                    );
                    // Towards other nodes a node is a client: with mutual TLS it presents
                    // a client certificate (the server's is for server authentication).
                    args.extend([
                        "--tls-client-cert-file".to_owned(),
                        tls.client_cert.display().to_string(),
                        "--tls-client-key-file".to_owned(),
                        tls.client_key.display().to_string(),
                    ]);
                }
                RedisServer::start_with(ServerSpec {
                    args,
                    tls: tls.clone(),
                    ..ServerSpec::default()
                })
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let mut create = std::process::Command::new("redis-cli");
        if let Some(tls) = &tls {
            create.arg("--tls").arg("--cacert").arg(&tls.ca);
            create.arg("--cert").arg(&tls.client_cert);
            create.arg("--key").arg(&tls.client_key);
        }
        let output = create
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = RedisCluster { nodes };
        let ok = wait_until(Duration::from_secs(20), || {
            cluster.nodes.iter().all(|n| {
                let info = n.cli(&["CLUSTER", "INFO"]).unwrap_or_default();
                field(&info, "cluster_state") == Some("ok")
                    && field(&info, "cluster_known_nodes") == Some("6")
            }) && cluster.masters().len() == 3
                && cluster.replicas_synced()
        });
        assert!(
            ok,
            "the cluster did not become ok; a node's log:\n{}",
            cluster.nodes[0].log()
        );
        cluster
    }

    /// The URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The ports of the running masters (by `ROLE`).
    pub fn masters(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .filter(|n| {
                n.cli(&["ROLE"])
                    .is_some_and(|r| r.lines().next() == Some("master"))
            })
            .map(RedisServer::port)
            .collect()
    }

    fn replicas_synced(&self) -> bool {
        self.nodes.iter().filter(|n| n.is_running()).all(|n| {
            let info = n.cli(&["INFO", "replication"]).unwrap_or_default();
            field(&info, "role") == Some("master")
                || field(&info, "master_link_status") == Some("up")
        })
    }

    /// The node on `port`.
    pub fn node(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .expect("no node on that port")
    }

    /// The master that owns `key`'s slot.
    pub fn master_of(&self, key: &str) -> u16 {
        let node = self.nodes.iter().find(|n| n.is_running()).expect("a node");
        let slot: u16 = node
            .cli(&["CLUSTER", "KEYSLOT", key])
            .and_then(|s| s.trim().parse().ok())
            .expect("CLUSTER KEYSLOT");
        // `CLUSTER NODES`: id addr flags master ping pong epoch state slots…
        let nodes = node.cli(&["CLUSTER", "NODES"]).unwrap_or_default();
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let port: u16 = fields[1]
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            for range in &fields[8..] {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(from), Ok(to)) = (from.parse::<u16>(), to.parse::<u16>()) {
                    if (from..=to).contains(&slot) {
                        return port;
                    }
                }
            }
        }
        panic!("no master owns slot {slot}:\n{nodes}")
    }

    /// Waits until every slot is served again and the cluster is ok on every running node.
    pub fn wait_ok(&self, within: Duration) -> bool {
        wait_until(within, || {
            self.nodes.iter().filter(|n| n.is_running()).all(|n| {
                let info = n.cli(&["CLUSTER", "INFO"]).unwrap_or_default();
                field(&info, "cluster_state") == Some("ok")
            }) && self.masters().len() == 3
        })
    }
}

/// The value of `name` in `name:value` lines (`INFO`) or in alternating lines
/// (`SENTINEL MASTER`).
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some(value) = line.strip_prefix(name).and_then(|r| r.strip_prefix(':')) {
            return Some(value);
        }
        if *line == name {
            return lines.get(i + 1).copied();
        }
    }
    None
}

fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
