//! `phalanx serve` and `phalanx token new` (CLI side; the server is `phalanx::server`, the
//! tokens `phalanx::access`).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use phalanx::access::{self, Role, Scope};
use phalanx::config::ProjectConfig;
use phalanx::exit;
use phalanx::server::{DEFAULT_LISTEN, Server, ServerSettings};

use phalanx::stop::Signal;

use super::{EngineArg, Failure, StoreArg, image_jobs, store_settings};

#[derive(Args)]
pub struct ServeArgs {
    /// The address to listen on; port 0 takes a free port. Anything but loopback exposes
    /// the API to the network: put it behind a TLS reverse proxy (README).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Engine slots shared by every run (a suite takes `weight` of them) [default: from
    /// phalanx.toml, else the number of CPUs].
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    jobs: Option<u32>,
    /// Image builds at once, apart from the slots [default: from phalanx.toml, else 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    image_jobs: Option<u32>,
    #[command(flatten)]
    store: StoreArg,
    // The backend of every run the server starts.
    #[command(flatten)]
    engine: EngineArg,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a random API token: prints it once, and the [[tokens]] entry to add to
    /// phalanx.toml, which holds only the token's SHA-256.
    New(TokenArgs),
}

#[derive(Args)]
pub struct TokenArgs {
    /// viewer reads; runner also triggers and cancels runs; admin may do everything.
    #[arg(long, value_enum)]
    role: Role,
    /// A project the token is for (repeatable), or `*` for every project.
    #[arg(long = "project", value_name = "NAME", required = true, num_args = 1..)]
    projects: Vec<String>,
    /// The token's name in phalanx.toml and the server's log [default: ROLE-<hash start>].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

/// `phalanx serve`: answers until SIGINT or SIGTERM, then stops the runs under way (each
/// recorded as interrupted) and exits 0.
pub async fn serve(mut project: ProjectConfig, args: ServeArgs) -> Result<ExitCode, Failure> {
    project.engine = args.engine.resolve(&project);
    if project.tokens.is_empty() {
        eprintln!(
            "warning: phalanx.toml lists no [[tokens]]: every API request will be refused (make one with `phalanx token new`)"
        );
    }
    let jobs = args
        .jobs
        .map(|n| n as usize)
        .or(project.jobs)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let settings = ServerSettings {
        listen: args.listen,
        store: store_settings(&project, &args.store),
        jobs,
        image_jobs: image_jobs(args.image_jobs, &project),
        config: project,
    };
    let server = Server::bind(settings)
        .await
        .map_err(|e| Failure::Infra(e.to_string()))?;
    let addr = server
        .local_addr()
        .map_err(|e| Failure::Infra(format!("cannot read the address listened on: {e}")))?;
    // Tests and scripts read the address from this line (port 0 picks one).
    println!("phalanx: listening on http://{addr}");
    server
        .run(shutdown_signal())
        .await
        .map_err(|e| Failure::Infra(e.to_string()))?;
    eprintln!("phalanx: stopped");
    Ok(ExitCode::from(exit::PASSED))
}

/// The first SIGINT or SIGTERM.
async fn shutdown_signal() -> Signal {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers the server can only be killed; it still serves.
        return std::future::pending().await;
    };
    let signal = tokio::select! {
        _ = int.recv() => Signal::Interrupt,
        _ = term.recv() => Signal::Terminate,
    };
    eprintln!("phalanx: {signal}: stopping the runs under way, then the server");
    signal
}

pub fn token(project: &ProjectConfig, command: TokenCommand) -> Result<ExitCode, Failure> {
    let TokenCommand::New(args) = command;
    let scope = scope_of(project, &args.projects)?;
    let made = access::new_token()
        .map_err(|e| Failure::Infra(format!("cannot read random bytes for a token: {e}")))?;
    let name = match args.name {
        Some(name) => name,
        None => format!("{}-{}", args.role, &access::to_hex(&made.sha256)[..8]),
    };
    if let Err(e) = phalanx::config::check_name(&name) {
        return Err(Failure::Usage(format!("--name: {e}")));
    }
    if project.tokens.iter().any(|t| t.name == name) {
        return Err(Failure::Usage(format!(
            "phalanx.toml already has a token named `{name}`: choose another --name"
        )));
    }
    println!("token (shown only now; keep it secret, send it as `Authorization: Bearer <token>`):");
    println!("{}", made.token);
    println!();
    println!("add this to phalanx.toml (it holds only the token's SHA-256):");
    println!();
    print!(
        "{}",
        access::toml_entry(&name, args.role, &scope, &made.sha256)
    );
    Ok(ExitCode::from(exit::PASSED))
}

/// The projects a new token is for: `*` alone, or names phalanx.toml declares.
fn scope_of(project: &ProjectConfig, names: &[String]) -> Result<Scope, Failure> {
    if names.iter().any(|n| n == "*") {
        return match names.len() {
            1 => Ok(Scope::All),
            _ => Err(Failure::Usage(
                "--project '*' (every project) stands alone, without names beside it".into(),
            )),
        };
    }
    let known: Vec<&String> = project.projects.keys().collect();
    for name in names {
        if !project.projects.contains_key(name) {
            let listed = match known.is_empty() {
                true => "none".to_string(),
                false => known
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            return Err(Failure::Usage(format!(
                "--project {name}: phalanx.toml has no [projects.{name}] (its projects: {listed})"
            )));
        }
    }
    Ok(Scope::Only(names.iter().cloned().collect()))
}
