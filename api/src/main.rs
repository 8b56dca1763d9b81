use clap::Parser;

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
