//! A throwaway PostgreSQL cluster per test: its own data directory, a free port on
//! 127.0.0.1, scram-sha-256 password auth over TCP, removed on drop. Never touches the
//! distribution's default cluster on 5432.
//!
//! `initdb` and `postgres` refuse to run as root, and CI runs as root: then the server
//! tools run as the `postgres` system user via `runuser`, and the fixture directory is
//! handed to that user. `psql` and `pg_isready` only talk TCP, so they run as we are.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running cluster. Stopped (immediate mode) and deleted on drop.
pub struct Postgres {
    pub port: u16,
    pub superuser: String,
    pub superuser_password: String,
    /// The fixture directory: `data/` (PGDATA), `sock/` (unix socket), `server.log`.
    pub dir: PathBuf,
    bin: PathBuf,
    as_postgres_user: bool,
    // Last field so it is removed after `drop` has stopped the server.
    _tmp: tempfile::TempDir,
}

impl Postgres {
    /// initdb (superuser "postgres" with a fresh random password) and start on a free
    /// port; returns once it accepts connections. About 1.5–3 s, mostly initdb.
    pub fn start() -> Postgres {
        // Not a test's own temp dir: those are 0700 root-owned when CI runs as root, and
        // the postgres user could not enter them.
        let tmp = tempfile::Builder::new()
            .prefix("keyward-pg-")
            .tempdir_in(std::env::temp_dir())
            .expect("create PostgreSQL fixture dir");
        let mut pg = Postgres {
            port: 0,
            superuser: "postgres".into(),
            superuser_password: random_hex(16),
            dir: tmp.path().to_path_buf(),
            bin: bin_dir(),
            as_postgres_user: fs::metadata("/proc/self").expect("stat /proc/self").uid() == 0,
            _tmp: tmp,
        };
        pg.init();
        // The port is free only until the probe socket is dropped; if something else
        // takes it before the postmaster binds, try another rather than fail the test.
        for attempt in 1..=3 {
            pg.port = free_port();
            match pg.try_start() {
                Ok(()) => return pg,
                Err(e) if attempt < 3 => eprintln!("retrying on another port: {e}"),
                Err(e) => panic!("PostgreSQL did not start: {e}\n{}", pg.log_tail()),
            }
        }
        unreachable!()
    }

    /// Fast shutdown; returns once the postmaster has exited.
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-w", "-t", "30", "-m", "fast"])
            .unwrap_or_else(|e| panic!("pg_ctl stop failed: {e}\n{}", self.log_tail()));
    }

    /// Starts the same cluster again on the same port.
    pub fn start_again(&self) {
        self.try_start()
            .unwrap_or_else(|e| panic!("PostgreSQL did not restart: {e}\n{}", self.log_tail()));
    }

    /// `psql` as `user` over TCP to the database "postgres": trimmed unaligned
    /// tuples-only output, or stderr. Several statements in one `sql` run as one
    /// transaction, so e.g. CREATE DATABASE needs its own call.
    pub fn psql(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        self.psql_db("postgres", user, password, sql)
    }

    pub fn psql_db(&self, db: &str, user: &str, pw: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            // -X: no ~/.psqlrc; -w: never prompt (an empty password must fail, not hang).
            .args(["-X", "-w", "-At", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", user, "-d", db, "-c", sql])
            .env("PGPASSWORD", pw)
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    pub fn superuser_sql(&self, sql: &str) -> String {
        self.psql(&self.superuser, &self.superuser_password, sql)
            .unwrap_or_else(|e| panic!("superuser SQL failed: {sql}\n{e}\n{}", self.log_tail()))
    }

    pub fn can_login(&self, user: &str, password: &str) -> bool {
        self.psql(user, password, "SELECT 1")
            .is_ok_and(|out| out == "1")
    }

    /// A login role with `password` and a database of the same name that it owns.
    pub fn create_user(&self, user: &str, password: &str) {
        let (role, secret) = (quote_ident(user), quote_literal(password));
        self.superuser_sql(&format!("CREATE ROLE {role} LOGIN PASSWORD {secret}"));
        self.superuser_sql(&format!("CREATE DATABASE {role} OWNER {role}"));
    }

    /// The last lines the server logged, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "--- server.log (tail) ---\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn init(&self) {
        let sock = self.dir.join("sock");
        fs::create_dir(&sock).expect("create socket dir");
        let pwfile = self.dir.join("pwfile");
        fs::write(&pwfile, &self.superuser_password).expect("write pwfile");
        if self.as_postgres_user {
            let mut chown = Command::new("chown");
            chown.args(["-R", "postgres:postgres"]).arg(&self.dir);
            run(chown).unwrap_or_else(|e| panic!("chown to postgres failed: {e}"));
        }
        // Locale C: whatever locales the machine has, initdb neither warns nor fails.
        let mut initdb = self.server_tool("initdb");
        initdb
            .args(["-U", &self.superuser, "-E", "UTF8", "--locale=C"])
            // The cluster lives for one test: no need to wait for its files to hit disk.
            .arg("--no-sync")
            .args(["--auth-host=scram-sha-256", "--auth-local=trust"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("-D")
            .arg(self.data());
        run(initdb).unwrap_or_else(|e| panic!("initdb failed: {e}"));
        fs::remove_file(&pwfile).expect("remove pwfile");
        // In the config file rather than `pg_ctl -o`, to spare the path a round of shell
        // quoting; the port goes on the command line since a retry may change it. Without
        // our own socket dir a non-root run fails on /var/run/postgresql.
        let sock = quote_literal(&sock.display().to_string());
        let conf = [
            "\n# keyward test fixture".to_string(),
            "listen_addresses = '127.0.0.1'".into(),
            format!("unix_socket_directories = {sock}"),
            "password_encryption = 'scram-sha-256'".into(),
            // Durability buys nothing in a cluster deleted after the test.
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off".into(),
            "shared_buffers = 32MB\n".into(),
        ]
        .join("\n");
        fs::OpenOptions::new()
            .append(true)
            .open(self.data().join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .expect("append to postgresql.conf");
    }

    fn try_start(&self) -> Result<(), String> {
        let log = self.log().display().to_string();
        let port = format!("-p {}", self.port);
        self.pg_ctl(&["start", "-w", "-t", "30", "-l", &log, "-o", &port])
            .map_err(|e| format!("pg_ctl start failed: {e}"))?;
        // pg_ctl -w watches the pid file; confirm a TCP client really gets through.
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not accepting connections on port {} after {READY_TIMEOUT:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<String, String> {
        let mut pg_ctl = self.server_tool("pg_ctl");
        pg_ctl.args(args).arg("-D").arg(self.data());
        run(pg_ctl)
    }

    /// A server-side binary, as the postgres user when we are root.
    fn server_tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        let mut command = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        // The caller's cwd may be closed to the postgres user.
        command.current_dir(&self.dir).stdin(Stdio::null());
        command
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-w", "-t", "10", "-m", "immediate"]);
    }
}

/// The newest /usr/lib/postgresql/<version>/bin (Debian keeps it off PATH).
fn bin_dir() -> PathBuf {
    let versions = fs::read_dir("/usr/lib/postgresql")
        .expect("no /usr/lib/postgresql: run softhsm/install-deps");
    versions
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
        .map(|(version, dir)| (version, dir.join("bin")))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
        .expect("no /usr/lib/postgresql/*/bin/initdb: run softhsm/install-deps")
}

fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    probe.local_addr().expect("probe address").port()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let mut urandom = fs::File::open("/dev/urandom").expect("open /dev/urandom");
    urandom.read_exact(&mut buf).expect("read /dev/urandom");
    keyward::crypto::hex::encode(&buf)
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Stdout on success; otherwise the exit status and everything the command printed.
fn run(mut command: Command) -> Result<String, String> {
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    Err(format!(
        "{}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    ))
}
