//! A real SFTP server for the file channel tests: Debian's OpenSSH `sshd` on a loopback port, with
//! a host key and a client key generated per test, `internal-sftp` only, logging in an
//! unprivileged user (`wharf-sftp`, which `.ci/run` creates) whose files live in a fresh folder.
//! When the tests do not run as root, sshd runs as the current user and logs in that user.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wharf::config::{ChannelKind, ChannelSettings};

/// The login the tests' sshd lets in when the tests run as root.
pub const SFTP_USER: &str = "wharf-sftp";

/// A running sshd and its keys.
pub struct Sshd {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The login.
    pub user: String,
    /// The folder the login's files live in (absolute): `out/` and `in/` are made in it.
    pub root: PathBuf,
    /// The client's private key.
    pub key_file: PathBuf,
    /// A known_hosts file listing the server.
    pub known_hosts: PathBuf,
    /// The host key's SHA256 fingerprint.
    pub fingerprint: String,
    conf: tempfile::TempDir,
    _data: tempfile::TempDir,
    child: Option<Child>,
    owner: Option<(u32, u32)>,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn keygen(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "wharf-test", "-f"])
        .arg(path));
}

/// The uid and gid of `user` from /etc/passwd.
fn ids_of(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user))
            .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
    })
}

fn is_root() -> bool {
    run(Command::new("id").arg("-u")).trim() == "0"
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sshd {
    /// Starts a new server with fresh keys and an empty folder holding `out/` and `in/`.
    pub fn start() -> Sshd {
        let (user, owner) = if is_root() {
            let ids = ids_of(SFTP_USER).unwrap_or_else(|| {
                panic!("the SFTP tests log in as {SFTP_USER}: create it with `useradd --system --create-home {SFTP_USER} && usermod -p '*' {SFTP_USER}` (.ci/run does)")
            });
            std::fs::create_dir_all("/run/sshd").unwrap();
            (SFTP_USER.to_string(), Some(ids))
        } else {
            (run(Command::new("id").arg("-un")).trim().to_string(), None)
        };
        let conf = tempfile::tempdir().unwrap();
        std::fs::set_permissions(conf.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = tempfile::tempdir().unwrap();
        let key_file = conf.path().join("client_ed25519");
        keygen(&key_file);
        let authorized = conf.path().join("authorized_keys");
        std::fs::copy(key_file.with_extension("pub"), &authorized).unwrap();
        std::fs::set_permissions(&authorized, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut sshd = Sshd {
            port: free_port(),
            user,
            root: data.path().to_path_buf(),
            key_file,
            known_hosts: conf.path().join("known_hosts"),
            fingerprint: String::new(),
            conf,
            _data: data,
            child: None,
            owner,
        };
        for d in ["", "out", "in"] {
            sshd.mkdir(d);
        }
        sshd.new_host_key();
        sshd.write_config();
        sshd.launch();
        sshd
    }

    fn host_key(&self) -> PathBuf {
        self.conf.path().join("host_ed25519")
    }

    /// Makes a new host key (and known_hosts, fingerprint) — the server then shows a changed key
    /// once restarted.
    pub fn new_host_key(&mut self) {
        keygen(&self.host_key());
        let public = std::fs::read_to_string(self.host_key().with_extension("pub")).unwrap();
        let mut parts = public.split_whitespace();
        let (kind, blob) = (parts.next().unwrap(), parts.next().unwrap());
        std::fs::write(
            &self.known_hosts,
            format!("[127.0.0.1]:{} {kind} {blob}\n", self.port),
        )
        .unwrap();
        let listed = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.host_key().with_extension("pub")));
        self.fingerprint = listed.split_whitespace().nth(1).unwrap().to_string();
    }

    fn write_config(&self) {
        let c = self.conf.path();
        let text = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile none\n\
             AuthorizedKeysFile {ak}\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nAllowUsers {user}\n\
             Subsystem sftp internal-sftp\nForceCommand internal-sftp\nLogLevel ERROR\n",
            port = self.port,
            hk = self.host_key().display(),
            ak = c.join("authorized_keys").display(),
            user = self.user,
        );
        std::fs::write(c.join("sshd_config"), text).unwrap();
    }

    fn launch(&mut self) {
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(self.conf.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Its log (a line per readiness probe below, and any refusal) stays in the test's folder.
            .stderr(std::fs::File::create(self.conf.path().join("sshd.log")).unwrap())
            .spawn()
            .expect("/usr/sbin/sshd (Debian's openssh-server; .ci/run installs it)");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (connections are refused until [`Sshd::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd still listens"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same port, with whatever host key it now has.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// A file channel named `name` on this server: key login, the host key pinned by
    /// fingerprint, order files to `out/`, shipment files from `in/`, every minute.
    pub fn channel(&self, name: &str) -> ChannelSettings {
        ChannelSettings {
            name: name.into(),
            kind: ChannelKind::Sftp,
            host: "127.0.0.1".into(),
            port: self.port,
            user: self.user.clone(),
            key_file: self.key_file.display().to_string(),
            host_key_fingerprint: self.fingerprint.clone(),
            export_dir: self.path("out"),
            import_dir: self.path("in"),
            export_schedule: "0 0 1 1 *".into(),
            import_schedule: "0 0 1 1 *".into(),
            timeout_secs: 5,
            lease_secs: 10,
            ..ChannelSettings::default()
        }
    }

    /// The absolute path of `rel` in the login's folder.
    pub fn path(&self, rel: &str) -> String {
        self.root.join(rel).display().to_string()
    }

    fn own(&self, path: &Path) {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
        }
    }

    /// Makes folder `rel` (owned by the login).
    pub fn mkdir(&self, rel: &str) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(&p).unwrap();
        self.own(&p);
    }

    /// Puts a file at `rel` as the warehouse would (owned by the login).
    pub fn put(&self, rel: &str, bytes: impl AsRef<[u8]>) {
        let p = self.root.join(rel);
        std::fs::write(&p, bytes).unwrap();
        self.own(&p);
    }

    /// The names of the files in folder `rel`, sorted (none when it does not exist).
    pub fn files(&self, rel: &str) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.root.join(rel)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = dir
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The bytes of file `rel`.
    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.root.join(rel)).unwrap()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
