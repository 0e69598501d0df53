//! `dovetail dev --nodes N`: a local cluster of N real `dovetail serve` processes on 127.0.0.1,
//! data under one directory, bootstrapped by node 1. Prints the API URLs and an example, and
//! stops every node (SIGTERM, so they drain) on Ctrl-C or SIGTERM.
//!
//! For scripts (`scripts/bench/*`, `scripts/bench-vs-etcd.sh`): `--spare-nodes K` starts K more
//! nodes outside the cluster (to be added as learners), flags after `--` go to every node's
//! `serve`, and once every group has a leader `dev` writes `<data-dir>/dev.env` (the tokens and
//! the cluster secret as `export` lines, mode 0600) and then `<data-dir>/dev.pids` (`ID PID` per
//! line), so a script that started `dev` knows when the cluster is up, how to talk to it and
//! which processes are its nodes. Both files of an earlier run are removed first.
//!
//! Every member also serves LMTP on its API port + 200 (`--lmtp-listen`) and IMAP on its API
//! port + 300 (`--imap-listen`, plaintext logins allowed: loopback only), both printed. IMAP
//! logins need users: unless `-- --passwd-file FILE` is passed, `dev` writes `<data-dir>/passwd`
//! with one user, `alice`, and a fresh password it prints (LMTP then takes mail for her only).
//!
//! Node i's command line comes from [`launch::ClusterLayout`], which the multi-node tests use too.

pub mod launch;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

pub use self::launch::{ClusterLayout, NodeAddrs, Secrets, Start};

/// The env file `dev` writes into its data directory once the cluster is up.
pub const ENV_FILE: &str = "dev.env";
/// The node pids `dev` writes into its data directory after [`ENV_FILE`]: `ID PID` per line.
pub const PIDS_FILE: &str = "dev.pids";

#[derive(Debug, Clone, Args)]
pub struct DevConfig {
    /// Number of nodes (3 or 5 make sense: a majority survives 1 or 2 failures).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub nodes: u64,
    /// Data directory; node i keeps its files in `<dir>/node<i>`.
    #[arg(long, default_value = "./dovetail-data")]
    pub data_dir: PathBuf,
    /// API ports are base+i, peer ports base+100+i.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// Number of groups.
    #[arg(long, default_value_t = 16)]
    pub groups: u32,
    /// More nodes (ids N+1, ...) started outside the cluster: in no group until added with
    /// `POST /admin/members/learners`.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=9))]
    pub spare_nodes: u64,
    /// Flags for every node's `dovetail serve`, after `--` (e.g. `-- --snapshot-interval 200`).
    #[arg(last = true)]
    pub serve_flags: Vec<String>,
}

/// Runs the dev cluster until Ctrl-C (or SIGTERM).
pub async fn run(config: DevConfig) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let secrets = Secrets::random()?;
    let total = config.nodes + config.spare_nodes;
    anyhow::ensure!(
        u64::from(config.base_port) + 200 + total <= u64::from(u16::MAX),
        "--base-port {} leaves no room for {total} nodes' peer and LMTP ports (base + 100 + i, base + 200 + i)",
        config.base_port
    );
    let layout = ClusterLayout::on_loopback(
        config.nodes,
        config.spare_nodes,
        config.base_port,
        &config.data_dir,
        config.groups,
        config.serve_flags.clone(),
    );
    let api = |i: u64| layout.node(i).api.clone();
    let peer = |i: u64| layout.node(i).peer.clone();
    // A script waiting for these files must not take an earlier run's for this one's.
    for stale in [ENV_FILE, PIDS_FILE] {
        match std::fs::remove_file(config.data_dir.join(stale)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    // Installed before any node starts: a signal during start-up stops the nodes started so far.
    let shutdown = shutdown_signals()?;
    tokio::pin!(shutdown);
    let alice = if config.serve_flags.iter().any(|f| f.starts_with("--passwd-file")) {
        None
    } else {
        Some(write_dev_user(&config.data_dir)?)
    };
    let users_flags: Vec<String> = match &alice {
        Some((path, _)) => vec!["--passwd-file".into(), path.display().to_string()],
        None => Vec::new(),
    };
    let mut children: Vec<Child> = Vec::new();
    for i in 1..=total {
        let (lmtp, imap) = (lmtp_addr(config.base_port, i), imap_addr(config.base_port, i));
        match spawn(&layout, &exe, i, &secrets, &lmtp, &imap, &users_flags) {
            Ok(child) => children.push(child),
            Err(e) => {
                stop(&mut children).await;
                return Err(e.context(format!("starting node {i}")));
            }
        }
    }
    let ready = tokio::select! {
        ready = wait_until_up(&layout, &secrets.admin_token) => ready,
        (i, status) = first_exit(&mut children) => Err(anyhow::anyhow!("node {i} exited ({status})")),
        () = &mut shutdown => {
            println!("stopping...");
            stop(&mut children).await;
            return Ok(());
        }
    };
    if let Err(e) = ready {
        stop(&mut children).await;
        anyhow::bail!(
            "cluster did not come up: {e} (see {}/node*/node.log)",
            config.data_dir.display()
        );
    }
    // Live nodes' pids only: a script signals them.
    let mut pids = String::new();
    let mut exited = None;
    for (i, child) in (1..).zip(children.iter_mut()) {
        match (child.try_wait()?, child.id()) {
            (None, Some(pid)) => pids += &format!("{i} {pid}\n"),
            (status, _) => {
                exited = Some((i, status));
                break;
            }
        }
    }
    if let Some((i, status)) = exited {
        stop(&mut children).await;
        anyhow::bail!(
            "node {i} exited ({status:?}; see {}/node{i}/node.log)",
            config.data_dir.display()
        );
    }
    println!(
        "Dovetail dev cluster: {} nodes, {} groups, data in {}",
        config.nodes,
        config.groups,
        config.data_dir.display()
    );
    for i in 1..=total {
        let spare = if layout.is_member(i) {
            ""
        } else {
            "; spare: in no group until added as a learner"
        };
        println!(
            "  node {i}: http://{}   (LMTP {}, IMAP {}, peer {}, log {}/node{i}/node.log{spare})",
            api(i),
            lmtp_addr(config.base_port, i),
            imap_addr(config.base_port, i),
            peer(i),
            config.data_dir.display()
        );
    }
    let env_file = config.data_dir.join(ENV_FILE);
    write_private(&env_file, &secrets.env_file())?;
    // Renamed into place: a script that sees the file sees all of it.
    let pids_file = config.data_dir.join(PIDS_FILE);
    let unfinished = pids_file.with_extension("pids.tmp");
    std::fs::write(&unfinished, pids)?;
    std::fs::rename(&unfinished, &pids_file)?;
    let (client_token, admin_token) = (&secrets.client_token, &secrets.admin_token);
    println!(
        "Fresh secrets for this run (also in {}, mode 0600):",
        env_file.display()
    );
    println!("  export DOVETAIL_CLIENT_TOKEN={client_token}   # client API, /v1/...");
    println!("  export DOVETAIL_ADMIN_TOKEN={admin_token}    # admin API, /metrics, dashboard");
    println!("  (the cluster secret, for peers only, is in the file)");
    println!("Dashboard: http://{}/#token={admin_token}", api(1));
    println!("Try (in a shell with the exports above):");
    let auth = "-H \"Authorization: Bearer $DOVETAIL_CLIENT_TOKEN\"";
    println!("  curl -s -XPOST http://{}/v1/users/alice/mailboxes {auth} -H 'content-type: application/json' -d '{{\"name\":\"INBOX\"}}'", api(1));
    println!(
        "  curl -s -XPOST http://{}/v1/users/alice/mailboxes/INBOX/messages {auth} -H 'content-type: application/json' \\\n    -d '{{\"messages\":[{{\"guid\":\"00112233445566778899aabbccddeeff\",\"size\":1234}}]}}'",
        api(config.nodes.min(2))
    );
    println!(
        "  curl -s http://{}/v1/users/alice/mailboxes/INBOX {auth}",
        api(config.nodes)
    );
    println!(
        "  cargo run --release -- ctl status --node http://{}   # reads DOVETAIL_ADMIN_TOKEN",
        api(1)
    );
    println!(
        "  python3 -c \"import smtplib; s = smtplib.LMTP('127.0.0.1', {}); s.sendmail('me@example.com', ['alice@example.com'], b'Subject: hi\\r\\n\\r\\nhello\\r\\n')\"",
        u64::from(config.base_port) + 200 + config.nodes.min(2)
    );
    if let Some((path, password)) = &alice {
        println!(
            "IMAP and LMTP user: alice, password {password} (in {}; `dovetail user hash` makes more lines)",
            path.display()
        );
        println!(
            "  python3 -c \"import imaplib; m = imaplib.IMAP4('127.0.0.1', {}); m.login('alice', '{password}'); print(m.select('INBOX')); print(m.fetch('1:*', '(FLAGS ENVELOPE)'))\"",
            u64::from(config.base_port) + 300 + config.nodes
        );
        println!(
            "  swaks --protocol LMTP --server 127.0.0.1:{} --to alice@example.com --from me@example.com",
            u64::from(config.base_port) + 200 + 1
        );
    }
    println!("Ctrl-C stops every node.");
    shutdown.await;
    println!("stopping...");
    stop(&mut children).await;
    Ok(())
}

/// Starts node `i` fresh, its stdout discarded and its stderr (the log) in `node<i>/node.log`.
fn spawn(
    layout: &ClusterLayout,
    exe: &Path,
    i: u64,
    secrets: &Secrets,
    lmtp: &str,
    imap: &str,
    extra: &[String],
) -> anyhow::Result<Child> {
    let dir = layout.node_dir(i);
    std::fs::create_dir_all(&dir)?;
    let log = std::fs::File::create(dir.join("node.log"))?;
    let mut command = Command::from(layout.command(exe, i, Start::Fresh, secrets));
    command.arg("--lmtp-listen").arg(lmtp);
    command
        .arg("--imap-listen")
        .arg(imap)
        .arg("--imap-allow-plaintext");
    command.args(extra);
    command.stdout(Stdio::null()).stderr(log);
    Ok(command.spawn()?)
}

/// Writes `<data_dir>/passwd` (mode 0600) with the user `alice` and a fresh random password;
/// returns its path and the password.
fn write_dev_user(data_dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    let mut raw = [0u8; 9];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("the OS random source: {e}"))?;
    let password: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let cost = crate::users::Cost::default_for(crate::users::Scheme::Argon2id);
    let field = crate::users::command::hash_field(password.as_bytes(), cost)?;
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join("passwd");
    write_private(&path, &format!("alice:{field}\n"))?;
    Ok((path, password))
}

/// Node `i`'s LMTP address in `dev`: 127.0.0.1, its API port + 200.
fn lmtp_addr(base_port: u16, i: u64) -> String {
    format!("127.0.0.1:{}", u64::from(base_port) + 200 + i)
}

/// Node `i`'s IMAP address in `dev`: 127.0.0.1, its API port + 300.
fn imap_addr(base_port: u16, i: u64) -> String {
    format!("127.0.0.1:{}", u64::from(base_port) + 300 + i)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    shutdown_signals()
        .expect("installing SIGINT and SIGTERM handlers")
        .await
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM after this call: the handlers are installed
/// here, not when the future is first polled.
fn shutdown_signals() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
        }
    })
}

async fn stop(children: &mut [Child]) {
    for child in children.iter() {
        if let Some(pid) = child.id() {
            // SIGTERM: the node drains and exits 0.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
    }
    for child in children.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut file, text.as_bytes())
}

/// The first node (id, status) to exit; polled every 200 ms.
async fn first_exit(children: &mut [Child]) -> (u64, std::process::ExitStatus) {
    loop {
        for (i, child) in (1..).zip(children.iter_mut()) {
            if let Ok(Some(status)) = child.try_wait() {
                return (i, status);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every group has a leader in node 1's view (60 s) and every spare node's API
/// answers (30 s each).
async fn wait_until_up(layout: &ClusterLayout, admin_token: &str) -> anyhow::Result<()> {
    wait_for_leaders(
        &layout.node(1).api,
        admin_token,
        layout.groups,
        Duration::from_secs(60),
    )
    .await?;
    for spare in layout.nodes.iter().filter(|n| !layout.is_member(n.id)) {
        wait_for_api(&spare.api, admin_token, Duration::from_secs(30))
            .await
            .map_err(|e| e.context(format!("spare node {}", spare.id)))?;
    }
    Ok(())
}

/// Polls `/admin/status` until every group reports a leader.
async fn wait_for_leaders(api: &str, admin_token: &str, groups: u32, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match http_get(api, "/admin/status", Some(admin_token)).await {
            Ok(body) => {
                let v: serde_json::Value = serde_json::from_str(&body)?;
                let led = v["groups"]
                    .as_array()
                    .map(|g| g.iter().filter(|g| !g["leader"].is_null()).count())
                    .unwrap_or(0);
                if led == groups as usize {
                    return Ok(());
                }
                last = format!("{led} of {groups} groups have a leader");
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("{last}")
}

/// Polls `/admin/status` until it answers 200.
async fn wait_for_api(api: &str, admin_token: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        match http_get(api, "/admin/status", Some(admin_token)).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => anyhow::bail!("{api}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A minimal HTTP/1.1 GET returning the body of a 200 response.
pub async fn http_get(addr: &str, path: &str, bearer: Option<&str>) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("malformed HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") {
        anyhow::bail!("{}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}
