//! The SFTP client against the real sshd: the calls the file channels make, and the host key
//! policies (a changed key is refused whatever the policy).

use wharf::channels::sftp::client::{self, HostKeyPolicy, RemoteError};

use crate::sshd::Sshd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_written_listed_renamed_read_and_removed() {
    wharf::tls::install_crypto_provider();
    let sshd = Sshd::start();
    let c = sshd.channel("files");
    let policy = HostKeyPolicy::of(&c, None);
    let remote = client::connect(&c, policy).await.unwrap();
    assert_eq!(remote.fingerprint, sshd.fingerprint);
    let out = sshd.path("out");
    let tmp = client::join(&out, ".a.xml.part");
    assert_eq!(remote.write(&tmp, b"<orders/>").await.unwrap(), 9);
    let done = client::join(&out, "a.xml");
    remote.rename(&tmp, &done).await.unwrap();
    assert_eq!(sshd.files("out"), vec!["a.xml"]);
    assert_eq!(sshd.read("out/a.xml"), b"<orders/>");
    sshd.put("in/b.xml", "<shipment/>");
    let listed = remote.list(&sshd.path("in")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].size), ("b.xml", 11));
    // A rename never replaces: the second file keeps its temporary name.
    remote.write(&tmp, b"<orders></orders>").await.unwrap();
    assert!(matches!(
        remote.rename(&tmp, &done).await,
        Err(RemoteError::Exists { .. })
    ));
    assert!(matches!(
        remote.rename(&client::join(&out, "gone.xml"), &done).await,
        Err(RemoteError::NotFound { .. })
    ));
    let listed = remote.list(&out).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(
        remote.read_capped(&done, 100).await.unwrap(),
        Ok(b"<orders/>".to_vec())
    );
    assert_eq!(remote.read_capped(&done, 4).await.unwrap(), Err(5));
    remote.remove(&done).await.unwrap();
    remote.remove(&done).await.unwrap();
    assert!(matches!(
        remote.list(&sshd.path("nowhere")).await,
        Err(RemoteError::NoFolder { .. })
    ));
    remote
        .ensure_dir(&client::join(&sshd.path("in"), "processing"))
        .await
        .unwrap();
    remote
        .ensure_dir(&client::join(&sshd.path("in"), "processing"))
        .await
        .unwrap();
    assert!(sshd.root.join("in/processing").is_dir());
    remote.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_or_unknown_host_key_is_refused() {
    wharf::tls::install_crypto_provider();
    let mut sshd = Sshd::start();
    let mut c = sshd.channel("files");
    let old = sshd.fingerprint.clone();
    c.host_key_fingerprint.clear();
    c.known_hosts = sshd.known_hosts.display().to_string();
    let known = HostKeyPolicy::of(&c, None);
    client::connect(&c, known.clone())
        .await
        .unwrap()
        .close()
        .await;
    sshd.new_host_key();
    sshd.restart();
    let e = client::connect(&c, HostKeyPolicy::Fingerprint(old.clone()))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, RemoteError::HostKeyChanged { .. }), "{e}");
    assert!(e.to_string().contains(&old), "{e}");
    let e = client::connect(&c, HostKeyPolicy::FirstUse(Some(old.clone())))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, RemoteError::HostKeyChanged { .. }), "{e}");
    // known_hosts now lists the new key; an empty file lists nothing.
    client::connect(&c, known).await.unwrap().close().await;
    std::fs::write(&sshd.known_hosts, "").unwrap();
    let e = client::connect(&c, HostKeyPolicy::of(&c, None))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, RemoteError::HostKeyUnknown { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_or_a_wrong_key_is_a_connection_trouble() {
    wharf::tls::install_crypto_provider();
    let mut sshd = Sshd::start();
    let mut c = sshd.channel("files");
    let other = tempfile::tempdir().unwrap();
    let key = other.path().join("k");
    std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    c.key_file = key.display().to_string();
    let e = client::connect(&c, HostKeyPolicy::of(&c, None))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, RemoteError::Auth { .. }), "{e}");
    assert_eq!(e.reaching(), Some(client::Trouble::Connection));
    sshd.stop();
    let e = client::connect(&c, HostKeyPolicy::of(&c, None))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, RemoteError::Connect { .. }), "{e}");
}
