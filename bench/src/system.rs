//! The machine and its processes, from `/proc`: the description written with the figures, and
//! CPU and memory samples of the data plane, PostgreSQL, Redis and this tool.

use crate::results::Machine;
use std::time::Instant;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A loopback process's `/metrics` (Prometheus text), as the data plane and the operator serve it.
pub async fn scrape_metrics(http: &reqwest::Client, port: u16) -> anyhow::Result<String> {
    let response = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await?;
    Ok(response.error_for_status()?.text().await?)
}

/// The sum of every sample of the metric `name` (all its label sets) in Prometheus text, or
/// `None` when it has none.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let labels_end = if rest.starts_with('{') { rest.find('}')? + 1 } else { 0 };
            rest[labels_end..].strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
        .fold(None, |sum, v| Some(sum.unwrap_or(0.0) + v))
}

/// `utime + stime` (ticks) from the text of `/proc/<pid>/stat`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name is in parentheses and may contain spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... utime is field 14 of the line, index 11 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` in KiB from the text of `/proc/<pid>/status`.
pub fn parse_rss_kib(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn process_ticks(pid: u32) -> Option<u64> {
    parse_stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    parse_rss_kib(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Pids whose command name (`/proc/<pid>/comm`) is `name`.
fn pids_named(name: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name))
        .collect()
}

fn ticks_named(name: &str) -> u64 {
    pids_named(name).into_iter().filter_map(process_ticks).sum()
}

/// CPU ticks of the PostgreSQL backends serving `database` (their process title names it): a
/// run's own share of PostgreSQL on a machine whose other work uses PostgreSQL too. Backends that
/// end between two samples are not counted; the data plane's pool keeps its connections.
pub fn database_backend_ticks(database: &str) -> u64 {
    pids_named("postgres")
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|title| {
                String::from_utf8_lossy(&title).split(|c: char| c.is_whitespace() || c == '\0').any(|w| w == database)
            })
        })
        .filter_map(process_ticks)
        .sum()
}

/// Busy and total jiffies of the whole machine, from the first line of `/proc/stat`.
pub fn parse_machine_jiffies(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

fn machine_jiffies() -> (u64, u64) {
    std::fs::read_to_string("/proc/stat").ok().and_then(|s| parse_machine_jiffies(&s)).unwrap_or((0, 0))
}

/// CPU counters at one instant, to be subtracted from a later sample.
#[derive(Debug, Clone)]
pub struct Sample {
    at: Instant,
    dataplane: u64,
    postgres: u64,
    redis: u64,
    tool: u64,
    machine_busy: u64,
    machine_total: u64,
}

/// The processes to watch.
#[derive(Debug, Clone)]
pub struct Watch {
    pub dataplane_pids: Vec<u32>,
    ticks_per_sec: f64,
    cores: f64,
}

impl Watch {
    pub fn new(dataplane_pids: Vec<u32>) -> Self {
        Self { dataplane_pids, ticks_per_sec: clock_ticks(), cores: cores() as f64 }
    }

    pub fn sample(&self) -> Sample {
        let (machine_busy, machine_total) = machine_jiffies();
        Sample {
            at: Instant::now(),
            dataplane: self.dataplane_pids.iter().filter_map(|p| process_ticks(*p)).sum(),
            postgres: ticks_named("postgres"),
            redis: ticks_named("redis-server"),
            tool: process_ticks(std::process::id()).unwrap_or(0),
            machine_busy,
            machine_total,
        }
    }

    /// `ticks` of CPU over `secs` seconds as a percentage (100 = one core).
    pub fn ticks_percent(&self, ticks: u64, secs: f64) -> f64 {
        ticks as f64 / self.ticks_per_sec / secs.max(1e-6) * 100.0
    }

    pub fn dataplane_rss_mib(&self) -> f64 {
        self.dataplane_pids.iter().filter_map(|p| rss_kib(*p)).sum::<u64>() as f64 / 1024.0
    }

    /// CPU percentages between two samples: (data plane, postgres, redis, tool, machine).
    pub fn cpu_between(&self, a: &Sample, b: &Sample) -> [f64; 5] {
        let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-6);
        let pct = |x: u64, y: u64| y.saturating_sub(x) as f64 / self.ticks_per_sec / secs * 100.0;
        let machine = if b.machine_total > a.machine_total {
            (b.machine_busy - a.machine_busy) as f64 / (b.machine_total - a.machine_total) as f64 * 100.0 * self.cores
        } else {
            0.0
        };
        [
            pct(a.dataplane, b.dataplane),
            pct(a.postgres, b.postgres),
            pct(a.redis, b.redis),
            pct(a.tool, b.tool),
            machine,
        ]
    }
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The machine's description: CPU model and cores, memory, kernel, load.
pub fn machine(postgres_version: String) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_mib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024);
    let redis_version = command_output("redis-server", &["--version"]);
    Machine {
        cpu_model,
        cores: cores(),
        memory_mib,
        kernel: command_output("uname", &["-sr"]),
        postgres_version,
        redis_version: redis_version.split_whitespace().find_map(|w| w.strip_prefix("v=")).unwrap_or("").to_owned(),
        load_average: std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_are_read_after_a_name_with_spaces() {
        let stat = "1234 (tokio runtime) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 8 0 100 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(300));
    }

    #[test]
    fn a_metric_is_summed_over_its_label_sets_and_no_other_metric() {
        let text = "# TYPE conclave_operator_reconciles_total counter\n\
                    conclave_operator_reconciles_total{kind=\"Organization\"} 17148\n\
                    conclave_operator_reconciles_total{kind=\"Workspace\"} 15282\n\
                    conclave_operator_reconciles_total_other 5\n\
                    conclave_dataplane_send_batches_total 1538\n";
        assert_eq!(metric_sum(text, "conclave_operator_reconciles_total"), Some(32430.0));
        assert_eq!(metric_sum(text, "conclave_dataplane_send_batches_total"), Some(1538.0));
        assert_eq!(metric_sum(text, "conclave_dataplane_send_batch_messages_total"), None);
    }

    #[test]
    fn rss_is_read_from_status() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t   5120 kB\nThreads:\t3\n";
        assert_eq!(parse_rss_kib(status), Some(5120));
    }

    #[test]
    fn machine_busy_time_excludes_idle_and_iowait() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n";
        assert_eq!(parse_machine_jiffies(stat), Some((150, 1000)));
    }
}
