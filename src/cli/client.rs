//! What every client command shares: a runtime, the connection, and errors as
//! `error: <AWS exception name>: <message>` with exit code 1.

use crate::api::status::exception_name;
use std::future::Future;
use std::process::ExitCode;
use tonic::transport::Channel;

/// Options every client command group takes.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// Server address.
    #[arg(
        long,
        env = "KEYWARD_ENDPOINT",
        default_value = "http://127.0.0.1:7443",
        global = true
    )]
    pub endpoint: String,
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

pub async fn connect(endpoint: &str) -> Result<Channel, String> {
    Channel::from_shared(endpoint.to_owned())
        .map_err(|e| format!("invalid --endpoint {endpoint:?}: {e}"))?
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {endpoint}: {e}"))
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
