//! A real SMTP server for the tests (`tests/clients/smtp_server.py`: aiosmtpd on loopback, delivering
//! into a Maildir), and the mails it received, read back from that Maildir.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running SMTP server; killed when dropped. Its Maildir outlives a restart.
pub struct SmtpServer {
    child: Option<Child>,
    /// The port it listens on (kept across [`SmtpServer::stop`] and [`SmtpServer::restart`]).
    pub port: u16,
    dir: tempfile::TempDir,
    auth: Option<(String, String)>,
}

impl SmtpServer {
    /// Starts one without authentication on a free port.
    pub fn start() -> SmtpServer {
        SmtpServer::launch(tempfile::tempdir().unwrap(), 0, None)
    }

    /// Starts one that requires AUTH with `user` and `password` (PLAIN/LOGIN, no TLS).
    pub fn start_with_auth(user: &str, password: &str) -> SmtpServer {
        let auth = Some((user.to_string(), password.to_string()));
        SmtpServer::launch(tempfile::tempdir().unwrap(), 0, auth)
    }

    fn launch(dir: tempfile::TempDir, port: u16, auth: Option<(String, String)>) -> SmtpServer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/smtp_server.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg(dir.path().join("maildir"))
            .arg("--port")
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some((u, p)) = &auth {
            cmd.arg("--user").arg(u).arg("--password").arg(p);
        }
        let mut child = cmd
            .spawn()
            .expect("start tests/clients/smtp_server.py (aiosmtpd)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| {
                panic!("smtp_server.py did not start (is aiosmtpd installed?): {line:?}")
            })
            .parse()
            .unwrap();
        SmtpServer {
            child: Some(child),
            port,
            dir,
            auth,
        }
    }

    /// Stops it (connections are refused until [`SmtpServer::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, with the same Maildir.
    pub fn restart(&mut self) {
        self.stop();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let again = SmtpServer::launch(dir, self.port, self.auth.clone());
        *self = again;
    }

    fn maildir(&self) -> PathBuf {
        self.dir.path().join("maildir")
    }

    /// Every mail received so far, oldest first.
    pub fn mails(&self) -> Vec<Mail> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir().join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                let modified = e.metadata().and_then(|m| m.modified()).unwrap();
                files.push((modified, e.path()));
            }
        }
        files.sort();
        files.iter().map(|(_, p)| Mail::read(p)).collect()
    }

    /// Waits up to `limit` until at least `n` mails arrived; returns them all. Panics with what
    /// arrived when fewer did.
    pub fn wait_for_mails(&self, n: usize, limit: Duration) -> Vec<Mail> {
        let until = Instant::now() + limit;
        loop {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            if Instant::now() > until {
                panic!(
                    "expected {n} mails within {limit:?}, got {}: {mails:#?}",
                    mails.len()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A received mail: its headers (unfolded, names lower-cased) and its body as text.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Header name (lower case) and value, in order.
    pub headers: Vec<(String, String)>,
    /// The body (quoted-printable decoded when the mail says so).
    pub body: String,
}

impl Mail {
    fn read(path: &Path) -> Mail {
        let raw = std::fs::read_to_string(path).unwrap().replace("\r\n", "\n");
        let (head, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let mut mail = Mail {
            headers,
            body: body.to_string(),
        };
        if mail
            .header("content-transfer-encoding")
            .is_some_and(|e| e.eq_ignore_ascii_case("quoted-printable"))
        {
            mail.body = decode_quoted_printable(&mail.body);
        }
        mail
    }

    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The subject.
    pub fn subject(&self) -> &str {
        self.header("subject").unwrap_or("")
    }
}

fn decode_quoted_printable(s: &str) -> String {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn alerts_to(server: &SmtpServer) -> wharf::config::AlertSettings {
    wharf::config::AlertSettings {
        smtp_host: "127.0.0.1".into(),
        smtp_port: Some(server.port),
        smtp_tls: wharf::config::SmtpTls::None,
        from: "wharf@example.test".into(),
        to: vec!["ops@example.test".into()],
        ..Default::default()
    }
}

async fn send(cfg: &wharf::config::AlertSettings, subject: &str) -> Result<(), String> {
    use lettre::AsyncTransport;
    let mail = lettre::Message::builder()
        .from(cfg.from.parse().unwrap())
        .to(cfg.to[0].parse().unwrap())
        .subject(subject)
        .body("hello from wharf — ünïcode too".to_string())
        .unwrap();
    let transport = wharf::channels::smtp::transport(cfg).map_err(|e| e.to_string())?;
    transport
        .send(mail)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_smtp_transport_delivers_to_the_test_server() {
    let server = SmtpServer::start();
    send(&alerts_to(&server), "first").await.unwrap();
    let mails = server.wait_for_mails(1, Duration::from_secs(10));
    assert_eq!(mails[0].subject(), "first");
    assert_eq!(mails[0].header("to"), Some("ops@example.test"));
    assert!(mails[0].body.contains("ünïcode"), "{:?}", mails[0].body);
}

#[tokio::test]
async fn smtp_credentials_are_checked_and_a_stopped_server_refuses() {
    let mut server = SmtpServer::start_with_auth("alerts", "s3cret-pass");
    let mut cfg = alerts_to(&server);
    cfg.smtp_username = "alerts".into();
    cfg.smtp_password = "wrong".into();
    let refused = send(&cfg, "bad password").await.unwrap_err();
    assert!(
        refused.contains("535") || refused.to_lowercase().contains("auth"),
        "{refused}"
    );
    cfg.smtp_password = "s3cret-pass".into();
    send(&cfg, "good password").await.unwrap();
    server.stop();
    assert!(send(&cfg, "while down").await.is_err());
    server.restart();
    send(&cfg, "back").await.unwrap();
    let subjects: Vec<String> = server
        .wait_for_mails(2, Duration::from_secs(10))
        .iter()
        .map(|m| m.subject().to_string())
        .collect();
    assert_eq!(subjects, ["good password", "back"]);
}
