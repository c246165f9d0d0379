//! A `redis-server` of the test's own: a free 127.0.0.1 port, a temporary directory,
//! no persistence; stopped on drop.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts one, or returns `None` (after printing why) when `redis-server` is missing
    /// and `CI` is not set.
    pub fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            if std::env::var_os("CI").is_some() {
                panic!("redis-server is missing: `apt-get install -y redis-server` (.ci/run does)");
            }
            eprintln!("skipped: redis-server is not installed (apt-get install -y redis-server)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("duplex-hub-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            child: None,
            port,
            dir,
        };
        server.spawn();
        Some(server)
    }

    pub fn spawn(&mut self) {
        assert!(self.spawn_with(&[]), "redis-server is missing");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal("-CONT");
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of the test's own: `masters` masters with `replicas` replicas each,
/// `redis-server --cluster-enabled yes` on free 127.0.0.1 ports (their bus ports, +10000,
/// free too) in a temporary directory, joined with `redis-cli --cluster create`;
/// stopped on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize, replicas: usize) -> Option<Self> {
        let mut nodes = Vec::new();
        while nodes.len() < masters * (1 + replicas) {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if port > 55_000 || TcpListener::bind(("127.0.0.1", port + 10_000)).is_err() {
                continue;
            }
            let dir = std::env::temp_dir()
                .join(format!("duplex-hub-cluster-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let mut node = RedisServer {
                child: None,
                port,
                dir,
            };
            if !node.spawn_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "1000",
                "--cluster-config-file",
                "nodes.conf",
                // Replicas sync at once (the default waits 5 s for more replicas), so
                // one can take over as soon as the test starts.
                "--repl-diskless-sync-delay",
                "0",
            ]) {
                return None;
            }
            nodes.push(node);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self { nodes };
        cluster.wait_ok(Duration::from_secs(20));
        Some(cluster)
    }

    /// Waits until every running node says `cluster_state:ok` and knows all slots.
    pub fn wait_ok(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let ok = self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
                let info = n.cli(&["cluster", "info"]);
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            });
            // And every replica has its master's data (a replica that never synced is
            // not promoted).
            let synced = self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
                let info = n.cli(&["info", "replication"]);
                !info.contains("role:slave") || info.contains("master_link_status:up")
            });
            if ok && synced {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The URLs of two nodes, as `RedisConfig::url` takes them for a cluster.
    pub fn url(&self) -> String {
        self.nodes[..2]
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the master that serves `key`'s slot now.
    pub fn master_of(&self, key: &str) -> usize {
        let slot: u16 = self.nodes[0]
            .cli(&["cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap();
        let nodes = self.nodes[0].cli(&["cluster", "nodes"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if !fields.get(2).is_some_and(|f| f.contains("master")) {
                continue;
            }
            let serves = fields[8..].iter().any(|range| match range.split_once('-') {
                Some((a, b)) => {
                    (a.parse::<u16>().unwrap()..=b.parse::<u16>().unwrap()).contains(&slot)
                }
                None => range.parse::<u16>().ok() == Some(slot),
            });
            if serves {
                let port: u16 = fields[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
                return self.nodes.iter().position(|n| n.port == port).unwrap();
            }
        }
        panic!("no master serves slot {slot}");
    }
}

impl RedisServer {
    /// Starts the server with extra arguments; false when `redis-server` is missing
    /// and `CI` is not set.
    fn spawn_with(&mut self, extra: &[&str]) -> bool {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            if std::env::var_os("CI").is_some() {
                panic!("redis-server is missing: `apt-get install -y redis-server` (.ci/run does)");
            }
            eprintln!("skipped: redis-server is not installed (apt-get install -y redis-server)");
            return false;
        }
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// `redis-cli -p PORT ARGS...`'s output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
