use clap::Parser;

#[tokio::main]
async fn main() {
    api::telemetry::init_tracing();
    let cli = api::cli::Cli::parse();
    match api::cli::run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
