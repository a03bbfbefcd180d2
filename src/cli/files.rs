//! `wharf files [list]`, `wharf files show`, `wharf files failed` and `wharf files seen`: the file
//! channels' exchanges (`kind = "sftp"`) as support sees them — every order file written and
//! shipment file read with its size, orders or shipment, state and error, one in full with its
//! body, the failed shipment files support has not seen, and marking one seen.

use anyhow::bail;
use chrono::NaiveDateTime;
use clap::Subcommand;

use crate::audit::{self, Entry, Via};
use crate::channels::sftp::store::{
    self as files, Direction, ExchangeFilter, FileExchange, FileState, ops,
};
use crate::config::Settings;
use crate::db::{self, DbConnection};

/// `wharf files`.
#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// List the exchanges, newest first (the default), then what is wrong with each channel now.
    List {
        /// Only this channel (a `[[channels]]` name with kind = "sftp").
        #[arg(long)]
        channel: Option<String>,
        /// out (order files) or in (shipment files).
        #[arg(long, value_parser = parse_direction)]
        direction: Option<Direction>,
        /// writing, uploaded or sent (order files); claimed, applied, repeat or failed (shipment
        /// files).
        #[arg(long, value_parser = parse_state)]
        state: Option<FileState>,
        /// How many to show.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
    },
    /// One exchange in full: its file, state, error, orders or shipment, and body.
    Show {
        /// Exchange id (from `wharf files list`).
        id: i64,
    },
    /// The failed shipment files support has not seen (what the alert lists), oldest first.
    Failed {
        /// Only this channel.
        #[arg(long)]
        channel: Option<String>,
        /// Also the failed files already seen.
        #[arg(long)]
        all: bool,
    },
    /// Mark a failed shipment file seen (once the warehouse knows): its alert resolves when no
    /// other failed file of the channel waits.
    Seen {
        /// Exchange id (from `wharf files failed`).
        id: i64,
        /// Who is doing this (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Forget the host key a trust_on_first_use channel keeps, once its server's key was replaced
    /// on purpose: the next run trusts the key it then sees (recorded in the audit log).
    ForgetKey {
        /// The channel (a `[[channels]]` name with kind = "sftp").
        channel: String,
        /// Who is doing this (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
}

fn parse_direction(word: &str) -> Result<Direction, String> {
    Direction::parse(word.trim()).ok_or_else(|| {
        format!("{word:?} is not a direction; use out (order files) or in (shipment files)")
    })
}

fn parse_state(word: &str) -> Result<FileState, String> {
    FileState::parse(word.trim()).ok_or_else(|| {
        format!(
            "{word:?} is not a file state; use one of {}",
            FileState::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
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

/// `channel` when it is a configured file channel, or an error naming them.
fn checked(settings: &Settings, channel: Option<String>) -> anyhow::Result<Option<String>> {
    let names: Vec<&str> = settings.file_channels().map(|c| c.name.as_str()).collect();
    match channel {
        Some(c) if !names.contains(&c.as_str()) => bail!(
            "{c:?} is not a configured file channel; the file channels are {}",
            if names.is_empty() {
                "none (add a [[channels]] table with kind = \"sftp\")".to_string()
            } else {
                names.join(", ")
            }
        ),
        c => Ok(c),
    }
}

pub(super) fn files(settings: &Settings, cmd: Option<FilesCommand>) -> anyhow::Result<()> {
    let pool = super::open(settings)?;
    let mut conn = pool.get()?;
    let cmd = cmd.unwrap_or(FilesCommand::List {
        channel: None,
        direction: None,
        state: None,
        limit: 50,
    });
    match cmd {
        FilesCommand::List {
            channel,
            direction,
            state,
            limit,
        } => {
            let channel = checked(settings, channel)?;
            let filter = ExchangeFilter {
                channel: channel.clone(),
                direction,
                state,
            };
            print_table(&files::exchanges(&mut conn, &filter, None, limit)?);
            print_troubles(&mut conn, channel.as_deref())?;
        }
        FilesCommand::Show { id } => show(&mut conn, id)?,
        FilesCommand::Failed { channel, all } => {
            let channel = checked(settings, channel)?;
            let names: Vec<String> = match channel {
                Some(c) => vec![c],
                None => settings.file_channels().map(|c| c.name.clone()).collect(),
            };
            let mut rows = Vec::new();
            for name in &names {
                rows.extend(failed(&mut conn, name, all)?);
            }
            rows.sort_by_key(|r| r.id);
            if rows.is_empty() {
                println!(
                    "no failed shipment files{}",
                    if all { "" } else { " wait to be seen" }
                );
            } else {
                print_table(&rows);
                println!("mark one seen once the warehouse knows: wharf files seen ID");
            }
        }
        FilesCommand::Seen { id, by } => {
            let line = seen(&mut conn, id, &actor(by))?;
            println!("marked seen: {line}");
        }
        FilesCommand::ForgetKey { channel, by } => {
            let Some(channel) = checked(settings, Some(channel))? else {
                bail!("name the channel whose key to forget");
            };
            println!("{}", forget_key(&mut conn, &channel, &actor(by))?);
        }
    }
    Ok(())
}

/// The failed shipment files of `channel`, oldest first: the unseen ones, or all.
fn failed(conn: &mut DbConnection, channel: &str, all: bool) -> anyhow::Result<Vec<FileExchange>> {
    if !all {
        return Ok(ops::unseen_failed(conn, channel, 100_000)?.1);
    }
    let filter = ExchangeFilter {
        channel: Some(channel.to_string()),
        direction: Some(Direction::In),
        state: Some(FileState::Failed),
    };
    let mut rows = files::exchanges(conn, &filter, None, 100_000)?;
    rows.reverse();
    Ok(rows)
}

/// `orders 3` (an order file), `order 100042, request 17` (a shipment file).
fn carried(x: &FileExchange) -> String {
    if x.direction == Direction::Out.as_str() {
        return format!("{} order(s)", x.orders);
    }
    let mut parts = Vec::new();
    if let Some(o) = &x.order_increment_id {
        parts.push(format!("order {o}"));
    }
    if let Some(r) = x.request_id {
        parts.push(format!("request {r}"));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

fn state_text(x: &FileExchange) -> String {
    match (x.state == FileState::Failed.as_str(), x.seen_at) {
        (true, None) => "failed (not seen)".into(),
        (true, Some(_)) => "failed (seen)".into(),
        _ => x.state.clone(),
    }
}

/// The exchanges as a table, its columns as wide as their widest cell.
fn print_table(rows: &[FileExchange]) {
    if rows.is_empty() {
        println!("no file exchanges match");
        return;
    }
    let header = [
        "ID",
        "CHANNEL",
        "DIR",
        "FILE",
        "SIZE",
        "CARRIES",
        "STATE",
        "MADE (UTC)",
        "ERROR",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|x| {
            vec![
                x.id.to_string(),
                x.channel.clone(),
                x.direction.clone(),
                x.name.clone(),
                x.size.map_or_else(|| "-".into(), |s| s.to_string()),
                carried(x),
                state_text(x),
                when(x.created_at),
                x.error
                    .as_deref()
                    .and_then(|e| e.lines().next())
                    .unwrap_or("-")
                    .to_string(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &cells {
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
    for row in cells {
        println!("{}", line(row));
    }
}

/// What is wrong with the file channels now (`channel` only, when given).
fn print_troubles(conn: &mut DbConnection, channel: Option<&str>) -> anyhow::Result<()> {
    let troubles = files::troubles(conn, channel)?;
    if troubles.is_empty() {
        println!("no trouble now");
    }
    for t in troubles {
        println!(
            "trouble: channel {} {} since {} UTC: {}",
            t.channel,
            t.trouble,
            when(t.since),
            t.detail
        );
    }
    Ok(())
}

fn show(conn: &mut DbConnection, id: i64) -> anyhow::Result<()> {
    let Some((x, body)) = files::exchange(conn, id)? else {
        bail!(
            "file exchange #{id} does not exist (see `wharf files list`; retention may have deleted it)"
        );
    };
    let what = if x.direction == Direction::Out.as_str() {
        "order file"
    } else {
        "shipment file"
    };
    println!(
        "file exchange #{id}: {what} {} of channel {}",
        x.name, x.channel
    );
    println!("  state:    {}", state_text(&x));
    if let Some(at) = x.seen_at {
        println!("  seen:     {} UTC", when(at));
    }
    println!(
        "  size:     {}",
        x.size.map_or_else(|| "-".into(), |s| format!("{s} bytes"))
    );
    println!("  sha256:   {}", x.hash.as_deref().unwrap_or("-"));
    println!("  carries:  {}", carried(&x));
    if x.direction == Direction::Out.as_str() {
        let orders = ops::orders_of_file(conn, &x.channel, &x.name)?;
        if !orders.is_empty() {
            println!("  orders:   {}", orders.join(", "));
        }
    }
    if x.runs > 0 {
        println!("  runs that found it unfinished: {}", x.runs);
    }
    println!("  error:    {}", x.error.as_deref().unwrap_or("-"));
    println!("  made:     {} UTC", when(x.created_at));
    println!("  changed:  {} UTC", when(x.updated_at));
    println!(
        "  finished: {}",
        x.finished_at
            .map_or_else(|| "-".into(), |t| format!("{} UTC", when(t)))
    );
    match body {
        // A failed file as read: re-indenting what did not parse would hide why it failed.
        Some(b) if x.state == FileState::Failed.as_str() => println!("body (as read):\n{b}"),
        Some(b) => println!("body:\n{}", crate::console::view::pretty_xml(&b)),
        None => println!("body: not kept (a shipment file's is kept only when it failed)"),
    }
    if x.state == FileState::Failed.as_str() && x.seen_at.is_none() {
        println!("mark it seen once the warehouse knows: wharf files seen {id}");
    }
    Ok(())
}

/// Marks failed file `id` seen with one audit row, in one transaction. Returns a line about it.
fn seen(conn: &mut DbConnection, id: i64, actor: &str) -> anyhow::Result<String> {
    db::write_tx(conn, |c| -> anyhow::Result<String> {
        let Some((x, _)) = files::exchange(c, id)? else {
            bail!("file exchange #{id} does not exist (see `wharf files failed`)");
        };
        let what = format!("#{id} {} of channel {}", x.name, x.channel);
        if !ops::mark_seen(c, id, db::now())? {
            if x.seen_at.is_some() {
                bail!("{what} was marked seen already; nothing changed");
            }
            bail!(
                "{what} is {}, not a failed shipment file; nothing to mark seen",
                x.state
            );
        }
        audit::record(
            c,
            &Entry {
                actor,
                via: Via::Cli,
                action: "files.seen",
                subject_kind: "file",
                subjects: &[id.to_string()],
                filter: None,
                count: 1,
                note: None,
            },
        )?;
        Ok(format!("{what}: {}", x.error.unwrap_or_default()))
    })
}

/// Forgets the key trust-on-first-use keeps for `channel`, audited. Says what was forgotten.
fn forget_key(conn: &mut DbConnection, channel: &str, actor: &str) -> anyhow::Result<String> {
    db::write_tx(conn, |c| -> anyhow::Result<String> {
        let Some(key) = files::forget_first_key(c, channel)? else {
            bail!(
                "channel {channel} keeps no host key (it has not connected yet, or it pins its \
                 key with host_key_fingerprint or known_hosts); nothing changed"
            );
        };
        audit::record(
            c,
            &Entry {
                actor,
                via: Via::Cli,
                action: "files.forget_key",
                subject_kind: "channel",
                subjects: &[channel.to_string()],
                filter: None,
                count: 1,
                note: Some(&key),
            },
        )?;
        Ok(format!(
            "channel {channel} no longer trusts {key}; its next run trusts the key the server shows then"
        ))
    })
}
