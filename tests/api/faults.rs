//! Faults on the way from the store to the read models: NATS stopped and started during a
//! booking storm, and a projection builder killed mid-batch. Either way every projection ends
//! exactly where a rebuild from the store puts it, with each event applied once.
use crate::helpers::*;
use crate::processes::ZHILEGO;
use crate::projections::{assert_same_rows, dump_all, rebuild_all, settle};
use domain::Role;
use serde_json::json;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

/// A NATS server of the test's own (JetStream on, its own port and store directory), so
/// stopping it disturbs no other test.
struct PrivateNats {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl PrivateNats {
    async fn start() -> Option<PrivateNats> {
        let binary = which("nats-server")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut nats = PrivateNats {
            port,
            dir: temp_dir(),
            child: None,
        };
        nats.spawn(&binary).await;
        Some(nats)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self, binary: &std::path::Path) {
        let child = Command::new(binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("private nats-server did not start");
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    async fn restart(&mut self) {
        self.spawn(&which("nats-server").unwrap()).await;
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/bin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `workers` workers booking consecutive stays on their own listings until `stop`, each stay
/// by a guest of its own (one guest holds at most three unpaid); returns how many bookings
/// were created.
async fn storm(app: &TestApp, workers: usize, stop: Instant) -> usize {
    let created = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let listing = app.create_listing(Uuid::now_v7(), json!({})).await;
        let tokens: Vec<String> = (0..700)
            .map(|_| app.token(Role::Guest, Uuid::now_v7()))
            .collect();
        let client = app.client.clone();
        let url = app.url("/api/v1/bookings");
        let created = created.clone();
        tasks.push(tokio::spawn(async move {
            let mut night = 1;
            while Instant::now() < stop && night < 700 {
                let res = client
                    .post(&url)
                    .bearer_auth(&tokens[night as usize])
                    .json(&booking_body(listing, night, night + 1, 1))
                    .send()
                    .await;
                if let Ok(res) = res {
                    if res.status().as_u16() == 201 {
                        created.fetch_add(1, Ordering::Relaxed);
                    }
                }
                night += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    created.load(Ordering::Relaxed)
}

/// Every projection applied each event once and equals a rebuild, row for row.
async fn assert_converged_exactly(app: &TestApp) {
    settle(app).await;
    let events = app.event_count().await as i64;
    for status in app.state.reads.statuses().await.unwrap() {
        assert_eq!(
            status.applied, events,
            "{} applied {} events for {events} in the store",
            status.name, status.applied
        );
    }
    let incremental = dump_all(app).await;
    let folded = rebuild_all(app).await;
    assert!(folded.iter().all(|n| *n as i64 == events));
    assert_same_rows(&incremental, &dump_all(app).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_converge_after_nats_is_stopped_and_started_during_a_storm() {
    let test = "projections_converge_after_nats_restart";
    if nats_url(test).is_none() {
        return;
    }
    let Some(mut nats) = PrivateNats::start().await else {
        panic!("nats-server is not installed");
    };
    let Some(storage) = Storage::new(Backend::Postgres, test).await else {
        return;
    };
    let app = start(storage.with_nats(nats.url()), &[]).await;
    let stop = Instant::now() + Duration::from_secs(6);
    let storm = storm(&app, 12, stop);
    let faults = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        nats.kill().await;
        tokio::time::sleep(Duration::from_millis(2000)).await;
        nats.restart().await;
    };
    let (created, ()) = tokio::join!(storm, faults);
    assert!(created > 100, "only {created} bookings during the storm");
    assert_converged_exactly(&app).await;

    // The relay caught up too: the stream holds every event exactly once.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let (_, stream, _) = app.storage.nats.clone().unwrap();
    let events = app.event_count().await as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut s = js.get_stream(&stream).await.unwrap();
        let messages = s.info().await.unwrap().state.messages;
        if messages == events {
            break;
        }
        assert!(messages < events, "{messages} messages for {events} events");
        assert!(
            Instant::now() < deadline,
            "stream has {messages} of {events}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And the builders did read JetStream (the store is only their fallback).
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream(&stream)
        .await
        .unwrap()
        .get_consumer(&projections::feed::durable_name("bookings"))
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert!(info.delivered.consumer_sequence > 0, "{info:?}");
    app.finish().await;
    nats.kill().await;
    let _ = std::fs::remove_dir_all(&nats.dir);
}

/// Starts `zhilego project` on `storage` and waits until its builders run.
async fn spawn_project(storage: &Storage) -> Child {
    let mut child = Command::new(ZHILEGO)
        .arg("project")
        .envs(storage.env())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start zhilego project");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("projection builders") {
                return;
            }
        }
        panic!("zhilego project exited before starting");
    })
    .await
    .expect("zhilego project did not start in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_builder_killed_mid_batch_applies_nothing_twice() {
    let test = "killed_projection_builder";
    let Some(nats) = nats_url(test) else { return };
    let Some(storage) = Storage::new(Backend::Postgres, test).await else {
        return;
    };
    // The API and relay here; the builders only in `zhilego project` processes.
    let app = start(storage.with_nats(nats), &[("ZHILEGO_PROJECTIONS", "off")]).await;
    let mut builder = spawn_project(&app.storage).await;
    let stop = Instant::now() + Duration::from_secs(7);
    let storm = storm(&app, 12, stop);
    let faults = async {
        let mut kills = 0;
        for pause in [900u64, 1300, 700] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            builder.kill().await.expect("kill -9 the builder");
            kills += 1;
            builder = spawn_project(&app.storage).await;
        }
        kills
    };
    let (created, kills) = tokio::join!(storm, faults);
    assert!(created > 100, "only {created} bookings during the storm");
    assert_eq!(kills, 3);
    // Only the restarted builder applies; converge, then compare with a rebuild.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let statuses = app.state.reads.statuses().await.unwrap();
        if statuses.iter().all(|s| s.behind_events == 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "builder did not catch up: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = builder.kill().await;
    assert_converged_exactly(&app).await;
    app.finish().await;
}
