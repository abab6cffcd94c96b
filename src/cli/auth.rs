//! `keyward auth new-token`: makes a bearer token for a principal and prints the line the
//! server's configuration needs (its hash; the token itself is never stored by the server).

use clap::{Args, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct AuthArgs {
    #[command(subcommand)]
    pub command: AuthCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Generate a random bearer token for PRINCIPAL; prints the token (give it to the client,
    /// e.g. as KEYWARD_TOKEN) and the [[auth.tokens]] entry for the server's configuration.
    NewToken {
        /// The principal name the token stands for (keyward:principal/<name>).
        principal: String,
    },
}

pub fn main(args: AuthArgs) -> ExitCode {
    match args.command {
        AuthCommand::NewToken { principal } => {
            if !crate::config::valid_principal_name(&principal) {
                eprintln!(
                    "error: {principal:?} is not a principal name (printable ASCII, no spaces)"
                );
                return ExitCode::FAILURE;
            }
            let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
            if let Err(e) = getrandom::fill(bytes.as_mut_slice()) {
                eprintln!("error: OS random generator: {e}");
                return ExitCode::FAILURE;
            }
            let token = zeroize::Zeroizing::new(format!(
                "kw_{}",
                crate::crypto::hex::encode(bytes.as_slice())
            ));
            let hash = crate::crypto::hex::encode(&crate::crypto::sha256(token.as_bytes()));
            println!("token: {}", token.as_str());
            println!();
            println!("# server configuration:");
            println!("[[auth.tokens]]");
            println!("principal = \"{principal}\"");
            println!("sha256 = \"{hash}\"");
            ExitCode::SUCCESS
        }
    }
}
