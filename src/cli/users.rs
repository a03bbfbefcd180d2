//! `wharf users …` and `wharf tokens …`.

use std::io::Read;

use anyhow::{Context, bail};
use chrono::NaiveDateTime;
use clap::Subcommand;

use crate::auth;
use crate::config::Settings;

/// `wharf users`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user: a warehouse API user (the default) or a support console user (`--role viewer`
    /// or `--role operator`). The password is read from standard input (see `--password-stdin`).
    Add {
        /// Login name.
        name: String,
        /// Role: `warehouse` calls the SOAP API; `viewer` logs into the console at /admin and reads
        /// every page; `operator` also acts there (requeue, reprocess, resend, dismiss). A user has
        /// one role: a warehouse user never opens the console, a console user never calls SOAP.
        #[arg(long, default_value = "warehouse")]
        role: String,
        /// Read the password from standard input (required: passwords never go on the command
        /// line). It is taken exactly as sent, spaces included; only one final line ending ("\n" or
        /// "\r\n", as `echo` adds) is dropped.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users (warehouse and console) with their roles, valid SOAP login sessions, admin
    /// tokens and console sessions.
    List,
    /// Remove a user (warehouse or console); its sessions (SOAP and console) and admin tokens end
    /// at once.
    Remove {
        /// Login name.
        name: String,
    },
    /// Change a user's password (warehouse or console; read from standard input); its sessions
    /// (SOAP and console) and admin tokens end at once.
    Passwd {
        /// Login name.
        name: String,
        /// Read the new password from standard input (required), exactly as for `users add`.
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
    /// List storefront API tokens: name, created, last used (never the token).
    List,
    /// Revoke a storefront API token: calls with it are refused from now on.
    Revoke {
        /// The token's name.
        name: String,
    },
}

/// Reads a password from standard input exactly as sent: only the one line ending that `echo` or a
/// here-string adds ("\n", or "\r\n") is removed. Nothing is trimmed — a password may begin or end
/// with spaces — and a password cannot span lines.
fn read_password(password_stdin: bool) -> anyhow::Result<String> {
    if !password_stdin {
        bail!("pass --password-stdin and send the password on standard input");
    }
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the password from standard input")?;
    password_from_input(&input)
}

fn password_from_input(input: &str) -> anyhow::Result<String> {
    let password = match input.strip_suffix('\n') {
        Some(line) => line.strip_suffix('\r').unwrap_or(line),
        None => input,
    };
    if password.contains('\n') {
        bail!(
            "the password on standard input spans several lines; send it as one line (a password \
             cannot contain a line break)"
        );
    }
    Ok(password.to_string())
}

fn time(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

pub(super) fn users(settings: &Settings, cmd: UsersCommand) -> anyhow::Result<()> {
    match cmd {
        UsersCommand::Add {
            name,
            role,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            let pool = super::open(settings)?;
            let mut conn = pool.get()?;
            auth::add_user(&mut conn, &name, &password, &role)?;
            println!("created user {name:?} with role {role}");
        }
        UsersCommand::List => {
            let pool = super::open(settings)?;
            let mut conn = pool.get()?;
            let users = auth::list_users(&mut conn, auth::Lifetimes::of(&settings.soap))?;
            let console = auth::console_sessions(&mut conn, &settings.console)?;
            if users.is_empty() {
                println!("no users; create one with `wharf users add NAME --password-stdin`");
                return Ok(());
            }
            println!(
                "{:<24}  {:<10}  {:<19}  {:>8}  {:>6}  {:>7}",
                "NAME", "ROLE", "CREATED", "SESSIONS", "TOKENS", "CONSOLE"
            );
            for u in users {
                let console = console
                    .iter()
                    .find(|(name, _)| *name == u.username)
                    .map_or(0, |(_, n)| *n);
                println!(
                    "{:<24}  {:<10}  {:<19}  {:>8}  {:>6}  {:>7}",
                    u.username,
                    u.role,
                    time(u.created_at),
                    u.sessions,
                    u.tokens,
                    console
                );
            }
        }
        UsersCommand::Remove { name } => {
            let pool = super::open(settings)?;
            let mut conn = pool.get()?;
            let ended = auth::remove_user(&mut conn, &name)?;
            println!(
                "removed user {name:?}; ended {} session(s) and {} admin token(s)",
                ended.sessions, ended.tokens
            );
        }
        UsersCommand::Passwd {
            name,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            let pool = super::open(settings)?;
            let mut conn = pool.get()?;
            let ended = auth::set_password(&mut conn, &name, &password)?;
            println!(
                "changed the password of {name:?}; ended {} session(s) and {} admin token(s)",
                ended.sessions, ended.tokens
            );
        }
    }
    Ok(())
}

pub(super) fn tokens(settings: &Settings, cmd: TokensCommand) -> anyhow::Result<()> {
    let pool = super::open(settings)?;
    let mut conn = pool.get()?;
    match cmd {
        TokensCommand::Add { name } => {
            let token = auth::add_token(&mut conn, &name)?;
            eprintln!("created token {name:?}; it is shown once, store it now:");
            println!("{token}");
        }
        TokensCommand::List => {
            let tokens = auth::list_tokens(&mut conn)?;
            if tokens.is_empty() {
                println!("no tokens; create one with `wharf tokens add NAME`");
                return Ok(());
            }
            println!("{:<24}  {:<19}  LAST USED", "NAME", "CREATED");
            for t in tokens {
                println!(
                    "{:<24}  {:<19}  {}",
                    t.name,
                    time(t.created_at),
                    t.last_used_at.map_or_else(|| "never".to_string(), time)
                );
            }
        }
        TokensCommand::Revoke { name } => {
            auth::revoke_token(&mut conn, &name)?;
            println!("revoked token {name:?}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_final_line_ending_is_dropped_from_a_password() {
        for (input, expected) in [
            ("secret\n", "secret".to_string()),
            ("  spaced out  \n", "  spaced out  ".to_string()),
            ("trailing space \r\n", "trailing space ".to_string()),
            ("no newline ", "no newline ".to_string()),
            ("tab\t\n", "tab\t".to_string()),
        ] {
            assert_eq!(password_from_input(input).unwrap(), expected, "{input:?}");
        }
        assert!(password_from_input("two\nlines\n").is_err());
        assert!(password_from_input("extra\n\n").is_err());
    }
}
