//! `dovetail dev --nodes N`: a local cluster of N real `dovetail serve` processes on 127.0.0.1,
//! data under one directory, bootstrapped by node 1. Prints the API URLs and an example, and
//! stops every node (SIGTERM, so they drain) on Ctrl-C.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

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
}

/// Runs the dev cluster until Ctrl-C (or SIGTERM).
pub async fn run(config: DevConfig) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let secret = random_hex()?;
    let client_token = random_hex()?;
    let admin_token = random_hex()?;
    let api = |i: u64| format!("127.0.0.1:{}", config.base_port as u64 + i);
    let peer = |i: u64| format!("127.0.0.1:{}", config.base_port as u64 + 100 + i);
    let mut children: Vec<Child> = Vec::new();
    for i in 1..=config.nodes {
        let dir = config.data_dir.join(format!("node{i}"));
        std::fs::create_dir_all(&dir)?;
        let log = std::fs::File::create(dir.join("node.log"))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("serve")
            .args(["--node-id", &i.to_string()])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--api-listen", &api(i), "--peer-listen", &peer(i)])
            .args(["--groups", &config.groups.to_string()])
            .env("DOVETAIL_CLUSTER_SECRET", &secret)
            .env("DOVETAIL_CLIENT_TOKEN", &client_token)
            .env("DOVETAIL_ADMIN_TOKEN", &admin_token)
            .stdout(Stdio::null())
            .stderr(log);
        for j in (1..=config.nodes).filter(|&j| j != i) {
            cmd.args(["--peer", &format!("{j}={}/{}", peer(j), api(j))]);
        }
        if i == 1 {
            cmd.arg("--bootstrap");
        }
        children.push(cmd.spawn()?);
    }
    let ready = wait_for_leaders(&api(1), &admin_token, config.groups, Duration::from_secs(60)).await;
    if let Err(e) = ready {
        stop(&mut children).await;
        anyhow::bail!(
            "cluster did not come up: {e} (see {}/node*/node.log)",
            config.data_dir.display()
        );
    }
    println!(
        "Dovetail dev cluster: {} nodes, {} groups, data in {}",
        config.nodes,
        config.groups,
        config.data_dir.display()
    );
    for i in 1..=config.nodes {
        println!(
            "  node {i}: http://{}   (peer {}, log {}/node{i}/node.log)",
            api(i),
            peer(i),
            config.data_dir.display()
        );
    }
    let env_file = config.data_dir.join("dev.env");
    write_private(
        &env_file,
        &format!(
            "export DOVETAIL_CLIENT_TOKEN={client_token}\nexport DOVETAIL_ADMIN_TOKEN={admin_token}\nexport DOVETAIL_CLUSTER_SECRET={secret}\n"
        ),
    )?;
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
    println!("Ctrl-C stops every node.");
    shutdown_signal().await;
    println!("stopping...");
    stop(&mut children).await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
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

/// 24 random bytes in hex: a fresh secret.
fn random_hex() -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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
