//! Replication sites on 127.0.0.1: one `keyward serve` per site, each with its own data
//! directory, root of trust and region, its replication listener on a fixed port and a
//! certificate from a CA shared by the sites; every site lists the others as peers.

use super::pki::{Ca, Pair};
use super::secrets::{self, Sm};
use super::{Kms, Server};
use keyward::api::pb::{self, site_replication_service_client::SiteReplicationServiceClient};
use std::path::{Path, PathBuf};
use tonic::Status;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

pub struct Site {
    pub name: String,
    pub data_dir: PathBuf,
    /// The replication listener's port, kept for the whole test: peers and restarts use it.
    pub port: u16,
    pub pair: Pair,
    server: Option<Server>,
}

pub struct Sites {
    pub dir: PathBuf,
    /// The CA that issues site certificates.
    pub ca: Ca,
    sites: Vec<Site>,
    /// (site, peer, site actually listening): a peer's endpoint configured wrongly.
    misroutes: Vec<(String, String, String)>,
    /// (site, peer): the site lets that peer overwrite its own secrets.
    overwriters: Vec<(String, String)>,
}

impl Sites {
    /// Certificates, ports and data directories for `names`; no site is started.
    pub fn new(dir: &Path, names: &[&str]) -> Sites {
        let pki = dir.join("pki");
        let ca = Ca::new(&pki, "sites-ca");
        let sites = names
            .iter()
            .map(|name| Site {
                name: name.to_string(),
                data_dir: dir.join(name),
                port: super::free_port(),
                pair: ca.site(&pki, name),
                server: None,
            })
            .collect();
        Sites {
            dir: dir.to_owned(),
            ca,
            sites,
            misroutes: Vec::new(),
            overwriters: Vec::new(),
        }
    }

    /// `new`, then every site started.
    pub fn start_all(dir: &Path, names: &[&str]) -> Sites {
        let mut sites = Sites::new(dir, names);
        for name in names {
            sites.start(name);
        }
        sites
    }

    /// Starts `name`, or restarts it on the same data directory and ports.
    pub fn start(&mut self, name: &str) {
        let config = self.config(name);
        let site = self.site_mut(name);
        assert!(site.server.is_none(), "{name} is already running");
        site.server = Some(Server::with_config(&site.data_dir, &config));
    }

    /// From `site`'s next start, its endpoint for `peer` leads to `actual`'s listener.
    pub fn misroute(&mut self, site: &str, peer: &str, actual: &str) {
        self.misroutes
            .push((site.to_owned(), peer.to_owned(), actual.to_owned()));
    }

    /// From `site`'s next start, `peer` may overwrite its own secrets (force overwrite).
    pub fn allow_overwrite_local(&mut self, site: &str, peer: &str) {
        self.overwriters.push((site.to_owned(), peer.to_owned()));
    }

    /// The DNS name a site's certificate carries, which its peers configure as its identity.
    pub fn identity(name: &str) -> String {
        format!("{name}.keyward.test")
    }

    /// SIGKILL: a site lost without warning.
    pub fn kill(&mut self, name: &str) {
        self.take(name).kill();
    }

    /// SIGTERM and a clean exit.
    pub fn stop(&mut self, name: &str) {
        self.take(name).stop();
    }

    pub fn server(&self, name: &str) -> &Server {
        self.site(name)
            .server
            .as_ref()
            .unwrap_or_else(|| panic!("{name} is not running"))
    }

    pub async fn sm(&self, name: &str) -> Sm {
        secrets::client(self.server(name)).await
    }

    pub async fn kms(&self, name: &str) -> Kms {
        self.server(name).kms().await
    }

    pub fn site(&self, name: &str) -> &Site {
        self.sites
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no site {name}"))
    }

    /// The replication endpoint peers call.
    pub fn replication_url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}", self.site(name).port)
    }

    /// A metric of a running site, e.g. `keyward_replication_peer_up{peer="site-b"}`.
    pub async fn metric(&self, name: &str, metric: &str) -> Option<f64> {
        let addr = self.server(name).metrics.clone().expect("metrics listener");
        let text = keyward::metrics::fetch(&addr).await.expect("scrape");
        keyward::metrics::value_of(&text, metric)
    }

    /// The end of every site's log, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        self.sites
            .iter()
            .map(|s| {
                let log = std::fs::read_to_string(s.data_dir.join("server.log"));
                let log = log.unwrap_or_default();
                let tail: Vec<_> = log.lines().rev().take(lines).collect();
                let tail: Vec<_> = tail.into_iter().rev().collect();
                format!("---- {} ----\n{}\n", s.name, tail.join("\n"))
            })
            .collect()
    }

    /// Calls `to`'s site-to-site Apply presenting `client`'s certificate. A connection that
    /// cannot be made is reported as UNAVAILABLE, so callers handle one kind of error.
    pub async fn apply_as(
        &self,
        to: &str,
        client: &Pair,
        request: pb::ApplyRequest,
    ) -> Result<pb::ApplyResponse, Status> {
        keyward::access::tls::use_ring();
        let read = |p: &Path| std::fs::read(p).unwrap();
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&self.ca.cert)))
            .identity(Identity::from_pem(read(&client.cert), read(&client.key)))
            .domain_name(Self::identity(to));
        let channel = Channel::from_shared(self.replication_url(to))
            .unwrap()
            .tls_config(tls)
            .map_err(|e| Status::unavailable(format!("tls config: {e}")))?
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("connect: {e:?}")))?;
        SiteReplicationServiceClient::new(channel)
            .apply(request)
            .await
            .map(|r| r.into_inner())
    }

    /// The site's configuration: its region, metrics, and replication with every other site
    /// as a peer. Short retry delays keep convergence after an outage quick.
    fn config(&self, name: &str) -> String {
        let me = self.site(name);
        let mut config = format!(
            "region = \"{name}\"\nmetrics_listen = \"127.0.0.1:0\"\n\
             [replication]\nlisten = \"127.0.0.1:{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
             ca_file = \"{}\"\nretry_initial_ms = 100\nretry_max_ms = 1000\n",
            me.port,
            me.pair.cert.display(),
            me.pair.key.display(),
            self.ca.cert.display(),
        );
        for peer in self.sites.iter().filter(|s| s.name != name) {
            let listening = self
                .misroutes
                .iter()
                .find(|(site, to, _)| site == name && *to == peer.name)
                .map_or(peer.name.as_str(), |(_, _, actual)| actual.as_str());
            let overwrites = self
                .overwriters
                .iter()
                .any(|(site, from)| site == name && *from == peer.name);
            config.push_str(&format!(
                "[[replication.peers]]\nregion = \"{}\"\nendpoint = \"{}\"\nidentity = \"{}\"\n\
                 allow_overwrite_local = {overwrites}\n",
                peer.name,
                self.replication_url(listening),
                Self::identity(&peer.name),
            ));
        }
        config
    }

    fn site_mut(&mut self, name: &str) -> &mut Site {
        self.sites
            .iter_mut()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no site {name}"))
    }

    fn take(&mut self, name: &str) -> Server {
        self.site_mut(name)
            .server
            .take()
            .unwrap_or_else(|| panic!("{name} is not running"))
    }
}

impl Drop for Sites {
    /// A failed test's data directories go with it; what the sites said is kept here.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs(60));
        }
    }
}
