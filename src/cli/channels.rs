//! `wharf channels [status]`, `wharf channels tasks`, `wharf channels resend` and
//! `wharf channels dismiss`: the order channels of `[[channels]]` (marketplaces, affiliate systems)
//! as support sees them — what each is and how its pushes stand, every push with its ticket and
//! last error, and the pushes waiting for support (lost or dead) sent again or dismissed.

use std::collections::BTreeSet;

use anyhow::bail;
use chrono::NaiveDateTime;
use clap::Subcommand;

use crate::alerts::conditions::channel_breaker_key;
use crate::audit::{self, Entry, Via};
use crate::config::{ChannelAction, ChannelSettings, Settings};
use crate::db::{self, DbConnection};
use crate::outbound::{self, ChannelTask, ChannelTaskFilter, SupportAction, TaskState};

/// `wharf channels`.
#[derive(Debug, Subcommand)]
pub enum ChannelsCommand {
    /// Each configured channel: its kind, sources and actions, its pushes per state, the oldest
    /// pending one, its breaker and what waits for support (the default).
    Status,
    /// List the channels' pushes (tasks), newest first: channel, action, order, state, attempts,
    /// next attempt, batch and ticket ids, push number and last error.
    Tasks {
        /// Only pushes in this state: pending, failed, lost, done, dismissed, skipped, awaiting
        /// (its ticket is being read) or dead (refused for good).
        #[arg(long, value_parser = parse_state)]
        state: Option<TaskState>,
        /// Only this channel (a `[[channels]]` name).
        #[arg(long)]
        channel: Option<String>,
        /// Only this action: ship, cancel, refund, status, edit or split.
        #[arg(long, value_parser = parse_action)]
        action: Option<ChannelAction>,
        /// Only the pushes of this order number.
        #[arg(long)]
        order: Option<String>,
        /// How many to show.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
    },
    /// Send lost or dead pushes again: back to pending, due now, attempts reset.
    Resend {
        /// Task ids (from `wharf channels tasks`).
        #[arg(required = true)]
        ids: Vec<i64>,
        /// Why (kept with the task and in the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// Who is doing this (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Mark lost or dead pushes as handled by hand: they are never sent.
    Dismiss {
        /// Task ids (from `wharf channels tasks`).
        #[arg(required = true)]
        ids: Vec<i64>,
        /// How it was handled (kept with the task and in the audit log).
        #[arg(long)]
        reason: String,
        /// Who is doing this (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
}

/// Reads `--state`: a word of [`TaskState`], or an error listing them.
fn parse_state(word: &str) -> Result<TaskState, String> {
    TaskState::parse(word.trim()).ok_or_else(|| {
        format!(
            "{word:?} is not a task state; use one of {}",
            TaskState::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Reads `--action`: a channel action, or an error listing them.
fn parse_action(word: &str) -> Result<ChannelAction, String> {
    ChannelAction::parse(word.trim()).ok_or_else(|| {
        format!(
            "{word:?} is not a channel action; use one of {}",
            ChannelAction::ALL.map(ChannelAction::as_str).join(", ")
        )
    })
}

/// Who did it: `--by`, else $USER, else "cli".
fn actor(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "cli".to_string())
}

fn when(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The configured channels' names, or an error saying how to configure one.
/// File channels (`sftp`) are among them: their order files are tasks too, resent or dismissed
/// the same way (`wharf files` shows the files themselves).
fn names(settings: &Settings) -> anyhow::Result<Vec<&str>> {
    if settings.channels.is_empty() {
        bail!(
            "no order channels are configured: add a [[channels]] table per marketplace, \
             affiliate system or SFTP server to the settings file (see the README's channels \
             and file channels sections)"
        );
    }
    Ok(settings.channels.iter().map(|c| c.name.as_str()).collect())
}

pub(super) fn channels(settings: &Settings, cmd: Option<ChannelsCommand>) -> anyhow::Result<()> {
    let names = names(settings)?;
    let pool = super::open(settings)?;
    let mut conn = pool.get()?;
    match cmd.unwrap_or(ChannelsCommand::Status) {
        ChannelsCommand::Status => {
            for (i, c) in settings.channels.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                print_status(&mut conn, c)?;
            }
        }
        ChannelsCommand::Tasks {
            state,
            channel,
            action,
            order,
            limit,
        } => {
            let channels = match channel {
                Some(c) if names.contains(&c.as_str()) => vec![c],
                Some(c) => bail!(
                    "{c:?} is not a configured channel; the channels are {}",
                    names.join(", ")
                ),
                None => names.iter().map(|n| n.to_string()).collect(),
            };
            let filter = ChannelTaskFilter {
                channels,
                state,
                action: action.map(|a| a.as_str().to_string()),
                subject: order,
                id: None,
            };
            let tasks = outbound::channel_tasks(&mut conn, &filter, None, limit)?;
            print_tasks(&tasks, db::now());
        }
        ChannelsCommand::Resend { ids, reason, by } => {
            let done = support(
                &mut conn,
                &names,
                &ids,
                SupportAction::Resend,
                &actor(by),
                reason.as_deref(),
            )?;
            println!(
                "{} push(es) back to pending, sent again shortly: {}",
                done.len(),
                done.join(", ")
            );
        }
        ChannelsCommand::Dismiss { ids, reason, by } => {
            if reason.trim().is_empty() {
                bail!("say how the push was handled with --reason (kept in the audit log)");
            }
            let done = support(
                &mut conn,
                &names,
                &ids,
                SupportAction::Dismiss,
                &actor(by),
                Some(&reason),
            )?;
            println!(
                "{} push(es) dismissed (handled by hand, never sent): {}",
                done.len(),
                done.join(", ")
            );
        }
    }
    Ok(())
}

/// One channel's summary.
fn print_status(conn: &mut DbConnection, c: &ChannelSettings) -> anyhow::Result<()> {
    let name = c.name.as_str();
    let now = db::now();
    let counts = outbound::channel_state_counts(conn, &[name], TaskState::ALL)?;
    let count = |s: TaskState| {
        counts
            .iter()
            .find(|(_, state, _)| *state == s)
            .map_or(0, |(_, _, n)| *n)
    };
    println!("channel {name} ({})", kind_word(c));
    println!("  sources:  {}", c.sources.join(", "));
    if c.is_files() {
        println!("  server:   {}@{}:{}", c.user, c.host, c.port);
        println!(
            "  files:    order files to {:?}, shipment files from {:?} (see `wharf files`)",
            c.export_dir, c.import_dir
        );
    } else {
        let actions: Vec<&str> = c.actions().into_iter().map(ChannelAction::as_str).collect();
        println!("  actions:  {}", actions.join(", "));
        println!("  api:      {}", c.base_url);
    }
    let states: Vec<String> = TaskState::ALL
        .iter()
        .map(|s| format!("{s} {}", count(*s)))
        .collect();
    println!("  pushes:   {}", states.join(", "));
    match outbound::oldest_pending(conn, name)? {
        Some(t) => println!(
            "  oldest pending: #{} {} of order {}, made {} UTC, {}",
            t.id,
            t.action,
            t.subject,
            when(t.created_at),
            match t.run_after {
                Some(at) if at > now => format!("due {} UTC", when(at)),
                _ => "due now".to_string(),
            }
        ),
        None => println!("  oldest pending: none"),
    }
    let key = channel_breaker_key(name);
    let breaker = outbound::breaker::breakers(conn)?
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, b)| b);
    println!("  breaker:  {}", breaker_text(breaker, now));
    let (lost, dead) = (count(TaskState::Lost), count(TaskState::Dead));
    if lost + dead > 0 {
        let state = if dead > 0 { "dead" } else { "lost" };
        println!(
            "  waiting for support: {} ({lost} lost, {dead} dead): see `wharf channels tasks \
             --channel {name} --state {state}`, then `wharf channels resend ID` or `wharf \
             channels dismiss ID --reason R`",
            lost + dead
        );
    } else {
        println!("  waiting for support: none");
    }
    Ok(())
}

fn kind_word(c: &ChannelSettings) -> &'static str {
    c.kind_word()
}

fn breaker_text(b: Option<outbound::breaker::BreakerState>, now: NaiveDateTime) -> String {
    match b {
        Some(b) if b.is_open(now) => format!(
            "open: pushes paused until {} UTC after {} calls in a row not answered; they resume \
             by themselves (check the channel's API meanwhile)",
            b.paused_until.map(when).unwrap_or_default(),
            b.failures
        ),
        Some(b) if b.failures > 0 => {
            format!("closed ({} call(s) in a row not answered)", b.failures)
        }
        _ => "closed".to_string(),
    }
}

/// The list as a table, its columns as wide as their widest cell.
fn print_tasks(tasks: &[ChannelTask], now: NaiveDateTime) {
    if tasks.is_empty() {
        println!("no channel pushes match");
        return;
    }
    let header = [
        "ID",
        "CHANNEL",
        "ACTION",
        "ORDER",
        "STATE",
        "ATTEMPTS",
        "NEXT ATTEMPT",
        "BATCH",
        "TICKET",
        "SEQ",
        "LAST ERROR",
    ];
    let dash = |v: Option<&str>| v.unwrap_or("-").to_string();
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|ct| {
            let t = &ct.task;
            vec![
                t.id.to_string(),
                t.channel.clone(),
                t.action.clone(),
                t.subject.clone(),
                t.state.to_string(),
                t.attempts.to_string(),
                next_attempt(t, now),
                dash(t.batch_id.as_deref()),
                dash(t.ticket_id.as_deref()),
                t.sequence.map_or_else(|| "-".into(), |s| s.to_string()),
                dash(t.last_error.as_deref().map(first_line)),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("{}", line(header.iter().map(|h| h.to_string()).collect()));
    for row in rows {
        println!("{}", line(row));
    }
}

/// When a push is tried again: its time, `now`, or `-` when it waits for nothing but support or
/// is finished.
fn next_attempt(t: &outbound::TaskRow, now: NaiveDateTime) -> String {
    let open = matches!(
        t.state,
        TaskState::Pending | TaskState::Failed | TaskState::Awaiting
    );
    match t.run_after {
        Some(at) if open && at > now => format!("{} UTC", when(at)),
        _ if open => "now".to_string(),
        _ => "-".to_string(),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// Resends or dismisses tasks `ids` of the channels `names`, each a compare-and-set on the state
/// read (lost or dead), with one audit row, all in one transaction: all of them or none. Returns a
/// line per task.
fn support(
    conn: &mut DbConnection,
    names: &[&str],
    ids: &[i64],
    action: SupportAction,
    actor: &str,
    reason: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let ids: BTreeSet<i64> = ids.iter().copied().collect();
    db::write_tx(conn, |c| -> anyhow::Result<_> {
        let now = db::now();
        let (mut done, mut orders) = (Vec::new(), Vec::new());
        for &id in &ids {
            let Some(ct) = outbound::channel_task(c, names, id)? else {
                bail!(
                    "task #{id} is not a push of a configured channel (see `wharf channels \
                     tasks`); nothing changed"
                );
            };
            let t = ct.task;
            let what = format!("#{id} {} {} of order {}", t.channel, t.action, t.subject);
            if !TaskState::STUCK.contains(&t.state) {
                bail!(
                    "{what} is {}: only lost or dead pushes wait for support; nothing changed",
                    t.state
                );
            }
            if !outbound::act(c, id, t.state, action, actor, reason, now)? {
                bail!(
                    "{what} changed meanwhile or is being sent right now; nothing changed (look \
                     at `wharf channels tasks --order {}` and repeat)",
                    t.subject
                );
            }
            done.push(format!("{what} (was {})", t.state));
            orders.push(t.subject);
        }
        if action == SupportAction::Resend {
            // Wakes the runners of the serving processes when this commits (PostgreSQL); on
            // SQLite they find the push due at their next look.
            outbound::announce(c)?;
        }
        audit::record(
            c,
            &Entry {
                actor,
                via: Via::Cli,
                action: audit_action(action),
                subject_kind: "order",
                subjects: &orders,
                filter: None,
                count: orders.len() as i64,
                note: reason,
            },
        )?;
        Ok(done)
    })
}

/// The audit log's word for a support action on a channel push.
fn audit_action(action: SupportAction) -> &'static str {
    match action {
        SupportAction::Resend => "channels.resend",
        SupportAction::Dismiss => "channels.dismiss",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_actions_parse_or_list_the_valid_words() {
        assert_eq!(parse_state("dead"), Ok(TaskState::Dead));
        let e = parse_state("stuck").unwrap_err();
        assert!(e.contains("pending, failed, lost, done"), "{e}");
        assert!(e.contains("awaiting, dead"), "{e}");
        assert_eq!(parse_action("ship"), Ok(ChannelAction::Ship));
        let e = parse_action("shipped").unwrap_err();
        assert!(
            e.contains("ship, cancel, refund, status, edit, split"),
            "{e}"
        );
    }
}
