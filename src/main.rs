use clap::Parser;
use keyward::cli::{Cli, Command, bench, kms, secrets, serve};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    keyward::telemetry::init();
    match cli.command {
        Command::Serve(args) => {
            let prepared = match serve::prepare(args) {
                Ok(prepared) => prepared,
                Err(e) => {
                    eprintln!("keyward serve: {e}");
                    return ExitCode::FAILURE;
                }
            };
            for (name, value) in &prepared.env {
                // SAFETY: no other thread exists yet (the runtime starts in `serve::run`), so
                // nothing can read the environment concurrently.
                #[allow(unsafe_code)]
                unsafe {
                    std::env::set_var(name, value);
                }
            }
            match serve::run(prepared) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("keyward serve: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Kms(args) => kms::main(args),
        Command::Secrets(args) => secrets::main(args),
        Command::Bench(args) => bench::main(args),
    }
}
