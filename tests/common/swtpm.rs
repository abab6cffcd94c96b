//! swtpm per test: `swtpm socket --tpm2` on free loopback ports (data P, control P+1, as the
//! swtpm TCTI expects), its state in a directory of the test's choosing so a restart keeps the
//! same TPM, ready when both ports accept, SIGKILLed on drop.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Swtpm {
    child: Option<Child>,
    pub port: u16,
    pub state_dir: PathBuf,
}

/// Two consecutive free ports (best effort: `start` retries if one is taken meanwhile).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free ports");
}

fn accepts(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
}

impl Swtpm {
    /// A TPM whose state lives in `state_dir` (a fresh directory is a fresh TPM).
    pub fn start(state_dir: &Path) -> Swtpm {
        std::fs::create_dir_all(state_dir).expect("state dir");
        let mut last = String::new();
        for _ in 0..5 {
            match Self::spawn(state_dir, free_port_pair()) {
                Ok(swtpm) => return swtpm,
                Err(e) => last = e,
            }
        }
        panic!("swtpm did not start: {last}");
    }

    fn spawn(state_dir: &Path, port: u16) -> Result<Swtpm, String> {
        let mut child = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={}", state_dir.display()))
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
            .arg("--flags")
            .arg("not-need-init,startup-clear")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run swtpm: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("swtpm exited: {status}"));
            }
            // Connecting and closing is harmless: swtpm serves one connection at a time.
            if accepts(port + 1) && accepts(port) {
                return Ok(Swtpm {
                    child: Some(child),
                    port,
                    state_dir: state_dir.to_owned(),
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("swtpm not ready after 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// SIGKILL: the TPM goes away mid-run (its permanent state is already on disk).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The same TPM back on the same ports.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Self::spawn(&self.state_dir, self.port) {
                Ok(mut again) => {
                    self.child = again.child.take();
                    return;
                }
                Err(e) => assert!(Instant::now() < deadline, "swtpm did not come back: {e}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Changes PCR 17 through the control channel (a DRTM-style measurement: _TPM_Hash_Start,
    /// _Data, _End), which works while a client holds the TPM's only command connection.
    pub fn measure_into_pcr17(&self, data: &str) {
        let out = Command::new("swtpm_ioctl")
            .arg("--tcp")
            .arg(format!("127.0.0.1:{}", self.port + 1))
            .arg("-h")
            .arg(data)
            .output()
            .expect("run swtpm_ioctl");
        assert!(
            out.status.success(),
            "swtpm_ioctl -h failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.kill();
    }
}
