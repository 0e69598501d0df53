//! The proxy process: a listener per route, each connection forwarded as the [`Proxy`]'s
//! settings say (through `pipe`), and the control port's line protocol.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::command::{Admit, Command};
use super::pipe;
use super::state::Proxy;

/// One listener's destination.
#[derive(Debug, Clone)]
pub struct Route {
    pub listen: SocketAddr,
    pub target: String,
}

/// The proxy process: binds the control port and every route, then serves until killed.
pub async fn run(control: SocketAddr, routes: Vec<Route>) -> std::io::Result<()> {
    let proxy = Proxy::new();
    let control = TcpListener::bind(control).await?;
    let mut listeners = Vec::new();
    for route in routes {
        let listener = TcpListener::bind(route.listen)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("binding {}: {e}", route.listen)))?;
        eprintln!("proxy: {} -> {}", route.listen, route.target);
        listeners.push((listener, route.target));
    }
    for (listener, target) in listeners {
        tokio::spawn(serve_route(proxy.clone(), listener, target));
    }
    eprintln!("proxy: control on {}", control.local_addr()?);
    serve_control(proxy, control).await;
    Ok(())
}

/// Accepts connections on `listener` and forwards each to `target` as the settings say.
pub async fn serve_route(proxy: Arc<Proxy>, listener: TcpListener, target: String) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(e) => {
                // Out of descriptors and the like: wait instead of spinning.
                eprintln!("proxy: accept on {:?}: {e}", listener.local_addr());
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        proxy.counters.accepted.fetch_add(1, Ordering::Relaxed);
        let proxy = proxy.clone();
        let target = target.clone();
        tokio::spawn(async move {
            proxy.counters.active.fetch_add(1, Ordering::Relaxed);
            match proxy.settings().admit {
                Admit::Open => pipe::forward(&proxy, client, &target).await,
                Admit::Refuse => {
                    proxy.counters.refused.fetch_add(1, Ordering::Relaxed);
                    pipe::reset(&client);
                }
                Admit::Blackhole => {
                    proxy.counters.blackholed.fetch_add(1, Ordering::Relaxed);
                    pipe::blackhole(&proxy, client).await;
                }
            }
            proxy.counters.active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Serves the control port: one command line per connection, one answer line.
pub async fn serve_control(proxy: Arc<Proxy>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), control(&proxy, stream)).await;
        });
    }
}

async fn control(proxy: &Arc<Proxy>, stream: TcpStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let answer = match Command::parse(&line) {
        Ok(command) => {
            let answer = proxy.apply(command);
            eprintln!("proxy: {} -> {answer}", line.trim());
            answer
        }
        Err(e) => format!("error {e}"),
    };
    write.write_all(format!("{answer}\n").as_bytes()).await?;
    write.shutdown().await
}
