//! `wharf users …`, `wharf tokens …`, `wharf requests …`.

use std::io::Read;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::auth;
use crate::config::Settings;
use crate::queue;

/// `wharf users`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create an API user. The password is read from standard input (one line).
    Add {
        /// Login name.
        name: String,
        /// Role: `warehouse` (may call the SOAP API).
        #[arg(long, default_value = "warehouse")]
        role: String,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long)]
        password_stdin: bool,
    },
}

/// `wharf tokens`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a storefront API token and print it once (only its hash is stored).
    Add {
        /// A name for the token, e.g. the storefront it is for.
        name: String,
    },
}

/// `wharf requests`.
#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// List the most recent rejected messages (faults), newest first.
    Rejected {
        /// How many to show.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Count requests by state.
    Depth,
}

pub(super) fn users(settings: &Settings, cmd: UsersCommand) -> anyhow::Result<()> {
    match cmd {
        UsersCommand::Add {
            name,
            role,
            password_stdin,
        } => {
            if !password_stdin {
                bail!("pass --password-stdin and send the password on standard input");
            }
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("reading the password from standard input")?;
            let password = input.lines().next().unwrap_or("").to_string();
            let pool = super::open(settings)?;
            let mut conn = pool.get()?;
            auth::add_user(&mut conn, &name, &password, &role)?;
            println!("created user {name:?} with role {role}");
            Ok(())
        }
    }
}

pub(super) fn tokens(settings: &Settings, cmd: TokensCommand) -> anyhow::Result<()> {
    match cmd {
        TokensCommand::Add { name } => {
            let pool = super::open(settings)?;
            let mut conn = pool.get()?;
            let token = auth::add_token(&mut conn, &name)?;
            eprintln!("created token {name:?}; it is shown once, store it now:");
            println!("{token}");
            Ok(())
        }
    }
}

pub(super) fn requests(settings: &Settings, cmd: RequestsCommand) -> anyhow::Result<()> {
    let pool = super::open(settings)?;
    let mut conn = pool.get()?;
    match cmd {
        RequestsCommand::Rejected { limit } => {
            let rows = queue::recent_rejections(&mut conn, limit)?;
            if rows.is_empty() {
                println!("no rejected messages");
            }
            for r in rows {
                println!(
                    "#{} {} caller={} operation={} — {}",
                    r.id,
                    r.received_at.format("%Y-%m-%d %H:%M:%S"),
                    r.caller.as_deref().unwrap_or("-"),
                    r.operation.as_deref().unwrap_or("-"),
                    r.reason
                );
            }
        }
        RequestsCommand::Depth => {
            for (state, n) in queue::depth_by_state(&mut conn)? {
                println!("{state:<12} {n}");
            }
        }
    }
    Ok(())
}
