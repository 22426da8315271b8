//! The protocol reference in `docs/hub.md` against itself and against a served hub: every
//! example matches the schema of its direction and `type`, and every event a hub sends back
//! to the client examples (over a WebSocket and a long-polling session) matches the server
//! schema of its `type`.
//!
//! The schemas use a small subset of JSON Schema, checked here by a validator of that
//! subset; a keyword outside it fails the test rather than being ignored.

mod common;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use wsduplex::server::ServerConfig;
use wsduplex_hub::{Hub, HubConfig};

const LIMIT: Duration = Duration::from_secs(10);
const TOKEN: &str = "s3cret";
const DOC: &str = include_str!("../../../docs/hub.md");

/// The reference's schemas by `$id`, and its examples as (direction, message).
struct Reference {
    schemas: HashMap<String, Value>,
    examples: Vec<(String, Value)>,
}

fn reference() -> Reference {
    let mut schemas = HashMap::new();
    let mut examples = Vec::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```json ") else {
            continue;
        };
        let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let value: Value = serde_json::from_str(&block.join("\n"))
            .unwrap_or_else(|e| panic!("```json {info} block: {e}\n{}", block.join("\n")));
        match info.split_whitespace().collect::<Vec<_>>()[..] {
            ["schema"] => {
                let id = value["$id"]
                    .as_str()
                    .expect("a schema has an $id")
                    .to_string();
                assert!(schemas.insert(id.clone(), value).is_none(), "{id} twice");
            }
            ["example", direction] => examples.push((direction.to_string(), value)),
            _ => panic!("unknown block ```json {info}"),
        }
    }
    Reference { schemas, examples }
}

impl Reference {
    /// The schema an example or event of `direction` is checked against.
    fn schema_for(&self, direction: &str, message: &Value) -> &Value {
        let id = match direction {
            "api" => "api.push".to_string(),
            _ => format!("{direction}.{}", message["type"].as_str().unwrap_or("?")),
        };
        self.schemas
            .get(&id)
            .unwrap_or_else(|| panic!("no schema {id} for {message}"))
    }

    fn check(&self, direction: &str, message: &Value) {
        let schema = self.schema_for(direction, message);
        if let Err(e) = validate(schema, message, &self.schemas) {
            panic!("{message} does not match {}: {e}", schema["$id"]);
        }
    }
}

fn type_matches(name: &str, v: &Value) -> bool {
    match name {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        other => panic!("unknown type {other}"),
    }
}

/// `v` against `schema`, with `$ref` resolved among `all` by `$id`.
fn validate(schema: &Value, v: &Value, all: &HashMap<String, Value>) -> Result<(), String> {
    let schema = schema.as_object().expect("a schema is an object");
    for (keyword, arg) in schema {
        match keyword.as_str() {
            "$id" => {}
            "$ref" => {
                let target = all.get(arg.as_str().unwrap()).expect("known $ref");
                validate(target, v, all)?;
            }
            "type" => {
                let names: Vec<&str> = match arg {
                    Value::Array(a) => a.iter().map(|n| n.as_str().unwrap()).collect(),
                    n => vec![n.as_str().unwrap()],
                };
                if !names.iter().any(|n| type_matches(n, v)) {
                    return Err(format!("{v} is not of type {arg}"));
                }
            }
            "const" if v != arg => return Err(format!("{v} is not {arg}")),
            "const" => {}
            "enum" => {
                if !arg.as_array().unwrap().contains(v) {
                    return Err(format!("{v} is not one of {arg}"));
                }
            }
            "minimum" => {
                if v.as_f64().is_some_and(|n| n < arg.as_f64().unwrap()) {
                    return Err(format!("{v} is below {arg}"));
                }
            }
            "required" => {
                for field in arg.as_array().unwrap() {
                    let field = field.as_str().unwrap();
                    if v.as_object().is_some_and(|o| !o.contains_key(field)) {
                        return Err(format!("no {field}"));
                    }
                }
            }
            "properties" => {
                let Some(o) = v.as_object() else { continue };
                for (field, sub) in arg.as_object().unwrap() {
                    if let Some(x) = o.get(field) {
                        validate(sub, x, all).map_err(|e| format!("{field}: {e}"))?;
                    }
                }
            }
            "additionalProperties" => {
                assert_eq!(arg, &Value::Bool(false), "only additionalProperties: false");
                let known = schema.get("properties").and_then(Value::as_object);
                if let Some(o) = v.as_object() {
                    if let Some(extra) = o
                        .keys()
                        .find(|k| !known.is_some_and(|p| p.contains_key(*k)))
                    {
                        return Err(format!("unexpected {extra}"));
                    }
                }
            }
            "items" => {
                for (i, x) in v.as_array().into_iter().flatten().enumerate() {
                    validate(arg, x, all).map_err(|e| format!("[{i}]: {e}"))?;
                }
            }
            "oneOf" => {
                let alternatives = arg.as_array().unwrap();
                let matching = alternatives
                    .iter()
                    .filter(|s| validate(s, v, all).is_ok())
                    .count();
                if matching != 1 {
                    return Err(format!("{matching} of oneOf {arg} match"));
                }
            }
            other => panic!("keyword {other} is outside the subset the test checks"),
        }
    }
    Ok(())
}

#[test]
fn every_example_matches_its_schema() {
    let r = reference();
    for kind in ["subscribe", "unsubscribe", "message", "refresh"] {
        assert!(
            r.schemas.contains_key(&format!("client.{kind}")),
            "client.{kind}"
        );
    }
    for kind in [
        "welcome",
        "message",
        "joined",
        "left",
        "unsubscribed",
        "error",
        "refreshed",
    ] {
        assert!(
            r.schemas.contains_key(&format!("server.{kind}")),
            "server.{kind}"
        );
    }
    // Each schema has an example.
    for id in r.schemas.keys() {
        let covered = r
            .examples
            .iter()
            .any(|(d, m)| r.schema_for(d, m)["$id"] == **id);
        assert!(covered, "no example for {id}");
    }
    for (direction, example) in &r.examples {
        r.check(direction, example);
    }
}

#[test]
fn the_validator_refuses_what_the_schemas_exclude() {
    let r = reference();
    let bad = [
        ("client", json!({"type": "subscribe"})),
        ("client", json!({"type": "subscribe", "room": 5})),
        (
            "client",
            json!({"type": "subscribe", "room": "r", "since": -1}),
        ),
        ("client", json!({"type": "message", "text": "a", "data": 1})),
        ("client", json!({"type": "message"})),
        (
            "server",
            json!({"type": "unsubscribed", "room": "r", "extra": 1}),
        ),
        (
            "server",
            json!({"type": "error", "error": "made_up", "message": ""}),
        ),
        (
            "server",
            json!({"type": "welcome", "room": "r", "name": "a", "members": [], "last_id": 0,
                   "gap": false, "history": [{"type": "message"}]}),
        ),
    ];
    for (direction, message) in bad {
        let schema = r.schema_for(direction, &message);
        assert!(
            validate(schema, &message, &r.schemas).is_err(),
            "{message} passed"
        );
    }
}

async fn start() -> (SocketAddr, Hub) {
    let mut c = HubConfig::default();
    c.api_token = Some(TOKEN.into());
    let hub = Hub::new(c);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(common::serve::serve(
        listener,
        hub.clone(),
        ServerConfig::default(),
    ));
    (addr, hub)
}

/// What a hub answers each client example with (this server takes no tokens: a `refresh`
/// gets an error).
fn expected_answer(request: &Value) -> &'static str {
    match request["type"].as_str().unwrap() {
        "subscribe" => "welcome",
        "message" => "message",
        "unsubscribe" => "unsubscribed",
        _ => "error",
    }
}

#[tokio::test]
async fn a_hub_answers_the_client_examples_as_the_schemas_say() {
    let r = reference();
    let (addr, hub) = start().await;
    // The rooms the examples name have some history, with data.
    hub.publish_data("news", "api", &json!({"n": 1}))
        .await
        .unwrap();
    let client: Vec<&Value> = r
        .examples
        .iter()
        .filter(|(d, _)| d == "client")
        .map(|(_, m)| m)
        .collect();

    // Over a WebSocket.
    let (mut ws, welcome) = common::join(addr, "/chat/lobby?name=alice").await;
    r.check("server", &welcome);
    for request in &client {
        ws.send(request.to_string()).await.unwrap();
        let want = expected_answer(request);
        loop {
            let event = common::next(&mut ws).await;
            r.check("server", &event);
            if event["type"] == want {
                break;
            }
            assert!(event["type"] != "error", "{request} got {event}");
        }
    }

    // Over a long-polling session.
    let http = |method: &'static str, path: String, body: String| async move {
        common::http(addr, method, &path, &[], &body, LIMIT + LIMIT).await
    };
    let opened = http("POST", "/poll/lobby?name=lp".into(), String::new()).await;
    assert_eq!(opened.status, 200);
    let sid = opened.body["session"].as_str().unwrap().to_string();
    let mut cursor = opened.body["cursor"].as_u64().unwrap();
    for event in opened.body["events"].as_array().unwrap() {
        r.check("server", event);
    }
    for request in &client {
        let sent = http("POST", format!("/poll/session/{sid}"), request.to_string()).await;
        let want = expected_answer(request);
        if want == "error" {
            assert_eq!(sent.status, 401, "{request}");
            r.check("server", &sent.body);
            continue;
        }
        assert_eq!(sent.status, 202, "{request}: {}", sent.body);
        'answer: loop {
            let read = http(
                "GET",
                format!("/poll/session/{sid}?cursor={cursor}"),
                String::new(),
            );
            let read = read.await;
            assert_eq!(read.status, 200);
            cursor = read.body["cursor"].as_u64().unwrap();
            for event in read.body["events"].as_array().unwrap() {
                r.check("server", event);
                assert!(event["type"] != "error", "{request} got {event}");
                if event["type"] == want {
                    break 'answer;
                }
            }
        }
    }

    // The push API.
    for (_, body) in r.examples.iter().filter(|(d, _)| d == "api") {
        let bearer = format!("Authorization: Bearer {TOKEN}");
        let path = "/api/rooms/news/messages";
        let pushed = common::http(addr, "POST", path, &[&bearer], &body.to_string(), LIMIT).await;
        assert_eq!(pushed.status, 201, "{body}: {}", pushed.body);
    }
}
