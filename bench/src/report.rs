//! The report every mode prints and writes: a header, one section per backend (or phase) of
//! labelled rows, and the figures they share (percentiles, latencies, rates, verdicts).
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// A whole report, as printed and as written to `bench/results/<file>`.
pub struct Report {
    text: String,
}

impl Report {
    /// `ZhilyeGO <title>, <date> UTC, <n> cores`, the first line of every report.
    pub fn new(title: &str) -> Report {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        Report {
            text: format!(
                "ZhilyeGO {title}, {} UTC, {cores} cores\n",
                chrono::Utc::now().format("%Y-%m-%d %H:%M")
            ),
        }
    }

    /// One more line as it is.
    pub fn line(&mut self, text: impl std::fmt::Display) {
        let _ = writeln!(self.text, "{text}");
    }

    /// The `service setting: K=V` lines for the settings a run added.
    pub fn settings(&mut self, settings: &[(String, String)]) {
        for (k, v) in settings {
            self.line(format!("service setting: {k}={v}"));
        }
    }

    /// `goal: <what>: <figure> | goal <goal> | anchor <anchor> | met` (or `NOT met`): one
    /// line per goal, the lines `bench/run.sh` gathers into its summary. The anchor is the
    /// reference figure measured in the same run.
    pub fn goal(
        &mut self,
        what: &str,
        figure: impl std::fmt::Display,
        goal: impl std::fmt::Display,
        anchor: impl std::fmt::Display,
        met: bool,
    ) {
        self.line(format!(
            "goal: {}",
            goal_line(what, figure, goal, anchor, met)
        ));
    }

    /// A section after an empty line.
    pub fn section(&mut self, section: &Section) {
        self.text.push('\n');
        self.text.push_str(&section.text);
    }

    /// Prints the report and writes it to `out`, else `bench/results/<file>`.
    pub fn publish(&self, file: &str, out: Option<&Path>) -> Result<()> {
        print!("{}", self.text);
        let out = out.map(Path::to_path_buf).unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("results")
                .join(file)
        });
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&out, &self.text).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("report written to {}", out.display());
        Ok(())
    }
}

/// `writeln!(report, …)` for the modes that lay their rows out themselves.
impl std::fmt::Write for Report {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.text.push_str(s);
        Ok(())
    }
}

/// A block of rows `  <label padded to width> <text>` under an optional `[name] …` title.
pub struct Section {
    title: String,
    text: String,
    width: usize,
}

impl Section {
    /// `[title] what`
    pub fn new(title: &str, what: impl std::fmt::Display, width: usize) -> Section {
        Section {
            title: title.to_string(),
            text: format!("[{title}] {what}\n"),
            width,
        }
    }

    /// A backend that was not measured: `[name]` and why.
    pub fn skipped(title: &str, why: &str) -> Section {
        Section {
            title: title.to_string(),
            text: format!("[{title}]\n  skipped: {why}\n"),
            width: 0,
        }
    }

    /// A backend whose run failed: `[name]` and the error.
    pub fn failed(title: &str, error: &anyhow::Error) -> Section {
        Section {
            title: title.to_string(),
            text: format!("[{title}]\n  FAILED: {error:#}\n"),
            width: 0,
        }
    }

    pub fn row(&mut self, label: &str, text: impl std::fmt::Display) {
        let _ = writeln!(self.text, "  {label:<w$} {text}", w = self.width);
    }

    /// A goal row in the report's one-line form (see [`Report::goal`]), named by the
    /// section's title: `  goal:  [sqlite] bookings/s: 877 | goal >= 1,000 | anchor … | NOT met`.
    pub fn goal(
        &mut self,
        what: &str,
        figure: impl std::fmt::Display,
        goal: impl std::fmt::Display,
        anchor: impl std::fmt::Display,
        met: bool,
    ) {
        let what = format!("[{}] {what}", self.title);
        self.row("goal:", goal_line(&what, figure, goal, anchor, met));
    }

    #[cfg(test)]
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// `<what>: <figure> | goal <goal> | anchor <anchor> | met` (or `NOT met`), the text of a
/// goal line in a report and in a section.
fn goal_line(
    what: &str,
    figure: impl std::fmt::Display,
    goal: impl std::fmt::Display,
    anchor: impl std::fmt::Display,
    met: bool,
) -> String {
    format!(
        "{what}: {figure} | goal {goal} | anchor {anchor} | {}",
        verdict(met)
    )
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// Nearest-rank percentile of sorted values.
pub fn pct(sorted: &[u64], p: f64) -> u64 {
    let n = sorted.len();
    if n == 0 {
        return 0;
    }
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// Microseconds as milliseconds.
pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// `p50 … ms, p95 … ms, p99 … ms, max … ms` of sorted microseconds.
pub fn latency_line(sorted_us: &[u64]) -> String {
    format!(
        "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(pct(sorted_us, 50.0)),
        ms(pct(sorted_us, 95.0)),
        ms(pct(sorted_us, 99.0)),
        ms(pct(sorted_us, 100.0))
    )
}

pub fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// KiB (as `/proc` counts) in MB (10^6 bytes).
pub fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// An error and its sources: `error sending request …: connection closed before message completed`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            let _ = write!(s, ": {text}");
        }
        source = cause.source();
    }
    s
}

/// At most 300 characters of `s`, for error messages.
pub fn clip(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(pct(&v, 50.0), 50);
        assert_eq!(pct(&v, 99.0), 99);
        assert_eq!(pct(&v, 100.0), 100);
        assert_eq!(pct(&[], 50.0), 0);
    }

    #[test]
    fn a_goal_is_one_line_with_its_anchor() {
        let mut r = Report {
            text: String::new(),
        };
        r.goal(
            "verify",
            "250,000 events/s",
            ">= 200,000",
            "scan 540,000 rows/s",
            true,
        );
        r.goal("lag p99", "120 ms", "< 100 ms", "answers p99 9 ms", false);
        assert_eq!(
            r.text,
            "goal: verify: 250,000 events/s | goal >= 200,000 | anchor scan 540,000 rows/s | met\n\
             goal: lag p99: 120 ms | goal < 100 ms | anchor answers p99 9 ms | NOT met\n"
        );
    }

    #[test]
    fn a_section_goal_names_its_section() {
        let mut s = Section::new("postgres", "store", 6);
        s.goal("bookings/s", "900", ">= 3,000", "pgbench 12,000 tps", false);
        assert_eq!(
            s.text(),
            "[postgres] store\n  goal:  [postgres] bookings/s: 900 | goal >= 3,000 | anchor pgbench 12,000 tps | NOT met\n"
        );
    }

    #[test]
    fn rows_are_padded_to_the_section_width() {
        let mut s = Section::new("sqlite", "store", 11);
        s.row("seed:", "5 listings");
        s.row("", "more");
        assert_eq!(
            s.text(),
            "[sqlite] store\n  seed:       5 listings\n              more\n"
        );
    }
}
