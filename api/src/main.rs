use clap::Parser;

/// mimalloc instead of glibc's malloc: a request allocates and frees many small buffers
/// (headers, log fields, JSON), and glibc spent 11 % of the service's CPU on them (answering `/healthz`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    // Telemetry as configured; a command whose settings are invalid reports that itself.
    let telemetry = api::Settings::from_env()
        .map(|s| s.telemetry)
        .unwrap_or_default();
    let telemetry = api::telemetry::init(&telemetry);
    let cli = api::cli::Cli::parse();
    let code = match api::cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    };
    telemetry.shutdown();
    std::process::exit(code);
}
