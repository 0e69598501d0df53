//! The proxy against a local echo server: bytes pass unchanged and in order, latency delays
//! them by what was asked (measured round trips), `drop` resets live connections, `refuse` and
//! `blackhole` keep new ones from the peer, `clean` restores everything; the control port
//! speaks its line protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// An echo server on a free port: writes back whatever it reads.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A proxy in front of an echo server; returns the proxy and its listening address.
async fn proxied_echo() -> (Arc<Proxy>, SocketAddr) {
    let target = echo_server().await;
    let proxy = Proxy::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_route(proxy.clone(), listener, target.to_string()));
    (proxy, addr)
}

fn command(proxy: &Arc<Proxy>, line: &str) -> String {
    proxy.apply(Command::parse(line).unwrap())
}

/// Sends `message` and reads it back; returns the round-trip time.
async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<Duration> {
    let started = Instant::now();
    stream.write_all(message).await?;
    let mut back = vec![0u8; message.len()];
    stream.read_exact(&mut back).await?;
    assert_eq!(back, message);
    Ok(started.elapsed())
}

/// Whether the connection is dead: a read ends in an error (RST) or EOF within `limit`.
async fn is_dead(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(limit, stream.read(&mut byte)).await {
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

#[tokio::test]
async fn clean_proxy_forwards_bytes_both_ways_without_delay() {
    let (_proxy, addr) = proxied_echo().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Warm up, then measure.
    round_trip(&mut stream, b"hello").await.unwrap();
    let rtt = round_trip(&mut stream, b"again").await.unwrap();
    assert!(rtt < Duration::from_millis(50), "clean round trip took {rtt:?}");
    // A large transfer arrives whole and in order.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    round_trip(&mut stream, &big).await.unwrap();
}

#[tokio::test]
async fn latency_delays_each_direction_by_what_was_asked() {
    let (proxy, addr) = proxied_echo().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    round_trip(&mut stream, b"warm").await.unwrap();

    assert_eq!(command(&proxy, "latency both 100 0"), "ok");
    let rtt = round_trip(&mut stream, b"both").await.unwrap();
    assert!(
        rtt >= Duration::from_millis(200) && rtt < Duration::from_millis(400),
        "100 ms each way gave a round trip of {rtt:?}"
    );

    assert_eq!(command(&proxy, "clean"), "ok");
    assert_eq!(command(&proxy, "latency up 150 0"), "ok");
    let rtt = round_trip(&mut stream, b"up").await.unwrap();
    assert!(
        rtt >= Duration::from_millis(150) && rtt < Duration::from_millis(300),
        "150 ms up only gave {rtt:?}"
    );

    assert_eq!(command(&proxy, "clean"), "ok");
    assert_eq!(command(&proxy, "latency down 80 40"), "ok");
    for _ in 0..5 {
        let rtt = round_trip(&mut stream, b"down").await.unwrap();
        assert!(
            rtt >= Duration::from_millis(80) && rtt < Duration::from_millis(220),
            "80+0..40 ms down gave {rtt:?}"
        );
    }

    // Clean restores the undelayed path on the same connection.
    assert_eq!(command(&proxy, "clean"), "ok");
    let rtt = round_trip(&mut stream, b"clean").await.unwrap();
    assert!(rtt < Duration::from_millis(50), "after clean: {rtt:?}");
}

#[tokio::test]
async fn jitter_never_reorders_bytes() {
    let (proxy, addr) = proxied_echo().await;
    assert_eq!(command(&proxy, "latency both 5 30"), "ok");
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        for i in 0..300u32 {
            write.write_all(&i.to_be_bytes()).await.unwrap();
            if i % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        write
    });
    for i in 0..300u32 {
        let mut word = [0u8; 4];
        read.read_exact(&mut word).await.unwrap();
        assert_eq!(u32::from_be_bytes(word), i, "bytes reordered");
    }
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn drop_resets_live_connections_and_new_ones_work() {
    let (proxy, addr) = proxied_echo().await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    round_trip(&mut first, b"1").await.unwrap();
    round_trip(&mut second, b"2").await.unwrap();
    assert_eq!(command(&proxy, "drop"), "ok");
    assert!(
        is_dead(&mut first, Duration::from_secs(2)).await,
        "first survived drop"
    );
    assert!(
        is_dead(&mut second, Duration::from_secs(2)).await,
        "second survived drop"
    );
    // A reset, not an orderly close: a write soon fails as well.
    let mut failed = false;
    for _ in 0..20 {
        if first.write_all(b"x").await.is_err() {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(failed, "writing to a dropped connection kept succeeding");
    let mut third = TcpStream::connect(addr).await.unwrap();
    round_trip(&mut third, b"3").await.unwrap();
    // The count is taken when both pipes of a connection have ended.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !command(&proxy, "status").contains("\"reset_by_drop\":2") {
        assert!(Instant::now() < deadline, "{}", command(&proxy, "status"));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn refuse_resets_new_connections_until_clean_and_spares_old_ones() {
    let (proxy, addr) = proxied_echo().await;
    let mut old = TcpStream::connect(addr).await.unwrap();
    round_trip(&mut old, b"old").await.unwrap();
    assert_eq!(command(&proxy, "refuse"), "ok");
    let mut refused = TcpStream::connect(addr).await.unwrap();
    assert!(is_dead(&mut refused, Duration::from_secs(2)).await);
    round_trip(&mut old, b"still").await.unwrap();
    assert_eq!(command(&proxy, "clean"), "ok");
    let mut new = TcpStream::connect(addr).await.unwrap();
    round_trip(&mut new, b"new").await.unwrap();
}

#[tokio::test]
async fn a_timed_refuse_ends_by_itself() {
    let (proxy, addr) = proxied_echo().await;
    assert_eq!(command(&proxy, "refuse 1"), "ok");
    let mut refused = TcpStream::connect(addr).await.unwrap();
    assert!(is_dead(&mut refused, Duration::from_secs(2)).await);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(proxy.settings().admit, Admit::Open);
    let mut new = TcpStream::connect(addr).await.unwrap();
    round_trip(&mut new, b"open again").await.unwrap();
}

#[tokio::test]
async fn blackhole_swallows_new_connections_and_clean_resets_them() {
    let (proxy, addr) = proxied_echo().await;
    assert_eq!(command(&proxy, "blackhole"), "ok");
    let mut held = TcpStream::connect(addr).await.unwrap();
    held.write_all(b"anyone?").await.unwrap();
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), held.read(&mut byte))
            .await
            .is_err(),
        "a blackholed connection answered"
    );
    assert_eq!(command(&proxy, "clean"), "ok");
    assert!(
        is_dead(&mut held, Duration::from_secs(2)).await,
        "held connection not reset by clean"
    );
    let mut new = TcpStream::connect(addr).await.unwrap();
    round_trip(&mut new, b"through").await.unwrap();
}

#[tokio::test]
async fn an_unreachable_peer_resets_the_nodes_connection() {
    // A port with nothing listening: the upstream connect is refused at once.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = closed.local_addr().unwrap();
    drop(closed);
    let proxy = Proxy::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_route(proxy.clone(), listener, target.to_string()));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    assert!(is_dead(&mut stream, Duration::from_secs(2)).await);
    assert!(command(&proxy, "status").contains("\"upstream_failures\":1"));
}

#[tokio::test]
async fn the_control_port_speaks_one_line_each_way() {
    let proxy = Proxy::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_control(proxy.clone(), listener));
    let ask = |line: &'static str| async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(line.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    };
    assert_eq!(ask("latency both 20 5\n").await, "ok\n");
    let expected = Delay { ms: 20, jitter_ms: 5 };
    assert_eq!(proxy.settings().up, expected);
    assert_eq!(proxy.settings().down, expected);
    let status = ask("status\n").await;
    assert!(
        status.starts_with("ok {") && status.contains("\"jitter_ms\":5"),
        "{status}"
    );
    assert!(ask("latency sideways 1 1\n").await.starts_with("error "));
    assert!(ask("nonsense\n").await.starts_with("error "));
    assert_eq!(ask("clean\n").await, "ok\n");
    assert_eq!(proxy.settings(), Settings::default());
}

#[test]
fn commands_parse_and_bad_ones_are_refused() {
    assert_eq!(
        Command::parse("latency up 10 2\n"),
        Ok(Command::Latency {
            direction: Direction::Up,
            delay: Delay { ms: 10, jitter_ms: 2 }
        })
    );
    assert_eq!(
        Command::parse("blackhole 3"),
        Ok(Command::Admit {
            admit: Admit::Blackhole,
            for_s: Some(3)
        })
    );
    assert_eq!(
        Command::parse("refuse"),
        Ok(Command::Admit {
            admit: Admit::Refuse,
            for_s: None
        })
    );
    assert_eq!(Command::parse("drop"), Ok(Command::Drop));
    for bad in [
        "",
        "latency",
        "latency both 10",
        "latency both -1 0",
        "latency both 10 x",
        "latency both 999999 0",
        "refuse 1 2",
        "drop now",
    ] {
        assert!(Command::parse(bad).is_err(), "{bad:?} parsed");
    }
    assert_eq!(
        Command::parse("latency sideways 1 1"),
        Err(CommandError::NotADirection {
            word: "sideways".into()
        })
    );
    assert_eq!(
        Command::parse("refuse 999"),
        Err(CommandError::NotANumber {
            word: "999".into(),
            max: 60
        })
    );
}
