use clap::Parser;
use keyward::cli::{
    Cli, Command, audit, auth, backup, bench, cluster, escrow, kms, secrets, serve, store,
};
use std::process::ExitCode;

/// malloc/free were 13 % of the server's CPU under load with glibc's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
            serve::set_env(&prepared.env);
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
        Command::Auth(args) => auth::main(args),
        Command::Audit(args) => audit::main(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Store(args) => store::run(args),
        Command::Backup(args) => backup::main(args),
        Command::Restore(args) => backup::restore_main(args),
        Command::Escrow(args) => escrow::main(args),
        Command::Recover(args) => escrow::recover_main(args),
        Command::Bench(args) if args.ceiling => {
            // The ceiling opens the server's token, so it needs the server's configuration and,
            // for the development default, its SoftHSM environment.
            let serve_args = serve::ServeArgs {
                config: args.config.clone(),
                listen: None,
                data_dir: args.data_dir.clone(),
                metrics_listen: None,
                aws_listen: Some(keyward::config::AwsListen::Off),
                node_id: None,
            };
            match serve::prepare(serve_args) {
                Ok(prepared) => {
                    serve::set_env(&prepared.env);
                    bench::main(args, Some(prepared.config))
                }
                Err(e) => {
                    eprintln!("keyward bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench(args) => bench::main(args, None),
    }
}
