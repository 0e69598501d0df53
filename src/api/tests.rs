//! API tests over a local, unreplicated service: every route, every error status, JSON error
//! bodies, body limits, retries with the same `(client_id, request_seq)`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::client::router;
use crate::index::LogPosition;
use crate::placement::group_of;
use crate::service::{MailService, ReadAck, ReadOptions, ServiceError, WriteAck};
use crate::state_machine::GroupStateMachine;
use crate::txn::Txn;

const GROUPS: u32 = 4;

/// Applies writes directly to group directories, one after the other: a single-node stand-in.
struct LocalService {
    groups: BTreeMap<u32, Mutex<(GroupStateMachine, u64)>>,
    _dir: tempfile::TempDir,
}

impl LocalService {
    /// Every group at log encoding `encoding` (its gate entry applied at index 1).
    fn at_encoding(encoding: u8) -> LocalService {
        let dir = tempfile::tempdir().unwrap();
        let groups = (0..GROUPS)
            .map(|g| {
                let mut machine = GroupStateMachine::open(&dir.path().join(format!("g{g}"))).unwrap();
                let mut applied = 0;
                if encoding > 0 {
                    let gate = Txn {
                        client_id: "anon-1-encoding".into(),
                        request_seq: 1,
                        op: crate::txn::Op::SetEncoding { version: encoding },
                    };
                    applied = 1;
                    machine.apply(LogPosition::new(1, applied), &gate).unwrap();
                }
                (g, Mutex::new((machine, applied)))
            })
            .collect();
        LocalService { groups, _dir: dir }
    }
}

impl MailService for LocalService {
    fn node_id(&self) -> u64 {
        1
    }

    async fn write(&self, txn: Txn) -> Result<WriteAck, ServiceError> {
        let group = group_of(txn.op.user(), GROUPS);
        let mut guard = self.groups[&group].lock().unwrap();
        // As the replicated node does: in the group's active encoding, or not at all.
        crate::txn::encoding::encode_entry(&txn, guard.0.state().manifest().encoding)?;
        guard.1 += 1;
        let position = LogPosition::new(1, guard.1);
        let outcome = guard.0.apply(position, &txn).unwrap().unwrap();
        Ok(WriteAck {
            group,
            position,
            outcome,
        })
    }

    async fn read<R, F>(&self, user: &str, options: ReadOptions, read: F) -> Result<ReadAck<R>, ServiceError>
    where
        R: Send + 'static,
        F: FnOnce(&GroupStateMachine) -> R + Send + 'static,
    {
        let group = group_of(user, GROUPS);
        let guard = self.groups[&group].lock().unwrap();
        // Everything this stand-in committed it has applied: a token above it is no token.
        let committed = guard.0.applied().map_or(0, |a| a.index);
        if let Some(min_applied) = options.min_applied.filter(|&m| m > committed) {
            return Err(ServiceError::BeyondCommitted {
                group,
                min_applied,
                committed,
            });
        }
        Ok(ReadAck {
            group,
            applied: guard.0.applied(),
            value: read(&guard.0),
        })
    }
}

struct Client {
    app: axum::Router,
}

impl Client {
    /// The client routes, the test op's route and the dashboard, as a node merges them.
    fn new() -> Client {
        Client::at_encoding(0)
    }

    fn at_encoding(encoding: u8) -> Client {
        let service = Arc::new(LocalService::at_encoding(encoding));
        Client {
            app: router(service.clone())
                .merge(super::client::test_next_encoding_router(service))
                .merge(super::dashboard::router()),
        }
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(v) => {
                request = request.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}));
        (status, value)
    }
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no JSON error body: {v}"))
}

#[tokio::test]
async fn mailbox_lifecycle_and_messages() {
    let c = Client::new();
    let (s, v) = c
        .call(
            "POST",
            "/v1/users/alice/mailboxes",
            Some(json!({"name": "INBOX"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(v["uid_validity"].as_u64().unwrap() > 0);
    let (s, v) = c
        .call(
            "POST",
            "/v1/users/alice/mailboxes",
            Some(json!({"name": "Archive/2024"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = c.call("GET", "/v1/users/alice/mailboxes", None).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = v["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Archive/2024", "INBOX"]);

    let messages = json!({"messages": [
        {"guid": "0123456789abcdef0123456789abcdef", "size": 1200, "flags": ["\\Seen"]},
        {"guid": "00000000000000000000000000000002", "size": 99, "internal_date": 1700000000}
    ]});
    let (s, v) = c
        .call("POST", "/v1/users/alice/mailboxes/INBOX/messages", Some(messages))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["first_uid"].as_u64(), v["last_uid"].as_u64()),
        (Some(1), Some(2))
    );
    let token = v["token"].as_u64().unwrap();

    let uri = format!("/v1/users/alice/mailboxes/INBOX?consistency=local&min_applied={token}");
    let (s, v) = c.call("GET", &uri, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["exists"].as_u64(), v["unseen"].as_u64(), v["uid_next"].as_u64()),
        (Some(2), Some(1), Some(3))
    );

    let store = json!({"uids": "1:2", "mode": "add", "flags": ["\\Flagged", "$Work"]});
    let (s, v) = c
        .call("POST", "/v1/users/alice/mailboxes/INBOX/store", Some(store))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["changed"], "1:2");
    let modseq = v["modseq"].as_u64().unwrap();

    // UNCHANGEDSINCE below the messages' MODSEQ fails for all of them: 409 condition_failed.
    let store = json!({"uids": "1", "mode": "remove", "flags": ["\\Flagged"], "unchanged_since": modseq - 1});
    let (s, v) = c
        .call("POST", "/v1/users/alice/mailboxes/INBOX/store", Some(store))
        .await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::CONFLICT, "condition_failed"),
        "{v}"
    );

    let (s, v) = c
        .call(
            "GET",
            "/v1/users/alice/mailboxes/INBOX/messages?first=2&last=2",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["messages"][0]["flags"], json!(["\\Flagged", "$Work"]));

    let expunge = json!({"uids": "1", "expected_guids": {"1": "0123456789abcdef0123456789abcdef"}});
    let (s, v) = c
        .call("POST", "/v1/users/alice/mailboxes/INBOX/expunge", Some(expunge))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["expunged"], "1");
    let (s, v) = c
        .call(
            "GET",
            &format!("/v1/users/alice/mailboxes/INBOX/changes?since={modseq}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["vanished"], "1");

    let (s, v) = c
        .call(
            "POST",
            "/v1/users/alice/mailboxes/Archive%2F2024/rename",
            Some(json!({"to": "Old"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = c.call("DELETE", "/v1/users/alice/mailboxes/Old", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = c.call("GET", "/v1/users/alice/mailboxes/Old", None).await;
    assert_eq!((s, error_code(&v)), (StatusCode::NOT_FOUND, "no_such_mailbox"));
}

/// `/changes` pages like `/messages`: `limit` (default 1,000, at most 10,000), and `next` to
/// continue; a store between two pages comes back in a later page, not lost behind the cursor.
#[tokio::test]
async fn changes_are_paged_with_a_cursor() {
    let c = Client::new();
    c.call("POST", "/v1/users/fay/mailboxes", Some(json!({"name": "INBOX"})))
        .await;
    let messages: Vec<Value> = (1..=5)
        .map(|i| json!({"guid": format!("{i:032x}"), "size": i}))
        .collect();
    c.call(
        "POST",
        "/v1/users/fay/mailboxes/INBOX/messages",
        Some(json!({"messages": messages})),
    )
    .await;
    let base = "/v1/users/fay/mailboxes/INBOX/changes";
    let (s, first) = c.call("GET", &format!("{base}?since=0&limit=2"), None).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let uids = |v: &Value| -> Vec<u64> {
        v["changed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["uid"].as_u64().unwrap())
            .collect()
    };
    assert_eq!((uids(&first), &first["more"]), (vec![1, 2], &json!(true)));
    assert_eq!(first["next"], json!({"since": 2, "after_uid": 2}), "{first}");
    // UID 1 changes behind the cursor: it comes back after the others, with its new MODSEQ.
    c.call(
        "POST",
        "/v1/users/fay/mailboxes/INBOX/store",
        Some(json!({"uids": "1", "mode": "add", "flags": ["\\Seen"]})),
    )
    .await;
    let next = &first["next"];
    let uri = format!(
        "{base}?since={}&after_uid={}&limit=10",
        next["since"], next["after_uid"]
    );
    let (s, rest) = c.call("GET", &uri, None).await;
    assert_eq!(s, StatusCode::OK, "{rest}");
    assert_eq!(
        (uids(&rest), &rest["more"]),
        (vec![3, 4, 5, 1], &json!(false)),
        "{rest}"
    );
    assert_eq!(rest["next"], json!({"since": rest["highest_modseq"]}), "{rest}");
    let (_, all) = c.call("GET", &format!("{base}?since=0"), None).await;
    assert_eq!(uids(&all).len(), 5, "{all}");
    for bad in ["limit=0", "limit=10001", "after_uid=x", "since=1&since=2"] {
        let uri = format!("{base}?since=0&{bad}");
        let (s, v) = c.call("GET", &uri, None).await;
        assert_eq!(
            (s, error_code(&v)),
            (StatusCode::BAD_REQUEST, "invalid"),
            "{uri}: {v}"
        );
    }
}

#[tokio::test]
async fn a_retry_is_applied_once() {
    let c = Client::new();
    c.call("POST", "/v1/users/bob/mailboxes", Some(json!({"name": "INBOX"})))
        .await;
    let append = json!({"messages": [{"guid": "000000000000000000000000000000aa", "size": 1}],
                        "client_id": "mua-1", "request_seq": 7});
    let (_, first) = c
        .call(
            "POST",
            "/v1/users/bob/mailboxes/INBOX/messages",
            Some(append.clone()),
        )
        .await;
    let (_, again) = c
        .call("POST", "/v1/users/bob/mailboxes/INBOX/messages", Some(append))
        .await;
    assert_eq!(first["first_uid"], again["first_uid"]);
    let (_, status) = c.call("GET", "/v1/users/bob/mailboxes/INBOX", None).await;
    assert_eq!(status["exists"], 1);
    let stale = json!({"messages": [{"guid": "000000000000000000000000000000ab", "size": 1}],
                       "client_id": "mua-1", "request_seq": 6});
    let (s, v) = c
        .call("POST", "/v1/users/bob/mailboxes/INBOX/messages", Some(stale))
        .await;
    assert_eq!((s, error_code(&v)), (StatusCode::CONFLICT, "stale_request"));
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let c = Client::new();
    c.call(
        "POST",
        "/v1/users/carol/mailboxes",
        Some(json!({"name": "INBOX"})),
    )
    .await;
    let cases: Vec<(&str, &str, Option<Value>, StatusCode, &str)> = vec![
        (
            "POST",
            "/v1/users/carol/mailboxes",
            Some(json!({"name": ""})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "POST",
            "/v1/users/carol/mailboxes",
            Some(json!({"name": "a//b"})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "POST",
            "/v1/users/carol/mailboxes",
            Some(json!({"name": "INBOX"})),
            StatusCode::CONFLICT,
            "mailbox_exists",
        ),
        (
            "POST",
            "/v1/users/carol/mailboxes/INBOX/messages",
            Some(
                json!({"messages": [{"guid": "000000000000000000000000000000ac", "size": 1}],
                        "client_id": "anon-1-x", "request_seq": 1}),
            ),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "POST",
            "/v1/users/carol/mailboxes",
            Some(json!({"nam": "x"})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        // A mistyped field is bad input like any other: 400 on every route (it was 422).
        (
            "POST",
            "/v1/users/carol/mailboxes",
            Some(json!({"name": 5})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "POST",
            "/v1/users/carol/mailboxes/INBOX/store",
            Some(json!({"uids": 1, "mode": "add", "flags": []})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "POST",
            "/v1/users/carol/mailboxes/INBOX/messages",
            Some(json!({"messages": {"guid": "000000000000000000000000000000aa"}})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "POST",
            "/v1/users/carol/mailboxes/INBOX/rename",
            Some(json!({"to": ["x"]})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        // UID sets follow RFC 3501: no sign, no leading zero, no whitespace.
        (
            "POST",
            "/v1/users/carol/mailboxes/INBOX/store",
            Some(json!({"uids": "+1", "mode": "add", "flags": []})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "POST",
            "/v1/users/carol/mailboxes/INBOX/expunge",
            Some(json!({"uids": "01"})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "POST",
            "/v1/users/carol/mailboxes/INBOX/store",
            Some(json!({"uids": "", "mode": "add", "flags": []})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "POST",
            "/v1/users/carol/mailboxes/INBOX/store",
            Some(json!({"uids": "1", "mode": "add", "flags": ["\\Recent"]})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "POST",
            "/v1/users/carol/mailboxes/INBOX/messages",
            Some(json!({"messages": [{"guid": "zz", "size": 1}]})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "POST",
            "/v1/users/carol/mailboxes/INBOX/messages",
            Some(
                json!({"messages": [{"guid": "000000000000000000000000000000aa", "size": 1099511627776u64}]}),
            ),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "POST",
            "/v1/users/carol/mailboxes/Nope/messages",
            Some(json!({"messages": [{"guid": "000000000000000000000000000000aa", "size": 1}]})),
            StatusCode::NOT_FOUND,
            "no_such_mailbox",
        ),
        (
            "DELETE",
            "/v1/users/carol/mailboxes/INBOX",
            None,
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "GET",
            "/v1/users/carol/mailboxes/INBOX/messages?limit=0",
            None,
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "GET",
            "/v1/users/carol/mailboxes/INBOX/changes",
            None,
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "GET",
            "/v1/users/carol/mailboxes/INBOX?consistency=eventual",
            None,
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        ("GET", "/v1/nothing", None, StatusCode::NOT_FOUND, "not_found"),
        // The test op's route and the dashboard are routers of their own: a method they do not
        // take is the JSON 405 too (it was an empty body; found by the client_api fuzz target).
        (
            "GET",
            "/v1/users/carol/probe",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "POST",
            "/",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "PUT",
            "/v1/users/carol/mailboxes",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, uri, body, status, code) in cases {
        let (s, v) = c.call(method, uri, body.clone()).await;
        assert_eq!(
            (s, error_code(&v)),
            (status, code),
            "{method} {uri} {body:?}: {v}"
        );
    }
    // Not JSON, and too large.
    let request = Request::post("/v1/users/carol/mailboxes")
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let (s, v) = c.send(request).await;
    assert_eq!((s, error_code(&v)), (StatusCode::BAD_REQUEST, "invalid"));
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(2 << 20));
    let request = Request::post("/v1/users/carol/mailboxes")
        .header("content-type", "application/json")
        .body(Body::from(huge))
        .unwrap();
    let (s, v) = c.send(request).await;
    assert_eq!((s, error_code(&v)), (StatusCode::PAYLOAD_TOO_LARGE, "too_large"));
    // Nothing changed.
    let (_, v) = c.call("GET", "/v1/users/carol/mailboxes", None).await;
    assert_eq!(v["mailboxes"].as_array().unwrap().len(), 1);
    let (_, v) = c.call("GET", "/v1/users/carol/mailboxes/INBOX", None).await;
    assert_eq!(
        (v["exists"].as_u64(), v["highest_modseq"].as_u64()),
        (Some(0), Some(1))
    );
}

/// `expected_guids` names each UID once, spelled as an RFC 3501 `nz-number`: a JSON object
/// that repeats a key (serde kept the last one silently) or spells one UID two ways is refused,
/// and nothing is expunged.
#[tokio::test]
async fn expected_guids_with_a_repeated_uid_are_refused() {
    let c = Client::new();
    c.call("POST", "/v1/users/erin/mailboxes", Some(json!({"name": "INBOX"})))
        .await;
    let guid = "000000000000000000000000000000e1";
    c.call(
        "POST",
        "/v1/users/erin/mailboxes/INBOX/messages",
        Some(json!({"messages": [{"guid": guid, "size": 1}]})),
    )
    .await;
    let other = "000000000000000000000000000000e2";
    for body in [
        format!(r#"{{"uids":"1","expected_guids":{{"1":"{other}","1":"{guid}"}}}}"#),
        format!(r#"{{"uids":"1","expected_guids":{{"1":"{guid}","01":"{other}"}}}}"#),
        format!(r#"{{"uids":"1","expected_guids":{{"+1":"{guid}"}}}}"#),
        format!(r#"{{"uids":"1","expected_guids":{{"x":"{guid}"}}}}"#),
    ] {
        let request = Request::post("/v1/users/erin/mailboxes/INBOX/expunge")
            .header("content-type", "application/json")
            .body(Body::from(body.clone()))
            .unwrap();
        let (s, v) = c.send(request).await;
        assert_eq!(
            (s, error_code(&v)),
            (StatusCode::BAD_REQUEST, "invalid"),
            "{body}: {v}"
        );
    }
    let (_, v) = c.call("GET", "/v1/users/erin/mailboxes/INBOX", None).await;
    assert_eq!(v["exists"], 1, "{v}");
}

/// Every read takes `consistency` and `min_applied` the same way (one `ReadQuery`, flattened into
/// the reads with parameters of their own): a token beyond anything the group committed, a bad
/// value or an unknown parameter is 400 `invalid`.
#[tokio::test]
async fn every_read_takes_the_freshness_parameters() {
    let c = Client::new();
    c.call("POST", "/v1/users/dan/mailboxes", Some(json!({"name": "INBOX"})))
        .await;
    let (_, v) = c
        .call(
            "POST",
            "/v1/users/dan/mailboxes/INBOX/messages",
            Some(json!({"messages": [{"guid": "000000000000000000000000000000d1", "size": 1}]})),
        )
        .await;
    let token = v["token"].as_u64().unwrap();
    let reads = [
        "/v1/users/dan/mailboxes?",
        "/v1/users/dan/mailboxes/INBOX?",
        "/v1/users/dan/mailboxes/INBOX/messages?first=1&limit=5&",
        "/v1/users/dan/mailboxes/INBOX/changes?since=0&",
    ];
    for read in reads {
        let uri = format!("{read}consistency=local&min_applied={token}");
        let (s, v) = c.call("GET", &uri, None).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {v}");
        assert!(v["applied"].as_u64().unwrap() >= token, "{uri}: {v}");
        // A token beyond anything the group committed is a client's mistake: 400 at once.
        for beyond in [token + 100, u64::MAX] {
            let uri = format!("{read}min_applied={beyond}");
            let (s, v) = c.call("GET", &uri, None).await;
            assert_eq!((s, error_code(&v)), (StatusCode::BAD_REQUEST, "invalid"), "{uri}");
            assert!(v["error"]["message"].as_str().unwrap().contains("beyond"), "{v}");
        }
        for bad in ["min_applied=x", "consistency=eventual", "colour=blue"] {
            let uri = format!("{read}{bad}");
            let (s, v) = c.call("GET", &uri, None).await;
            assert_eq!((s, error_code(&v)), (StatusCode::BAD_REQUEST, "invalid"), "{uri}");
        }
        let (_, v) = c.call("GET", &format!("{read}min_applied=x"), None).await;
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("invalid digit found in string"),
            "{v}"
        );
    }
}

/// A node whose leader queues are full: every write and read is refused as busy.
struct BusyService;

impl MailService for BusyService {
    fn node_id(&self) -> u64 {
        1
    }

    /// The group of `hot` is known to be busy before anything is read.
    fn admit_write(&self, user: &str) -> Result<(), ServiceError> {
        match user {
            "hot" => Err(ServiceError::Busy {
                reason: "admission".into(),
            }),
            _ => Ok(()),
        }
    }

    async fn write(&self, _txn: Txn) -> Result<WriteAck, ServiceError> {
        Err(ServiceError::Busy {
            reason: "group 2: busy".into(),
        })
    }

    async fn read<R, F>(
        &self,
        _user: &str,
        _options: ReadOptions,
        _read: F,
    ) -> Result<ReadAck<R>, ServiceError>
    where
        R: Send + 'static,
        F: FnOnce(&GroupStateMachine) -> R + Send + 'static,
    {
        Err(ServiceError::Busy {
            reason: "group 2: busy".into(),
        })
    }
}

/// A refused request is 429 `busy` with `Retry-After`, on writes and reads alike.
#[tokio::test]
async fn busy_answers_429_with_retry_after() {
    let app = router(Arc::new(BusyService));
    let requests = [
        ("POST", "/v1/users/eve/mailboxes", Some(json!({"name": "INBOX"}))),
        (
            "POST",
            "/v1/users/eve/mailboxes/INBOX/messages",
            Some(json!({"messages": [{"guid": "000000000000000000000000000000e1", "size": 1}]})),
        ),
        ("GET", "/v1/users/eve/mailboxes/INBOX", None),
    ];
    for (method, uri, body) in requests {
        let mut request = Request::builder().method(method).uri(uri);
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let body = body.map_or_else(Body::empty, |v| Body::from(v.to_string()));
        let response = app.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{method} {uri}");
        assert_eq!(response.headers()["retry-after"], "1", "{method} {uri}");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(error_code(&v), "busy", "{method} {uri}");
    }
}

/// A request body that never arrives.
struct Endless;

impl hyper::body::Body for Endless {
    type Data = hyper::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<hyper::body::Bytes>, std::io::Error>>> {
        std::task::Poll::Pending
    }
}

/// A write of a user whose group the service knows to be busy is refused before its body is
/// read (the body never arrives); reads are not asked, and other users' writes go on to the
/// service.
#[tokio::test]
async fn a_write_to_a_busy_group_is_refused_before_its_body_is_read() {
    let app = router(Arc::new(BusyService));
    let message = |response: axum::response::Response| async move {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        v["error"]["message"].as_str().unwrap().to_string()
    };
    for (method, uri) in [
        ("POST", "/v1/users/hot/mailboxes/INBOX/messages"),
        ("POST", "/v1/users/hot/mailboxes"),
        ("DELETE", "/v1/users/hot/mailboxes/Old"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::new(Endless))
            .unwrap();
        let response = tokio::time::timeout(std::time::Duration::from_secs(5), app.clone().oneshot(request))
            .await
            .expect("waited for the body")
            .unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{method} {uri}");
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(message(response).await, "busy: admission", "{method} {uri}");
    }
    let read = Request::get("/v1/users/hot/mailboxes/INBOX")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(read).await.unwrap();
    assert_eq!(
        message(response).await,
        "busy: group 2: busy",
        "reads are not admitted here"
    );
    let write = Request::post("/v1/users/cold/mailboxes")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"name":"INBOX"}"#))
        .unwrap();
    let response = app.oneshot(write).await.unwrap();
    assert_eq!(
        message(response).await,
        "busy: group 2: busy",
        "another user's write is read"
    );
}

/// Copy and move (`POST .../copy`): the target's UIDVALIDITY, the UID map as COPYUID gives it,
/// the target's MODSEQ and the token; a move also the expunged source UIDs and the source's
/// MODSEQ. UIDs the source lacks are skipped; a retry is answered alike and applied once;
/// mistakes are 4xx JSON errors.
#[tokio::test]
async fn copy_and_move_answer_what_uidplus_needs() {
    let c = Client::at_encoding(crate::txn::encoding::CURRENT_ENCODING);
    let b = "/v1/users/gil/mailboxes";
    for name in ["INBOX", "Archive"] {
        let (s, v) = c.call("POST", b, Some(json!({"name": name}))).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let messages: Vec<Value> = (1..=4)
        .map(|i| json!({"guid": format!("{i:032x}"), "size": 10, "flags": ["\\Seen", "$Work"]}))
        .collect();
    let (s, v) = c
        .call(
            "POST",
            &format!("{b}/INBOX/messages"),
            Some(json!({"messages": messages})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let archive_validity = c.call("GET", &format!("{b}/Archive"), None).await.1["uid_validity"].clone();

    let copy = json!({"uids": "1:2,9", "to": "Archive", "client_id": "imap-gil", "request_seq": 1});
    let (s, v) = c
        .call("POST", &format!("{b}/INBOX/copy"), Some(copy.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["uid_validity"], archive_validity);
    assert_eq!(v["uid_map"], json!({"source": "1:2", "target": "1:2"}));
    assert!(
        v["modseq"].as_u64().is_some() && v["token"].as_u64().is_some(),
        "{v}"
    );
    assert!(v.get("expunged").is_none(), "{v}");
    // A retry: the same answer (in a later entry), nothing copied twice.
    let (s, mut again) = c.call("POST", &format!("{b}/INBOX/copy"), Some(copy)).await;
    let mut first = v.clone();
    first["token"] = Value::Null;
    again["token"] = Value::Null;
    assert_eq!((s, &again), (StatusCode::OK, &first));

    let (s, v) = c
        .call(
            "POST",
            &format!("{b}/INBOX/copy"),
            Some(json!({"uids": "3:4", "to": "Archive", "move": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["uid_map"], json!({"source": "3:4", "target": "3:4"}));
    assert_eq!(v["expunged"], "3:4");
    assert!(v["source_modseq"].as_u64().is_some(), "{v}");
    let (_, archive) = c.call("GET", &format!("{b}/Archive/messages"), None).await;
    let copied = archive["messages"].as_array().unwrap();
    assert_eq!(copied.len(), 4);
    assert_eq!(copied[0]["flags"], json!(["\\Seen", "$Work"]));
    let (_, inbox) = c.call("GET", &format!("{b}/INBOX/messages"), None).await;
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 2);

    // Nothing of the set in the source: 200 with an empty map.
    let (s, v) = c
        .call(
            "POST",
            &format!("{b}/INBOX/copy"),
            Some(json!({"uids": "50", "to": "Archive"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["uid_map"], &v["modseq"]),
        (&json!({"source": "", "target": ""}), &Value::Null)
    );

    let cases = [
        (
            json!({"uids": "1", "to": "Nowhere"}),
            StatusCode::NOT_FOUND,
            "no_such_mailbox",
        ),
        (
            json!({"uids": "1", "to": "inbox", "move": true}),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            json!({"uids": "0", "to": "Archive"}),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            json!({"uids": "1:*", "to": "Archive"}),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            json!({"uids": "1", "to": "a//b"}),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (json!({"uids": "1"}), StatusCode::BAD_REQUEST, "invalid"),
        (
            json!({"uids": "1", "to": "Archive", "copy": true}),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
    ];
    for (body, status, code) in cases {
        let (s, v) = c
            .call("POST", &format!("{b}/INBOX/copy"), Some(body.clone()))
            .await;
        assert_eq!((s, error_code(&v)), (status, code), "{body}: {v}");
    }
    let (s, v) = c
        .call(
            "POST",
            &format!("{b}/Gone/copy"),
            Some(json!({"uids": "1", "to": "Archive"})),
        )
        .await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::NOT_FOUND, "no_such_mailbox"),
        "{v}"
    );
}

/// Subscriptions: `PUT` subscribes a name (NFC, INBOX in any case is INBOX; a mailbox need not
/// exist), `DELETE` unsubscribes it, each saying whether anything changed; `GET` lists them in
/// name order with `applied`; a deleted mailbox stays subscribed.
#[tokio::test]
async fn subscriptions_are_put_listed_and_deleted() {
    let c = Client::at_encoding(crate::txn::encoding::CURRENT_ENCODING);
    let b = "/v1/users/hal/subscriptions";
    let (s, v) = c.call("GET", b, None).await;
    assert_eq!((s, &v["subscriptions"]), (StatusCode::OK, &json!([])), "{v}");
    for (name, changed) in [
        ("inbox", true),
        ("INBOX", false),
        ("Lists%2FRust", true),
        ("cafe%CC%81", true),
    ] {
        let (s, v) = c.call("PUT", &format!("{b}/{name}"), None).await;
        assert_eq!(s, StatusCode::OK, "{name}: {v}");
        assert_eq!(
            (&v["subscribed"], &v["changed"]),
            (&json!(true), &json!(changed)),
            "{name}: {v}"
        );
        assert!(v["token"].as_u64().is_some(), "{v}");
    }
    let (s, v) = c.call("GET", &format!("{b}?consistency=local"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["subscriptions"], json!(["INBOX", "Lists/Rust", "caf\u{e9}"]));
    assert!(v["applied"].as_u64().is_some(), "{v}");
    let (s, v) = c
        .call(
            "DELETE",
            &format!("{b}/Lists%2FRust?client_id=imap-hal&request_seq=1"),
            None,
        )
        .await;
    assert_eq!((s, &v["changed"]), (StatusCode::OK, &json!(true)), "{v}");
    let (s, v) = c.call("DELETE", &format!("{b}/Lists%2FRust"), None).await;
    assert_eq!((s, &v["changed"]), (StatusCode::OK, &json!(false)), "{v}");
    let (_, v) = c.call("GET", b, None).await;
    assert_eq!(v["subscriptions"], json!(["INBOX", "caf\u{e9}"]));
    for (method, uri, status, code) in [
        ("PUT", format!("{b}/a%2F%2Fb"), StatusCode::BAD_REQUEST, "invalid"),
        ("PUT", format!("{b}/x%2A"), StatusCode::BAD_REQUEST, "invalid"),
        (
            "PUT",
            format!("{b}/INBOX?client_id=c"),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "DELETE",
            format!("{b}/a%E2%80%8Bb"),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "POST",
            format!("{b}/INBOX"),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "GET",
            format!("{b}?consistency=eventual"),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
    ] {
        let (s, v) = c.call(method, &uri, None).await;
        assert_eq!((s, error_code(&v)), (status, code), "{method} {uri}: {v}");
    }
}

/// A group below log encoding 4 has none of its ops: each route answers 409 `not_enabled`
/// (the rolling upgrade is not finished) and changes nothing.
#[tokio::test]
async fn the_encoding_4_routes_are_not_enabled_at_encoding_3() {
    let c = Client::at_encoding(3);
    let b = "/v1/users/ivy";
    for name in ["INBOX", "Archive"] {
        let (s, v) = c
            .call("POST", &format!("{b}/mailboxes"), Some(json!({"name": name})))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    for (method, uri, body) in [
        (
            "POST",
            format!("{b}/mailboxes/INBOX/copy"),
            Some(json!({"uids": "1", "to": "Archive"})),
        ),
        (
            "POST",
            format!("{b}/mailboxes/INBOX/copy"),
            Some(json!({"uids": "1", "to": "Archive", "move": true})),
        ),
        ("PUT", format!("{b}/subscriptions/INBOX"), None),
        ("DELETE", format!("{b}/subscriptions/INBOX"), None),
    ] {
        let (s, v) = c.call(method, &uri, body).await;
        assert_eq!(
            (s, error_code(&v)),
            (StatusCode::CONFLICT, "not_enabled"),
            "{method} {uri}: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("needs log encoding 4"),
            "{v}"
        );
    }
    let (s, v) = c.call("GET", &format!("{b}/subscriptions"), None).await;
    assert_eq!((s, &v["subscriptions"]), (StatusCode::OK, &json!([])), "{v}");
}
