//! Which process a database belongs to, so that a sweep drops only what is provably abandoned.
//!
//! Every database the workspace's tools create (a test's [`TestDb`](crate::TestDb), the demo's,
//! a benchmark's) is marked right after `CREATE DATABASE` with a comment naming the process that
//! created it:
//!
//! ```text
//! conclave-owner host=<hostname> boot=<kernel boot id> pid=<pid> start=<start time, clock ticks since boot>
//! ```
//!
//! [`sweep_abandoned`] drops a marked database only when that process is gone: the same host
//! has rebooted since, or no process has the pid, or the process with the pid started at another
//! time (the pid was reused). A database without the mark (created by something else, or by an
//! older checkout still running beside this one) or marked by another host is never touched.
//!
//! Liveness is read from `/proc`, so it is Linux's; elsewhere [`Process::current`] fails and
//! nothing is ever judged abandoned.

use anyhow::{Context, Result};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, PgConnection};

const MARK: &str = "conclave-owner";

/// A process, identified across pid reuse and reboots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub host: String,
    pub boot: String,
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks since boot.
    pub start: u64,
}

/// What a sweep can tell about the process a database was marked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Gone,
    /// Another host's process: it cannot be checked from here.
    Unknown,
}

fn read_trimmed(path: &str) -> Result<String> {
    Ok(std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?.trim().to_owned())
}

/// The start time of `pid`, or `None` when no such process exists.
fn start_time(pid: u32) -> Option<u64> {
    start_field(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Field 22 of a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and may
/// hold spaces or parentheses itself; the fields after its last `)` start with field 3, so
/// field 22 is the 20th of them.
fn start_field(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Process {
    /// This process.
    pub fn current() -> Result<Self> {
        Self::of(std::process::id()).context("this process has no /proc entry")
    }

    /// The process with this pid on this host, if one runs.
    pub fn of(pid: u32) -> Result<Self> {
        let start = start_time(pid).with_context(|| format!("no process {pid}"))?;
        Ok(Self {
            host: read_trimmed("/proc/sys/kernel/hostname")?,
            boot: read_trimmed("/proc/sys/kernel/random/boot_id")?,
            pid,
            start,
        })
    }

    /// The comment a database owned by this process carries.
    pub fn mark(&self) -> String {
        format!("{MARK} host={} boot={} pid={} start={}", self.host, self.boot, self.pid, self.start)
    }

    /// The process a database's comment names, if the comment is a mark.
    pub fn from_mark(comment: &str) -> Option<Self> {
        let mut words = comment.split_whitespace();
        if words.next()? != MARK {
            return None;
        }
        let (mut host, mut boot, mut pid, mut start) = (None, None, None, None);
        for word in words {
            match word.split_once('=')? {
                ("host", v) => host = Some(v.to_owned()),
                ("boot", v) => boot = Some(v.to_owned()),
                ("pid", v) => pid = v.parse().ok(),
                ("start", v) => start = v.parse().ok(),
                _ => {}
            }
        }
        Some(Self { host: host?, boot: boot?, pid: pid?, start: start? })
    }

    /// Whether this process still runs, judged from `here` (the sweeping process).
    pub fn liveness(&self, here: &Process) -> Liveness {
        if self.host != here.host {
            Liveness::Unknown
        } else if self.boot != here.boot {
            Liveness::Gone
        } else if start_time(self.pid) == Some(self.start) {
            Liveness::Alive
        } else {
            Liveness::Gone
        }
    }
}

/// Marks database `name` as owned by this process (run right after creating it).
pub async fn mark_database(conn: &mut PgConnection, name: &str) -> Result<()> {
    let mark = Process::current()?.mark();
    sqlx::raw_sql(AssertSqlSafe(format!("COMMENT ON DATABASE \"{name}\" IS '{mark}'")))
        .execute(conn)
        .await
        .with_context(|| format!("marking {name} as this process's"))?;
    Ok(())
}

/// What [`sweep_abandoned`] did.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Databases whose creating process is gone: dropped.
    pub dropped: Vec<String>,
    /// `conclave_` databases left alone, each with the reason.
    pub kept: Vec<(String, &'static str)>,
}

/// Drops every `conclave_…` database whose creating process is provably gone, and keeps every
/// other one (its owner runs, runs elsewhere, or it carries no mark).
pub async fn sweep_abandoned(owner: &PgConnectOptions) -> Result<Sweep> {
    let here = Process::current()?;
    let mut conn = crate::maintenance(owner).await?;
    let databases: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database
         WHERE datname LIKE 'conclave\\_%' AND NOT datistemplate ORDER BY datname",
    )
    .fetch_all(&mut conn)
    .await?;
    let mut sweep = Sweep::default();
    for (name, comment) in databases {
        let owner = comment.as_deref().and_then(Process::from_mark);
        match owner.map(|p| p.liveness(&here)) {
            Some(Liveness::Gone) => {
                sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
                    .execute(&mut conn)
                    .await
                    .with_context(|| format!("dropping {name}"))?;
                sweep.dropped.push(name);
            }
            Some(Liveness::Alive) => sweep.kept.push((name, "its process runs")),
            Some(Liveness::Unknown) => sweep.kept.push((name, "made on another host")),
            None => sweep.kept.push((name, "no owner mark")),
        }
    }
    Ok(sweep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Process {
        Process::current().expect("this process")
    }

    #[test]
    fn a_mark_reads_back_as_the_process_it_names() {
        let p = me();
        assert_eq!(Process::from_mark(&p.mark()), Some(p));
        assert_eq!(Process::from_mark("made by hand"), None);
        assert_eq!(Process::from_mark("conclave-owner host=h pid=1"), None, "incomplete");
    }

    #[test]
    fn this_process_is_alive() {
        assert_eq!(me().liveness(&me()), Liveness::Alive);
    }

    #[test]
    fn a_reused_pid_is_not_the_process_that_was_recorded() {
        let earlier = Process { start: me().start.wrapping_sub(1), ..me() };
        assert_eq!(earlier.liveness(&me()), Liveness::Gone);
    }

    #[test]
    fn a_process_of_an_earlier_boot_is_gone_and_another_hosts_is_unknown() {
        assert_eq!(Process { boot: "earlier".into(), ..me() }.liveness(&me()), Liveness::Gone);
        assert_eq!(Process { host: "elsewhere".into(), ..me() }.liveness(&me()), Liveness::Unknown);
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let line = "42 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20";
        assert_eq!(start_field(line), Some(987654));
    }
}
