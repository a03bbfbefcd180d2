//! Delivery of the mail tasks of the outbound queue (channel `smtp`): each run claims every due
//! task under a lease and sends one digest for the incidents opened, one resolve mail per
//! incident resolved (threaded under its open mail), and the customers' confirmations.
//!
//! Alert mails keep to `max_mails_per_hour` across processes: a slot is taken before each send
//! ([`crate::alerts::store::take_slot`]) and given back when it fails; what finds no slot is let go
//! and goes in a later digest. A send that fails settles its tasks failed with a backoff (lost
//! after `mail_max_attempts`); every send has `send_timeout_secs`, and nothing else waits for it.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncTransport, Message};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::alerts::mail::{self, Customer, Text};
use crate::alerts::{self, CUSTOMER_CONFIRM, INCIDENT_OPEN, INCIDENT_RESOLVE, store};
use crate::config::Settings;
use crate::db::lease::{Backoff, Lease, Owner};
use crate::db::schema::outbound_tasks as t;
use crate::db::{self, DbConnection, Pool};
use crate::outbound::{self, Outcome, Task, TaskKind};
use crate::runs::{self, Job};

/// Most tasks of one kind one run takes.
const BATCH: i64 = 50;

/// What one delivery run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Mails sent.
    pub sent: usize,
    /// Mails the SMTP server refused or did not take (their tasks retry after a backoff).
    pub failed: usize,
    /// Alert mails held back by the hourly limit (their tasks wait for a later run).
    pub deferred: usize,
    /// Tasks skipped (an order with no customer address, an incident that no longer exists).
    pub skipped: usize,
    /// Why the last failed mail failed.
    pub last_error: Option<String>,
}

/// Sends the mail tasks.
pub struct Mailer {
    pool: Pool,
    settings: Arc<Settings>,
    owner: Owner,
}

impl Mailer {
    /// A mailer on `pool` with `settings.alerts`.
    pub fn new(pool: Pool, settings: Arc<Settings>) -> Mailer {
        Mailer {
            pool,
            settings,
            owner: Owner::new("outbound:smtp"),
        }
    }

    /// Sends what is due at `now`: the open digest, then resolve mails, then customer mails.
    ///
    /// Whatever a run claimed and did not settle (the database failed mid-run, or the SMTP server
    /// refused and the rest of the run was left for later) is released at once, not left to its
    /// lease: a lease long enough for a whole run would hold the mails for half an hour.
    pub async fn run_once(&self, now: NaiveDateTime) -> anyhow::Result<Delivery> {
        let mut d = Delivery::default();
        let (lease, opens) = self.claim(INCIDENT_OPEN, now).await?;
        let ids = opens.iter().map(|t| t.id).collect();
        let sent = if opens.is_empty() {
            Ok(())
        } else {
            self.send_opens(&lease, opens, now, &mut d).await
        };
        self.release_rest(&lease, ids, sent).await?;
        for kind in [INCIDENT_RESOLVE, CUSTOMER_CONFIRM] {
            let (lease, tasks) = self.claim(kind, now).await?;
            let ids = tasks.iter().map(|t| t.id).collect();
            let sent = self.send_each(&lease, kind, tasks, now, &mut d).await;
            self.release_rest(&lease, ids, sent).await?;
        }
        Ok(d)
    }

    /// Sends the resolve or customer mails `tasks` one by one, until one fails: with the server
    /// refusing or unreachable, the others would each wait out the send timeout for nothing.
    async fn send_each(
        &self,
        lease: &Lease,
        kind: TaskKind,
        tasks: Vec<Task>,
        now: NaiveDateTime,
        d: &mut Delivery,
    ) -> anyhow::Result<()> {
        let failed_before = d.failed;
        for task in tasks {
            if d.failed > failed_before {
                break;
            }
            if kind == INCIDENT_RESOLVE {
                self.send_resolve(lease, task, now, d).await?;
            } else {
                self.send_confirmation(lease, task, now, d).await?;
            }
        }
        Ok(())
    }

    /// Releases those of `ids` this run still holds (settled ones are no longer held: a no-op for
    /// them), then returns `outcome`.
    async fn release_rest(
        &self,
        lease: &Lease,
        ids: Vec<i64>,
        outcome: anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let owner = lease.owner.clone();
        let released = self
            .db(move |conn| Ok(outbound::release(conn, &ids, &owner, None)?))
            .await;
        outcome?;
        released.map(drop)
    }

    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        crate::db::blocking(&self.pool, "mail delivery", f).await
    }

    /// Claims the due tasks of `kind`, under a lease long enough to send each of them.
    async fn claim(
        &self,
        kind: TaskKind,
        now: NaiveDateTime,
    ) -> anyhow::Result<(Lease, Vec<Task>)> {
        let timeout = i64::try_from(self.settings.alerts.send_timeout_secs).unwrap_or(60);
        let lease = Lease::new(&self.owner, timeout.saturating_mul(BATCH + 2) + 60);
        let l = lease.clone();
        let tasks = self
            .db(move |conn| {
                Ok(outbound::claim(conn, &l, |conn| {
                    crate::load_skip_locked!(
                        conn,
                        t::table
                            .filter(crate::outbound_due!(kind, now, l.now))
                            .order(t::id)
                            .limit(BATCH)
                            .select(t::id)
                    )
                })?)
            })
            .await?;
        Ok((lease, tasks))
    }

    async fn send_opens(
        &self,
        lease: &Lease,
        tasks: Vec<Task>,
        now: NaiveDateTime,
        d: &mut Delivery,
    ) -> anyhow::Result<()> {
        let subjects: Vec<String> = tasks.iter().map(|t| t.subject.clone()).collect();
        let found = self
            .db(move |conn| {
                let mut found = Vec::new();
                for s in &subjects {
                    let i = match s.parse::<i64>() {
                        Ok(id) => store::incident(conn, id)?,
                        Err(_) => None,
                    };
                    found.push(i);
                }
                Ok(found)
            })
            .await?;
        let (mut sending, mut incidents, mut gone) = (Vec::new(), Vec::new(), Vec::new());
        for (task, incident) in tasks.into_iter().zip(found) {
            match incident {
                Some(i) => {
                    sending.push(task);
                    incidents.push(i);
                }
                None => gone.push(task),
            }
        }
        self.skip(
            lease,
            INCIDENT_OPEN,
            gone,
            "the incident no longer exists",
            d,
        )
        .await?;
        if incidents.is_empty() {
            return Ok(());
        }
        let text = mail::open_digest(&incidents, &mail::console_url(&self.settings));
        let ids = incidents.iter().map(|i| i.id).collect();
        self.send_alert(lease, sending, text, None, Some(ids), now, d)
            .await
    }

    async fn send_resolve(
        &self,
        lease: &Lease,
        task: Task,
        now: NaiveDateTime,
        d: &mut Delivery,
    ) -> anyhow::Result<()> {
        let subject = task.subject.clone();
        let (incident, open_waits) = self
            .db(move |conn| {
                let i = match subject.parse::<i64>() {
                    Ok(id) => store::incident(conn, id)?,
                    Err(_) => None,
                };
                Ok((i, store::open_mail_waits(conn, &subject)?))
            })
            .await?;
        let Some(incident) = incident else {
            return self
                .skip(
                    lease,
                    INCIDENT_RESOLVE,
                    vec![task],
                    "the incident no longer exists",
                    d,
                )
                .await;
        };
        if open_waits {
            // The resolve mail threads under the open one: it waits until that one went.
            let ids = vec![task.id];
            let owner = lease.owner.clone();
            self.db(move |conn| Ok(outbound::release(conn, &ids, &owner, None)?))
                .await?;
            d.deferred += 1;
            return Ok(());
        }
        let text = mail::resolved(&incident, now);
        self.send_alert(lease, vec![task], text, incident.message_id, None, now, d)
            .await
    }

    /// Sends an alert mail for `tasks` if the hourly limit leaves a slot (else lets them go for
    /// a later run), and settles them; `opened`: the incidents whose open mail this is.
    #[allow(clippy::too_many_arguments)]
    async fn send_alert(
        &self,
        lease: &Lease,
        tasks: Vec<Task>,
        text: Text,
        thread: Option<String>,
        opened: Option<Vec<i64>>,
        now: NaiveDateTime,
        d: &mut Delivery,
    ) -> anyhow::Result<()> {
        let cfg = &self.settings.alerts;
        let (max, subject) = (cfg.max_mails_per_hour, text.subject.clone());
        let slot = self
            .db(move |conn| Ok(store::take_slot(conn, max, &subject, now)?))
            .await?;
        let ids: Vec<i64> = tasks.iter().map(|t| t.id).collect();
        let owner = lease.owner.clone();
        let Some(slot) = slot else {
            tracing::warn!(max_mails_per_hour = max, subject = %text.subject,
                "the alert mail limit ({max} per hour) is reached; this mail waits and goes in a \
                 later digest (raise alerts.max_mails_per_hour to get more)");
            metrics::counter!(crate::metrics::ALERT_MAILS, "outcome" => "deferred").increment(1);
            self.db(move |conn| Ok(outbound::release(conn, &ids, &owner, None)?))
                .await?;
            d.deferred += 1;
            return Ok(());
        };
        let mid = message_id(&cfg.from);
        match self.send(&cfg.to, &text, &mid, thread.as_deref()).await {
            Ok(()) => {
                metrics::counter!(crate::metrics::ALERT_MAILS, "outcome" => "sent").increment(1);
                tracing::info!(subject = %text.subject, "alert mail sent: {}", text.subject);
                self.db(move |conn| {
                    db::write_tx(conn, |conn| {
                        outbound::settle_done(conn, &ids, &owner, now)?;
                        if let Some(opened) = &opened {
                            store::set_message_id(conn, opened, &mid, now)?;
                        }
                        Ok(())
                    })
                })
                .await?;
                d.sent += 1;
            }
            Err(e) => {
                metrics::counter!(crate::metrics::ALERT_MAILS, "outcome" => "failed").increment(1);
                self.db(move |conn| Ok(store::give_back(conn, slot)?))
                    .await?;
                self.failed(lease, tasks, &text.subject, e, now, d).await?;
            }
        }
        Ok(())
    }

    async fn send_confirmation(
        &self,
        lease: &Lease,
        task: Task,
        now: NaiveDateTime,
        d: &mut Delivery,
    ) -> anyhow::Result<()> {
        let number = task.subject.clone();
        let found = self
            .db(move |conn| match crate::orders::get(conn, &number) {
                Ok(o) => Ok(Some(o)),
                Err(crate::orders::OrderError::NotFound(_)) => Ok(None),
                Err(e) => Err(anyhow::Error::new(e)),
            })
            .await?;
        let to = found.as_ref().and_then(|o| {
            let d = &o.details;
            let addresses = std::iter::once(&d.billing_address).chain(&d.delivery_address);
            addresses
                .filter_map(|a| a.email.as_deref().map(|e| (e.trim().to_string(), a)))
                .find(|(e, _)| !e.is_empty())
        });
        let Some((address, a)) = to else {
            let note = format!("order {} has no customer e-mail address", task.subject);
            tracing::info!(order = %task.subject, "{note}; no confirmation is sent");
            return self
                .skip(lease, CUSTOMER_CONFIRM, vec![task], &note, d)
                .await;
        };
        let customer = Customer {
            order_number: task.subject.clone(),
            first_name: a.first_name.clone(),
            last_name: a.last_name.clone(),
        };
        let text = match &self.settings.alerts.customer_template {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(t) => mail::customer(&t, &customer),
                Err(e) => {
                    let why = format!(
                        "cannot read alerts.customer_template {}: {e}; fix the file or unset it",
                        path.display()
                    );
                    return self
                        .failed(lease, vec![task], "customer mail", why, now, d)
                        .await;
                }
            },
            None => mail::customer(mail::CUSTOMER_TEMPLATE, &customer),
        };
        let mid = message_id(&self.settings.alerts.from);
        match self.send(&[address], &text, &mid, None).await {
            Ok(()) => {
                tracing::info!(order = %task.subject, "customer confirmation of order {} sent", task.subject);
                metrics::counter!(crate::metrics::CUSTOMER_MAILS, "outcome" => "sent").increment(1);
                let (ids, owner) = (vec![task.id], lease.owner.clone());
                self.db(move |conn| Ok(outbound::settle_done(conn, &ids, &owner, now)?))
                    .await?;
                d.sent += 1;
                Ok(())
            }
            Err(e) => {
                metrics::counter!(crate::metrics::CUSTOMER_MAILS, "outcome" => "failed")
                    .increment(1);
                self.failed(lease, vec![task], &text.subject, e, now, d)
                    .await
            }
        }
    }

    /// Settles `tasks` whose mail did not go: failed with a backoff, lost after
    /// `mail_max_attempts`; logged with what to do.
    async fn failed(
        &self,
        lease: &Lease,
        tasks: Vec<Task>,
        subject: &str,
        error: String,
        now: NaiveDateTime,
        d: &mut Delivery,
    ) -> anyhow::Result<()> {
        let cfg = &self.settings.alerts;
        let backoff = Backoff {
            base_secs: cfg.mail_backoff_base_secs,
            ceiling_secs: cfg.mail_backoff_ceiling_secs,
        };
        let max = cfg.mail_max_attempts;
        let outcomes: Vec<(i64, Outcome)> = tasks
            .iter()
            .map(|t| {
                (
                    t.id,
                    Outcome::refused(t.attempts, max, backoff, error.clone(), now),
                )
            })
            .collect();
        match outcomes.first().map(|(_, o)| o) {
            Some(Outcome::Lost { attempts, .. }) => tracing::error!(subject, error = %error,
                "mail {subject:?} given up after {attempts} tries: {error}; check the [alerts] SMTP \
                 settings with `wharf check`"),
            Some(o) => {
                let at = o
                    .attempts_and_due()
                    .1
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string());
                tracing::warn!(subject, error = %error,
                    "mail {subject:?} not sent: {error}; it is sent again at {} UTC (check the \
                     [alerts] SMTP settings with `wharf check`)", at.unwrap_or_default());
            }
            None => {}
        }
        let owner = lease.owner.clone();
        self.db(move |conn| {
            db::write_tx(conn, |conn| {
                for (id, o) in &outcomes {
                    outbound::settle(conn, *id, &owner, o, None, now)?;
                }
                Ok(())
            })
        })
        .await?;
        d.failed += 1;
        d.last_error = Some(error);
        Ok(())
    }

    /// Marks `tasks` skipped with `note`, and lets go of them.
    async fn skip(
        &self,
        lease: &Lease,
        kind: TaskKind,
        tasks: Vec<Task>,
        note: &str,
        d: &mut Delivery,
    ) -> anyhow::Result<()> {
        if tasks.is_empty() {
            return Ok(());
        }
        d.skipped += tasks.len();
        let (owner, note) = (lease.owner.clone(), note.to_string());
        self.db(move |conn| {
            db::write_tx(conn, |conn| {
                let now = db::now();
                for task in &tasks {
                    outbound::skip(conn, kind, &task.subject, &note, now)?;
                }
                let ids: Vec<i64> = tasks.iter().map(|t| t.id).collect();
                outbound::release(conn, &ids, &owner, None)?;
                Ok(())
            })
        })
        .await
    }

    /// Sends one mail to `to` within `send_timeout_secs`. The error says what happened, for the
    /// task's `last_error` and the log (never the password).
    async fn send(
        &self,
        to: &[String],
        text: &Text,
        message_id: &str,
        thread: Option<&str>,
    ) -> Result<(), String> {
        let cfg = &self.settings.alerts;
        let mail = build(&cfg.from, to, text, message_id, thread)?;
        let transport = super::transport(cfg)
            .map_err(|e| format!("cannot use SMTP server {}: {e}", cfg.smtp_host))?;
        let secs = cfg.send_timeout_secs.max(1);
        let server = format!("{}:{}", cfg.smtp_host.trim(), cfg.port());
        match tokio::time::timeout(Duration::from_secs(secs), transport.send(mail)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!(
                "the SMTP server {server} did not take the mail: {e}"
            )),
            Err(_) => Err(format!(
                "the SMTP server {server} did not answer within {secs} s (alerts.send_timeout_secs)"
            )),
        }
    }
}

/// The mail itself: plain text, to every address of `to`, threaded under `thread` when given.
fn build(
    from: &str,
    to: &[String],
    text: &Text,
    message_id: &str,
    thread: Option<&str>,
) -> Result<Message, String> {
    let from: Mailbox = from
        .parse()
        .map_err(|e| format!("alerts.from {from:?} is not a mail address: {e}"))?;
    let mut b = Message::builder()
        .from(from)
        .subject(text.subject.clone())
        .message_id(Some(message_id.to_string()))
        .header(ContentType::TEXT_PLAIN);
    for address in to {
        let mbox: Mailbox = address
            .parse()
            .map_err(|e| format!("{address:?} is not a mail address: {e}"))?;
        b = b.to(mbox);
    }
    if let Some(parent) = thread {
        b = b
            .in_reply_to(parent.to_string())
            .references(parent.to_string());
    }
    b.body(text.body.clone())
        .map_err(|e| format!("the mail could not be written: {e}"))
}

/// A new Message-ID on the domain of the sender address.
fn message_id(from: &str) -> String {
    let domain = from
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('>').trim())
        .filter(|d| !d.is_empty())
        .unwrap_or("wharf.localhost");
    format!("<wharf.{}@{domain}>", &crate::auth::random_secret()[..24])
}

/// Starts delivery when mails are on: a run every `check_interval_secs` until `stop` turns true,
/// each recorded as [`Job::Mail`].
pub fn spawn(
    pool: &Pool,
    settings: &Arc<Settings>,
    stop: &watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    if !settings.alerts.mails_on() {
        return None;
    }
    let mailer = Mailer::new(pool.clone(), settings.clone());
    let (pool, mut stop) = (pool.clone(), stop.clone());
    let every = Duration::from_secs(settings.alerts.check_interval_secs.max(1));
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                break;
            }
            let outcome = match mailer.run_once(db::now()).await {
                Ok(d) => match d.last_error {
                    Some(e) => Err(anyhow::anyhow!(e)),
                    None => Ok(()),
                },
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "mail delivery failed; it runs again at the next interval");
                    Err(e)
                }
            };
            let pool = pool.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Ok(mut conn) = pool.get() {
                    let _ = runs::record(&mut conn, Job::Mail, &outcome, db::now());
                }
            })
            .await;
        }
    }))
}

/// How many mail tasks are due or waiting for their retry (pending or failed).
pub fn pending(conn: &mut DbConnection) -> QueryResult<i64> {
    t::table
        .filter(t::channel.eq(alerts::SMTP))
        .filter(t::state.eq_any(outbound::TaskState::words(outbound::TaskState::DUE)))
        .count()
        .get_result(conn)
}
