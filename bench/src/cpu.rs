//! Where the CPU goes during a timed phase: `/proc` samples of every process, summed by
//! command name (`zhilego`, `postgres`, `wrk`, `nats-server`, `zhilego-bench`), and the
//! machine's busy share. Processes that exit during the phase are not counted.
use crate::server;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// CPU counters of every process at one instant.
pub struct Sample {
    at: Instant,
    /// pid → (command name, CPU time so far).
    processes: HashMap<u32, (String, Duration)>,
    machine: (u64, u64),
}

/// CPU use over a phase: % of one core per command name, and the machine's busy share.
#[derive(Debug, Clone, Default)]
pub struct Split {
    /// (command name, % of one core), largest first.
    pub by_command: Vec<(String, f64)>,
    /// All cores together, as % of the whole machine.
    pub machine_busy: f64,
    pub cores: usize,
}

impl Sample {
    pub fn take() -> Sample {
        let mut processes = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                let path = format!("/proc/{pid}/stat");
                let (Ok(stat), Ok(cpu)) = (
                    std::fs::read_to_string(&path),
                    server::process_cpu_time(&path),
                ) else {
                    continue;
                };
                let name = stat
                    .split_once('(')
                    .and_then(|(_, r)| r.rsplit_once(')'))
                    .map(|(n, _)| n.to_string())
                    .unwrap_or_default();
                processes.insert(pid, (name, cpu));
            }
        }
        Sample {
            at: Instant::now(),
            processes,
            machine: server::machine_cpu_ticks().unwrap_or((0, 0)),
        }
    }

    /// The CPU used since `start`, by command name.
    pub fn since(&self, start: &Sample) -> Split {
        let wall = self.at.duration_since(start.at).as_secs_f64().max(1e-9);
        let mut by: HashMap<String, f64> = HashMap::new();
        for (pid, (name, cpu)) in &self.processes {
            let before = start
                .processes
                .get(pid)
                .filter(|(n, _)| n == name)
                .map_or(Duration::ZERO, |(_, c)| *c);
            let used = cpu.saturating_sub(before).as_secs_f64();
            if used > 0.0 {
                *by.entry(name.clone()).or_default() += used / wall * 100.0;
            }
        }
        let mut by_command: Vec<(String, f64)> =
            by.into_iter().filter(|(_, p)| *p >= 1.0).collect();
        by_command.sort_by(|a, b| b.1.total_cmp(&a.1));
        let busy = self.machine.0.saturating_sub(start.machine.0) as f64;
        let total = self.machine.1.saturating_sub(start.machine.1).max(1) as f64;
        Split {
            by_command,
            machine_busy: busy / total * 100.0,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        }
    }
}

impl Split {
    /// `zhilego 95%, postgres 80%, wrk 20% of one core; machine 98% busy (2 cores)`
    pub fn line(&self) -> String {
        let mut s = String::new();
        for (i, (name, pct)) in self.by_command.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            let _ = write!(s, "{name} {pct:.0}%");
        }
        if s.is_empty() {
            s.push_str("(no process used 1% or more)");
        }
        let _ = write!(
            s,
            " of one core; machine {:.0}% busy ({} cores)",
            self.machine_busy, self.cores
        );
        s
    }
}

/// CPU use while a child process runs: sampled every 200 ms, so that the last sample still
/// counts the child (a process that has exited is no longer in `/proc`).
pub async fn while_running(
    child: &mut tokio::process::Child,
) -> std::io::Result<(std::process::ExitStatus, Split)> {
    let first = Sample::take();
    let mut last = Sample::take();
    loop {
        tokio::select! {
            status = child.wait() => return Ok((status?, last.since(&first))),
            _ = tokio::time::sleep(Duration::from_millis(200)) => last = Sample::take(),
        }
    }
}
