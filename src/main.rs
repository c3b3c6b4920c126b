use std::process::ExitCode;

use tracing_subscriber::EnvFilter;
use voxpool::config::{Cli, Command, Config, LogFormat};

fn main() -> ExitCode {
    // Before any thread starts: candle reads its thread settings from the environment.
    voxpool::config::apply_cpu_threads(voxpool::config::cpu_threads());
    let cli = match Cli::try_parse_args() {
        Ok(cli) => cli,
        Err(e) => return parse_failure(e),
    };
    if let Some(text) = cli.command.text_args() {
        voxpool::text::settings::configure(text.settings());
    }
    match cli.command {
        Command::Worker(args) => voxpool::worker::host::main(&args),
        Command::Openapi => {
            println!("{}", voxpool::api::spec_json());
            ExitCode::SUCCESS
        }
        Command::Serve(args) => serve(&args),
        Command::Keys(args) => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("voxpool: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(voxpool::cmd::keys::run(&args, std::io::stdout())) {
                Ok(()) => ExitCode::SUCCESS,
                Err((code, message)) => {
                    eprintln!("voxpool: {message}");
                    ExitCode::from(code)
                }
            }
        }
        Command::Speak(args) => {
            let registry = voxpool::engine::Registry::builtin();
            let stdin = std::io::stdin().lock();
            match voxpool::cmd::speak::run(&args, &registry, stdin, std::io::stderr()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("voxpool: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Status(args) => {
            client(
                |out| async move { voxpool::cmd::client::status(&args.server, args.json, out).await },
            )
        }
        Command::Load(args) => client(|out| async move {
            voxpool::cmd::client::load_or_unload(&args.server, args.model.as_deref(), true, out)
                .await
        }),
        Command::Unload(args) => client(|out| async move {
            voxpool::cmd::client::load_or_unload(&args.server, args.model.as_deref(), false, out)
                .await
        }),
        Command::Timeout(args) => client(|out| async move {
            voxpool::cmd::client::timeout(&args.server, args.seconds, args.model.as_deref(), out)
                .await
        }),
        Command::Pronounce(args) => client(|out| async move {
            use voxpool::cmd::client;
            use voxpool::config::PronounceAction;
            match &args.action {
                PronounceAction::Add {
                    word,
                    phonemes,
                    language,
                    model,
                    server,
                } => {
                    client::pronounce_add(server, word, phonemes, language, model.as_deref(), out)
                        .await
                }
                PronounceAction::List { language, server } => {
                    client::pronounce_list(server, language.as_deref(), out).await
                }
                PronounceAction::Rm { id, server } => client::pronounce_rm(server, id, out).await,
            }
        }),
        Command::Pull(args) => {
            match voxpool::cmd::pull::run(&args, &args.source(), std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err((code, message)) => {
                    eprintln!("voxpool: {message}");
                    ExitCode::from(code)
                }
            }
        }
        Command::Cleanup(args) => {
            let stdin = std::io::stdin().lock();
            match voxpool::cmd::cleanup::run(&args.models_dir(), args.yes, stdin, std::io::stdout())
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("voxpool: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// A rejected setting reads like the server's other configuration errors (exit 2);
/// clap reports the rest (usage, `--help`, `--version`) itself.
fn parse_failure(err: clap::Error) -> ExitCode {
    match voxpool::config::rejected_setting(&err) {
        Some(setting) => {
            eprintln!("voxpool: {setting}");
            ExitCode::from(2)
        }
        None => err.exit(),
    }
}

/// Run a client subcommand on a small runtime; exit 1 with the message on failure.
fn client<F, Fut>(command: F) -> ExitCode
where
    F: FnOnce(std::io::Stdout) -> Fut,
    Fut: std::future::Future<Output = Result<(), voxpool::cmd::client::ClientError>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("voxpool: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command(std::io::stdout())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("voxpool: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &voxpool::config::ServeArgs) -> ExitCode {
    // The models run in worker processes; this one routes and encodes.
    voxpool::pool::tune_gateway_heap();
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("voxpool: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("voxpool: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let stop = stop_signal();
        let server =
            match voxpool::Server::start(config, voxpool::engine::Registry::builtin()).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("voxpool: {e}");
                    return ExitCode::FAILURE;
                }
            };
        stop.await;
        tracing::info!("shutting down");
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

fn init_tracing(config: &Config) {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{},sqlx=warn,sea_orm=warn", config.log_level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Listen for SIGTERM and SIGINT from now on, so that a signal sent while the
/// server starts is not lost; the future ends at the first one.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, Signal, SignalKind};
        async fn next(signal: Option<Signal>) {
            match signal {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            tokio::select! {
                _ = next(term) => {}
                _ = next(int) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        let ctrl_c = tokio::signal::ctrl_c();
        async move {
            let _ = ctrl_c.await;
        }
    }
}
