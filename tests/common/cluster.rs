//! A site of Keyward nodes on a 3-member etcd cluster, every node on one SoftHSM token (as
//! nodes share a network HSM): node `i` runs in `dir/node-i` as node id `node-i`.

use super::Server;
use super::etcd::{Etcd, store_table};
use std::path::{Path, PathBuf};

pub struct Site {
    pub nodes: Vec<Option<Server>>,
    pub etcd: Etcd,
    dir: PathBuf,
    /// Node `i`'s extra configuration.
    extra: Box<dyn Fn(usize) -> String + Send + Sync>,
}

/// The node's lease TTL in these tests: failover in about this long.
pub const LEASE_TTL_SECS: u64 = 3;

impl Site {
    /// `nodes` nodes with `extra` in each one's configuration, etcd members started with
    /// `etcd_flags`.
    pub fn start(dir: &Path, nodes: usize, extra: &str, etcd_flags: &[&str]) -> Site {
        let extra = extra.to_owned();
        Self::start_with(dir, nodes, move |_| extra.clone(), etcd_flags)
    }

    /// `start`, with node `i`'s extra configuration `extra(i)` (e.g. a listener of its own).
    /// Top-level keys in it (before its first table) go to the top of the file.
    pub fn start_with(
        dir: &Path,
        nodes: usize,
        extra: impl Fn(usize) -> String + Send + Sync + 'static,
        etcd_flags: &[&str],
    ) -> Site {
        let etcd = Etcd::start(&dir.join("etcd"), 3, etcd_flags);
        let softhsm = dir.join("softhsm");
        std::fs::create_dir_all(softhsm.join("tokens")).expect("token dir");
        std::fs::write(
            softhsm.join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                softhsm.join("tokens").display()
            ),
        )
        .expect("softhsm conf");
        std::fs::write(softhsm.join("user.pin"), "site-user-pin\n").expect("pin");
        // The token exists before any node starts, as a site's HSM partition does.
        let made = std::process::Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", "keyward-site"])
            .args(["--so-pin", "site-so-pin", "--pin", "site-user-pin"])
            .env("SOFTHSM2_CONF", softhsm.join("softhsm2.conf"))
            .output()
            .expect("softhsm2-util");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let mut site = Site {
            nodes: Vec::new(),
            etcd,
            dir: dir.to_owned(),
            extra: Box::new(extra),
        };
        for i in 0..nodes {
            let node = site.spawn(i);
            site.nodes.push(Some(node));
        }
        site
    }

    /// The `[root_of_trust]` table every node of the site has: the site's token.
    fn root_table(&self) -> String {
        let softhsm = self.dir.join("softhsm");
        format!(
            "[root_of_trust]\ntype = \"pkcs11\"\ntoken_label = \"keyward-site\"\npin_file = \"{}\"\n",
            softhsm.join("user.pin").display(),
        )
    }

    /// A configuration for a single server on sled in `data_dir`, on the site's token.
    pub fn single_config(&self, data_dir: &Path) -> PathBuf {
        let path = self.dir.join("single.toml");
        let extra = (self.extra)(0);
        let (top, tables) = split_top(&extra);
        let text = format!(
            "data_dir = \"{}\"\n{top}\n{}\n{tables}\n",
            data_dir.display(),
            self.root_table(),
        );
        std::fs::write(&path, text).expect("single config");
        path
    }

    /// Starts `count` more nodes at the same moment, as a site's machines boot.
    pub fn add_nodes_together(&mut self, count: usize) {
        let first = self.nodes.len();
        let this = &*self;
        let started: Vec<Server> = std::thread::scope(|scope| {
            let spawned: Vec<_> = (first..first + count)
                .map(|i| scope.spawn(move || this.spawn(i)))
                .collect();
            spawned
                .into_iter()
                .map(|s| s.join().expect("node start"))
                .collect()
        });
        self.nodes.extend(started.into_iter().map(Some));
    }

    /// Starts one more node (the next index).
    pub fn add_node(&mut self) {
        let node = self.spawn(self.nodes.len());
        self.nodes.push(Some(node));
    }

    /// The configuration file of node `i`.
    pub fn config(&self, i: usize) -> PathBuf {
        let path = self.dir.join(format!("node-{i}.toml"));
        let extra = (self.extra)(i);
        let (top, tables) = split_top(&extra);
        let text = format!(
            "data_dir = \"{data}\"\nmetrics_listen = \"127.0.0.1:0\"\n{top}\n{root}\n{store}\n{tables}\n",
            data = self.data_dir(i).display(),
            root = self.root_table(),
            store = store_table(
                &self.dir.join("etcd"),
                &format!("node-{i}"),
                &format!("lease_ttl_secs = {LEASE_TTL_SECS}")
            ),
        );
        std::fs::write(&path, text).expect("node config");
        path
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node-{i}"))
    }

    pub fn softhsm_conf(&self) -> PathBuf {
        self.dir.join("softhsm").join("softhsm2.conf")
    }

    fn spawn(&self, i: usize) -> Server {
        self.try_spawn(i)
            .unwrap_or_else(|e| panic!("node-{i} did not start: {e}"))
    }

    /// Starts node `i`; on failure, what it printed.
    pub fn try_spawn(&self, i: usize) -> Result<Server, String> {
        let config = self.config(i);
        let conf = self.softhsm_conf();
        Server::try_spawn(
            &self.data_dir(i),
            &["--config", config.to_str().expect("utf-8")],
            &[("SOFTHSM2_CONF", conf.to_str().expect("utf-8"))],
        )
    }

    /// Starts node `i` again after it stopped or was killed.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i] = None;
        let node = self.spawn(i);
        self.nodes[i] = Some(node);
    }

    pub fn node(&self, i: usize) -> &Server {
        self.nodes[i].as_ref().expect("node running")
    }

    /// Every running node's endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes
            .iter()
            .flatten()
            .map(|n| n.endpoint.clone())
            .collect()
    }

    /// `keyward cluster status` through node `i`'s configuration, as JSON.
    pub fn status(&self, i: usize) -> serde_json::Value {
        let out = std::process::Command::new(super::BIN)
            .args(["cluster", "status", "--config"])
            .arg(self.config(i))
            .env("SOFTHSM2_CONF", self.softhsm_conf())
            .output()
            .expect("keyward cluster status");
        assert!(
            out.status.success(),
            "cluster status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    /// The node id holding `duty`, if any, as etcd says.
    pub fn holder(&self, duty: &str) -> Option<String> {
        let status = self.status(0);
        status["duties"]
            .as_array()?
            .iter()
            .find(|d| d["duty"] == duty)
            .and_then(|d| d["holder"].as_str().map(str::to_owned))
    }

    /// The index of the node holding `duty`, waiting until one does.
    pub async fn wait_holder(&self, duty: &str) -> usize {
        self.wait_holder_other_than(duty, None).await
    }

    /// The index of the node holding `duty`, waiting until one other than node `not` does.
    pub async fn wait_holder_other_than(&self, duty: &str, not: Option<usize>) -> usize {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let holder = self.holder(duty).and_then(|id| {
                id.strip_prefix("node-")
                    .and_then(|i| i.parse::<usize>().ok())
            });
            match holder {
                Some(i) if Some(i) != not => return i,
                _ => assert!(std::time::Instant::now() < deadline, "nobody took {duty}"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// The top-level keys of a TOML fragment (those before its first table), and the rest.
fn split_top(extra: &str) -> (&str, &str) {
    if extra.starts_with('[') {
        return ("", extra);
    }
    match extra.find("\n[") {
        Some(at) => extra.split_at(at),
        None => (extra, ""),
    }
}
