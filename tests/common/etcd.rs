//! etcd for the tests: a cluster of 1 or 3 members on loopback, each in its own directory with
//! ports of its own, killed on drop. A cluster started again on the same directory keeps its
//! ports (recorded there) and its data, as a restarted server expects.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Members are named m0, m1, ...
pub struct Etcd {
    dir: PathBuf,
    members: Vec<Member>,
    extra: Vec<String>,
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// The `[store]` table of a node as `node_id` on the etcd cluster laid out under `dir`.
pub fn store_table(dir: &Path, node_id: &str, extra: &str) -> String {
    let endpoints = layout(dir, 1)
        .iter()
        .map(|m| format!("\"http://127.0.0.1:{}\"", m.client))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[store]\ntype = \"etcd\"\nendpoints = [{endpoints}]\nprefix = \"/keyward/test/\"\nnode_id = \"{node_id}\"\nmax_txn_ops = 1024\n{extra}\n"
    )
}

/// Whether an etcd cluster has been laid out under `dir`.
pub fn laid_out(dir: &Path) -> bool {
    dir.join("ports").exists()
}

/// The members of the cluster under `dir`: as recorded there, or `size` new ones with free
/// ports, recorded.
fn layout(dir: &Path, size: usize) -> Vec<Member> {
    std::fs::create_dir_all(dir).expect("etcd dir");
    let ports = dir.join("ports");
    match std::fs::read_to_string(&ports) {
        Ok(text) => text
            .lines()
            .map(|line| {
                let mut parts = line.split(' ');
                Member {
                    name: parts.next().unwrap().to_owned(),
                    client: parts.next().unwrap().parse().unwrap(),
                    peer: parts.next().unwrap().parse().unwrap(),
                    child: None,
                }
            })
            .collect(),
        Err(_) => {
            let members: Vec<Member> = (0..size)
                .map(|i| Member {
                    name: format!("m{i}"),
                    client: super::free_port(),
                    peer: super::free_port(),
                    child: None,
                })
                .collect();
            let text: String = members
                .iter()
                .map(|m| format!("{} {} {}\n", m.name, m.client, m.peer))
                .collect();
            std::fs::write(&ports, text).expect("record ports");
            members
        }
    }
}

impl Etcd {
    /// Starts (or starts again) the cluster under `dir` (`size` members if it is new), with
    /// `extra` flags for every member, and waits until it has a leader.
    pub fn start(dir: &Path, size: usize, extra: &[&str]) -> Etcd {
        let members = layout(dir, size);
        let mut etcd = Etcd {
            dir: dir.to_owned(),
            members,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..etcd.members.len() {
            etcd.spawn(i);
        }
        etcd.wait_healthy(etcd.members.len() / 2 + 1);
        etcd
    }

    fn spawn(&mut self, i: usize) {
        let cluster = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let member = &self.members[i];
        let client_url = format!("http://127.0.0.1:{}", member.client);
        let peer_url = format!("http://127.0.0.1:{}", member.peer);
        let log =
            std::fs::File::create(self.dir.join(format!("{}.log", member.name))).expect("etcd log");
        let child = Command::new("etcd")
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(self.dir.join(&member.name))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--auto-compaction-mode", "revision"])
            .args(["--auto-compaction-retention", "1000"])
            .args(["--max-txn-ops", "1024"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (apt install etcd-server)");
        self.members[i].child = Some(child);
    }

    /// `http://127.0.0.1:port` of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect()
    }

    /// SIGKILLs member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    /// Waits until `count` members answer `etcdctl endpoint health` (a quorum read).
    pub fn wait_healthy(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let healthy = self
                .endpoints()
                .iter()
                .filter(|endpoint| {
                    Command::new("etcdctl")
                        .env("ETCDCTL_API", "3")
                        .args([
                            "--endpoints",
                            endpoint,
                            "--command-timeout=1s",
                            "endpoint",
                            "health",
                        ])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
                })
                .count();
            if healthy >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd under {} did not become healthy",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
