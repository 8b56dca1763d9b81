//! `zhilego serve` as a separate process, for tests that race or kill servers.
use crate::helpers::Storage;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const ZHILEGO: &str = env!("CARGO_BIN_EXE_zhilego");

pub struct ServeProcess {
    pub child: Child,
    pub address: String,
}

/// Starts `zhilego serve` on `storage` and waits for its `listening on` line.
pub async fn spawn_serve(storage: &Storage, extra: &[(&str, &str)]) -> ServeProcess {
    let mut cmd = Command::new(ZHILEGO);
    cmd.arg("serve")
        .envs(storage.env())
        .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("start zhilego serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let address = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(addr) = line.strip_prefix("listening on ") {
                return addr.trim().to_string();
            }
        }
        panic!("zhilego serve exited before listening");
    })
    .await
    .expect("zhilego serve did not start in time");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    ServeProcess { child, address }
}

/// Runs `zhilego audit verify` on `storage`; returns (exit code, output).
pub async fn audit_verify(storage: &Storage) -> (i32, String) {
    let out = Command::new(ZHILEGO)
        .args(["audit", "verify"])
        .envs(storage.env())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run zhilego audit verify");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Creates a listing through a server at `address`; returns its id.
pub async fn create_listing_at(
    client: &reqwest::Client,
    address: &str,
    host_token: &str,
) -> uuid::Uuid {
    let res = client
        .post(format!("{address}/api/v1/listings"))
        .bearer_auth(host_token)
        .json(&crate::helpers::listing_body())
        .send()
        .await
        .expect("create listing");
    assert_eq!(res.status().as_u16(), 201);
    let body: serde_json::Value = res.json().await.expect("listing JSON");
    body["id"]
        .as_str()
        .expect("listing id")
        .parse()
        .expect("a UUID")
}
