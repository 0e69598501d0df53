//! IMAP (issue "Speak mail"; `src/imap/`). Property: a mail client sees one consistent mailbox
//! through any node — its own writes at once, other sessions' writes as the node applies them,
//! sequence numbers that move only where RFC 3501 §7.4.1 allows — and logins that say nothing
//! about which users exist. Provocation, on a 3-node cluster of real processes with
//! `--passwd-file`, each node with `--imap-listen` (nodes 2 and 3 with `--imap-allow-plaintext`,
//! node 1 without it but with STARTTLS and `--imaps-listen` on a test CA's certificate), driven by Python's imaplib (`tests/imap/session.py`): a
//! plaintext LOGIN on node 1, then STARTTLS and implicit TLS there; a wrong password and an unknown user; LIST, CREATE, DELETE,
//! SELECT, APPEND with flags and a date, FETCH of flags and bytes, STORE, EXPUNGE on node 2;
//! a second session on node 3 while node 2 expunges and appends (NOOP, FETCH, IDLE). Checks
//! (in the script): LOGINDISABLED and `NO [PRIVACYREQUIRED]` on node 1 before TLS, logins
//! after STARTTLS and on the TLS port; identical
//! `NO [AUTHENTICATIONFAILED]` answers; the special-use mailboxes; APPENDUID; the bytes read back;
//! `\Seen` set by BODY[] and not by BODY.PEEK[]; EXPUNGE renumbering; on node 3 no EXPUNGE during
//! a FETCH and the EXPUNGE at the next NOOP; EXISTS on node 3 within 1 s by NOOP and by IDLE; the
//! unbuilt seams answering `NO [CANNOT]`; node 2's `/admin/status` (`node.mail`) counting a
//! session while open, commands, a failed login. Then nodes 1 and 2 are stopped: on node 3 SELECT and
//! FETCH go on from its index while APPEND and STORE answer `NO [UNAVAILABLE]`.

mod support;

use std::time::Duration;

use dovetail::node::dev::Start;
use dovetail::users::Cost;
use support::{free_node_addr, get, imap, wait_until, TestCluster};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";

#[test]
fn imap_sessions_on_different_nodes_see_one_mailbox() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("users");
    // A cheap hash: the test checks the protocol, not the KDF.
    let hash = dovetail::users::command::hash_field(PASSWORD.as_bytes(), Cost::Sha512Crypt { rounds: 1_000 })
        .unwrap();
    std::fs::write(&passwd, format!("{USER}:{hash}\nbob:{hash}\n")).unwrap();
    let passwd = passwd.to_str().unwrap().to_string();
    // One certificate for every node's loopback address, signed by a test CA the script trusts.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dovetail test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    for last in 11..=13u8 {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress([127, 0, 0, last].into()));
    }
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(path("node.pem"), cert.pem()).unwrap();
    std::fs::write(path("node.key"), key.serialize_pem()).unwrap();
    support::use_tls(&ca.pem());
    let (ca_pem, node_pem, node_key) = (path("ca.pem"), path("node.pem"), path("node.key"));
    let mut cluster = TestCluster::prepare(
        3,
        2,
        &[
            "--passwd-file",
            &passwd,
            "--request-timeout-ms",
            "3000",
            "--max-message-bytes",
            "200000",
            "--tls-cert",
            &node_pem,
            "--tls-key",
            &node_key,
            "--tls-ca",
            &ca_pem,
        ],
        support::secrets(),
    );
    let imap_addrs: Vec<String> = (1..=3).map(free_node_addr).collect();
    let imaps_addr = free_node_addr(1);
    for (i, (node, addr)) in cluster.nodes.iter_mut().zip(&imap_addrs).enumerate() {
        node.own_flags = vec!["--imap-listen".to_string(), addr.clone()];
        if i == 0 {
            node.own_flags
                .extend(["--imaps-listen".to_string(), imaps_addr.clone()]);
        } else {
            node.own_flags.push("--imap-allow-plaintext".to_string());
        }
    }
    cluster.start_all(Start::Fresh);
    let api = cluster.nodes[0].api.clone();
    // APPEND stores through the body store: log encoding 3.
    imap::wait_for_encoding(&api, 3);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/imap/session.py");
    let (a, b, c) = (&imap_addrs[0], &imap_addrs[1], &imap_addrs[2]);
    imap::run_script(&cluster, script, &[a, b, c, &imaps_addr, &ca_pem, USER, PASSWORD]);
    counted_in_admin_status(&cluster.nodes[1].api, &imap_addrs[1]);
    // Nodes 1 and 2 gone: node 3's group has no quorum.
    cluster.stop(1);
    cluster.stop(2);
    imap::run_script(&cluster, script, &["noquorum", c, USER, PASSWORD]);
}

/// `node.mail` of the node's `/admin/status`: its IMAP and LMTP counts.
fn mail(api: &str) -> serde_json::Value {
    let (status, v) = get(api, "/admin/status").unwrap();
    assert_eq!(status, 200, "{v}");
    v["node"]["mail"].clone()
}

/// On a plaintext session to `imap` (node `api`, after the script's sessions): the session is
/// counted open while connected and closed after, a failed LOGIN counted (a NO and a login
/// failure), the script's commands counted OK.
fn counted_in_admin_status(api: &str, imap: &str) {
    use std::io::{BufRead, BufReader, Write};
    let before = mail(api);
    let stream = std::net::TcpStream::connect(imap).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut tagged = move |command: &str| {
        let tag = command.split(' ').next().unwrap().to_string();
        writer.write_all(format!("{command}\r\n").as_bytes()).unwrap();
        loop {
            let mut line = String::new();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "closed during {command}"
            );
            if line.starts_with(&format!("{tag} ")) {
                return line;
            }
        }
    };
    // The untagged greeting is skipped by the first command's loop.
    let answer = tagged(&format!("a1 LOGIN {USER} wrong-password"));
    assert!(answer.starts_with("a1 NO"), "{answer}");
    let during = mail(api);
    assert!(during["imap_sessions_open"].as_u64() >= Some(1), "{during}");
    assert!(during["imap_commands_ok"].as_u64() >= Some(1), "{during}");
    for field in ["imap_commands_no", "imap_login_failures"] {
        assert!(
            during[field].as_u64() > before[field].as_u64(),
            "{field}: {before} then {during}"
        );
    }
    let answer = tagged("a2 LOGOUT");
    assert!(answer.starts_with("a2 OK"), "{answer}");
    drop(tagged); // closes the connection
    wait_until(Duration::from_secs(10), "the session counted closed", || {
        mail(api)["imap_sessions_open"] == 0
    });
}
