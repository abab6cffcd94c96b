//! What every client command shares: a runtime, the connection, and errors as
//! `error: <AWS exception name>: <message>` with exit code 1.

use crate::api::status::exception_name;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// How to reach and authenticate to the server.
#[derive(Debug, Clone, clap::Args)]
pub struct Connect {
    /// Server address (`https://...` with TLS).
    #[arg(
        long,
        env = "KEYWARD_ENDPOINT",
        default_value = "http://127.0.0.1:7443",
        global = true
    )]
    pub endpoint: String,
    /// CA certificate (PEM) that issued the server's certificate; needed for https.
    #[arg(long, env = "KEYWARD_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for servers that require mutual TLS.
    #[arg(long, env = "KEYWARD_CERT", global = true, requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "KEYWARD_KEY", global = true, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Bearer token (prefer the environment variable: command lines are visible to others).
    #[arg(long, env = "KEYWARD_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
}

impl Connect {
    /// Plaintext, no credentials: the development default's server.
    pub fn plain(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            ca: None,
            cert: None,
            key: None,
            token: None,
        }
    }
}

/// Options every client command group takes.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub connect: Connect,
    /// Output format.
    #[arg(long, value_enum, default_value = "json", global = true)]
    pub output: super::output::Format,
}

pub fn run_client<F, Fut>(command: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A connection that sends the bearer token, if any, with every call.
pub type Conn = InterceptedService<Channel, Bearer>;

#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub async fn connect(to: &Connect) -> Result<Conn, String> {
    let endpoint = &to.endpoint;
    let mut channel = Channel::from_shared(endpoint.clone())
        .map_err(|e| format!("invalid --endpoint {endpoint:?}: {e}"))?;
    let https = endpoint.starts_with("https://");
    match (&to.ca, https) {
        (Some(ca), true) => {
            crate::access::tls::use_ring();
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
            if let (Some(cert), Some(key)) = (&to.cert, &to.key) {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            channel = channel
                .tls_config(tls)
                .map_err(|e| format!("TLS settings: {e}"))?;
        }
        (None, true) => {
            return Err(format!(
                "{endpoint} is https: give --ca (or KEYWARD_CA) with the CA certificate that issued the server's certificate"
            ));
        }
        (_, false) if to.ca.is_some() || to.cert.is_some() => {
            return Err(format!(
                "--ca/--cert are for TLS: use an https:// endpoint, not {endpoint}"
            ));
        }
        _ => {}
    }
    let token = match &to.token {
        Some(token) => Some(
            format!("Bearer {token}")
                .parse::<MetadataValue<Ascii>>()
                .map_err(|_| "the token has characters a header cannot carry".to_owned())?,
        ),
        None => None,
    };
    let channel = channel
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {endpoint}: {}", error_chain(&e)))?;
    Ok(InterceptedService::new(channel, Bearer(token)))
}

/// A JSON document argument: inline, or `file://PATH` as the AWS CLI writes it.
pub fn document(arg: &str) -> Result<String, String> {
    match arg.strip_prefix("file://") {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}")),
        None => Ok(arg.to_owned()),
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// An error with its causes: a TLS refusal is several layers down.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Formats a failed call as `ExceptionName: message`.
pub fn describe(status: tonic::Status) -> String {
    format!("{}: {}", exception_name(&status), status.message())
}

/// Prints a successful reply in the chosen format, or turns the failure into the error line.
pub fn print_reply<T: serde::Serialize>(
    reply: Result<tonic::Response<T>, tonic::Status>,
    format: super::output::Format,
) -> Result<(), String> {
    let response = reply.map_err(describe)?.into_inner();
    super::output::print(format, &response).map_err(|e| e.to_string())
}
