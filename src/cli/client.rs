//! What every client command shares: a runtime, the connection, and errors as
//! `error: <AWS exception name>: <message>` with exit code 1.

use super::failover::{Failover, Targets};
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
    /// Server address (`https://...` with TLS), or several separated by commas: a call moves
    /// to the next when the connection fails (and, for calls safe to repeat, when the server
    /// answers UNAVAILABLE).
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

/// A connection that sends the bearer token, if any, with every call, to the first of the
/// `--endpoint` addresses that answers (see [`super::failover`] for what moves on).
pub type Conn = InterceptedService<Failover, Bearer>;

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

/// The addresses in `--endpoint`: one, or several separated by commas (spaces around them
/// ignored), every one `http://` or every one `https://`. One address is taken as written.
pub fn addresses(list: &str) -> Result<Vec<String>, String> {
    if !list.contains(',') {
        return Ok(vec![list.to_owned()]);
    }
    let addresses: Vec<String> = list.split(',').map(|a| a.trim().to_owned()).collect();
    if addresses.iter().any(String::is_empty) {
        return Err(format!(
            "--endpoint {list:?} has an empty address: separate addresses with single commas"
        ));
    }
    if let Some(odd) = addresses
        .iter()
        .find(|a| !a.starts_with("http://") && !a.starts_with("https://"))
    {
        return Err(format!(
            "--endpoint {list:?}: each of several addresses starts with http:// or https://, not {odd:?}"
        ));
    }
    let https = addresses
        .iter()
        .filter(|a| a.starts_with("https://"))
        .count();
    if https != 0 && https != addresses.len() {
        return Err(format!(
            "--endpoint {list:?} mixes http:// and https:// addresses: use one scheme for all"
        ));
    }
    Ok(addresses)
}

/// Connects to the first address that accepts.
pub async fn connect(to: &Connect) -> Result<Conn, String> {
    let (targets, bearer) = prepare(to)?;
    let connection = targets.connection(0);
    connection.ready().await?;
    Ok(InterceptedService::new(connection, bearer))
}

/// At least `count` connections and one per address, connection `i` trying address `i % n`
/// first (then moving on like any other): `keyward bench` spreads its load over them.
pub async fn spread(to: &Connect, count: usize) -> Result<Vec<Conn>, String> {
    let (targets, bearer) = prepare(to)?;
    let mut connections = Vec::new();
    for i in 0..count.max(targets.len()) {
        let connection = targets.connection(i);
        connection.ready().await?;
        connections.push(InterceptedService::new(connection, bearer.clone()));
    }
    Ok(connections)
}

/// The endpoints with their TLS settings, and the token: everything checked before a
/// connection is tried.
fn prepare(to: &Connect) -> Result<(Targets, Bearer), String> {
    let endpoint = &to.endpoint;
    let mut endpoints = Vec::new();
    for address in addresses(endpoint)? {
        let channel = Channel::from_shared(address.clone())
            .map_err(|e| format!("invalid --endpoint {address:?}: {e}"))?;
        endpoints.push((address, channel));
    }
    // Every address has the same scheme (`addresses`).
    let https = endpoints
        .first()
        .is_some_and(|(address, _)| address.starts_with("https://"));
    match (&to.ca, https) {
        (Some(ca), true) => {
            crate::access::tls::use_ring();
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
            if let (Some(cert), Some(key)) = (&to.cert, &to.key) {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            for (_, channel) in &mut endpoints {
                *channel = channel
                    .clone()
                    .tls_config(tls.clone())
                    .map_err(|e| format!("TLS settings: {e}"))?;
            }
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
    Ok((Targets::new(endpoints), Bearer(token)))
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
pub(super) fn error_chain(err: &dyn std::error::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_is_taken_as_written() {
        assert_eq!(
            addresses("http://127.0.0.1:7443"),
            Ok(vec!["http://127.0.0.1:7443".to_owned()])
        );
        // Refused later, with today's message, by the URI parser.
        assert_eq!(addresses(""), Ok(vec![String::new()]));
    }

    #[test]
    fn several_addresses_are_split_and_trimmed() {
        assert_eq!(
            addresses(" http://a:1 ,http://b:2,  http://c:3"),
            Ok(vec![
                "http://a:1".to_owned(),
                "http://b:2".to_owned(),
                "http://c:3".to_owned()
            ])
        );
        assert_eq!(addresses("https://a:1,https://b:2").map(|a| a.len()), Ok(2));
    }

    #[test]
    fn bad_lists_are_refused_with_the_reason() {
        for (list, reason) in [
            ("http://a:1,,http://b:2", "has an empty address"),
            ("http://a:1,", "has an empty address"),
            (",http://a:1", "has an empty address"),
            ("http://a:1, ,http://b:2", "has an empty address"),
            ("http://a:1,https://b:2", "mixes http:// and https://"),
            ("https://a:1,http://b:2", "mixes http:// and https://"),
            (
                "http://a:1,b:2",
                "starts with http:// or https://, not \"b:2\"",
            ),
        ] {
            let error = addresses(list).unwrap_err();
            assert!(error.contains(reason), "{list}: {error}");
            assert!(error.starts_with("--endpoint "), "{error}");
        }
    }

    #[test]
    fn an_https_list_needs_the_ca_and_a_plain_one_refuses_it() {
        let error = prepare(&Connect::plain("https://a:1,https://b:2"))
            .err()
            .unwrap();
        assert!(error.contains("is https: give --ca"), "{error}");
        let mut to = Connect::plain("http://a:1,http://b:2");
        to.ca = Some("ca.pem".into());
        let error = prepare(&to).err().unwrap();
        assert!(error.starts_with("--ca/--cert are for TLS"), "{error}");
    }
}
