//! Control socket requests: the two commands are accepted however the JSON is laid
//! out and whatever else the object holds; other versions and commands are named in the
//! error; nothing else is ever taken for a command.

use proptest::collection::{hash_map, vec};
use proptest::prelude::*;
use serde_json::{Value, json};
use tunneld_core::control_request::{Command, PROTOCOL_VERSION, parse_request};

use crate::mutate;

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        prop_oneof![
            Just("status"),
            Just("reload"),
            Just("version"),
            Just("command")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            hash_map("[a-z]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Members that are neither `version` nor `command`.
fn extra_members() -> impl Strategy<Value = Vec<(String, Value)>> {
    vec(
        (
            "[a-z_]{1,10}".prop_filter("not a request field", |k| k != "version" && k != "command"),
            json_value(),
        ),
        0..4,
    )
}

fn command() -> impl Strategy<Value = (Command, &'static str)> {
    prop_oneof![
        Just((Command::Status, "status")),
        Just((Command::Reload, "reload"))
    ]
}

/// `members` as a JSON object text, in the given order, compact or pretty, with
/// whitespace around it.
fn object_text(members: Vec<(String, Value)>, pretty: bool, pad: (&str, &str)) -> String {
    let (colon, comma, open, close) = if pretty {
        (": ", ",\n  ", "{\n  ", "\n}")
    } else {
        (":", ",", "{", "}")
    };
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}{colon}{v}", Value::from(k.as_str())))
        .collect();
    format!("{}{open}{}{close}{}", pad.0, body.join(comma), pad.1)
}

fn padding() -> impl Strategy<Value = (&'static str, &'static str)> {
    let ws = prop_oneof![
        Just(""),
        Just(" "),
        Just("\t"),
        Just("\n"),
        Just("\r\n"),
        Just("  \n")
    ];
    (ws.clone(), ws)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_two_commands_are_accepted_in_any_layout(
        (want, name) in command(),
        extra in extra_members(),
        at in any::<usize>(),
        pretty in any::<bool>(),
        pad in padding(),
    ) {
        let mut members = extra;
        let at = at % (members.len() + 1);
        members.insert(at, ("command".into(), json!(name)));
        members.insert(at % (members.len() + 1), ("version".into(), json!(PROTOCOL_VERSION)));
        let line = object_text(members, pretty, pad);
        prop_assert_eq!(parse_request(&line), Ok(want), "{}", line);
    }

    #[test]
    fn other_versions_are_named(v in any::<u64>(), (_, name) in command(), pad in padding()) {
        prop_assume!(v != PROTOCOL_VERSION);
        let line = object_text(
            vec![("version".into(), json!(v)), ("command".into(), json!(name))],
            false,
            pad,
        );
        let err = parse_request(&line).expect_err("another version");
        prop_assert!(err.contains(&format!("unsupported protocol version {v} ")), "{}", err);
    }

    #[test]
    fn other_commands_are_named(c in any::<String>(), pad in padding()) {
        prop_assume!(c != "status" && c != "reload");
        let line = object_text(
            vec![("version".into(), json!(1)), ("command".into(), json!(c))],
            false,
            pad,
        );
        prop_assert_eq!(parse_request(&line), Err(format!("unknown command \"{c}\"")));
    }

    #[test]
    fn requests_without_a_usable_version_or_command_are_refused(
        version in proptest::option::of(json_value()),
        command in proptest::option::of(json_value()),
        extra in extra_members(),
    ) {
        let usable_version = version.as_ref().and_then(Value::as_u64);
        let usable_command = command.as_ref().and_then(Value::as_str);
        prop_assume!(usable_version.is_none() || usable_command.is_none());
        let mut members = extra;
        members.extend(version.map(|v| ("version".to_owned(), v)));
        members.extend(command.map(|c| ("command".to_owned(), c)));
        let line = object_text(members, false, ("", "\n"));
        let err = parse_request(&line).expect_err("no usable version or command");
        match usable_version {
            None => prop_assert_eq!(err, "request has no \"version\"", "{}", line),
            Some(PROTOCOL_VERSION) => prop_assert_eq!(err, "request has no \"command\"", "{}", line),
            Some(v) => prop_assert!(
                err.contains(&format!("unsupported protocol version {v} ")),
                "{}: {}", line, err
            ),
        }
    }

    #[test]
    fn json_that_is_not_an_object_is_refused(v in json_value()) {
        prop_assume!(!v.is_object());
        let line = v.to_string();
        prop_assert_eq!(parse_request(&line), Err("request has no \"version\"".to_owned()));
    }

    #[test]
    fn any_text_is_answered(line in any::<String>()) {
        match parse_request(&line) {
            Ok(c) => {
                // Only a real request is taken for a command.
                let v: Value = serde_json::from_str(line.trim()).expect("accepted text is JSON");
                prop_assert_eq!(v["version"].as_u64(), Some(PROTOCOL_VERSION));
                prop_assert_eq!(v["command"].as_str(), Some(name_of(c)));
            }
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn edited_requests_are_never_mistaken(
        (_, name) in command(),
        edits in mutate::edits(prop_oneof![
            Just(b'{'), Just(b'}'), Just(b'"'), Just(b':'), Just(b','), Just(b'1'), Just(b'\\'),
            Just(b' '), any::<u8>(),
        ]),
    ) {
        let line = format!("{}\n", json!({"version": PROTOCOL_VERSION, "command": name}));
        let edited = String::from_utf8_lossy(&mutate::apply(line.as_bytes(), &edits)).into_owned();
        if let Ok(c) = parse_request(&edited) {
            let v: Value = serde_json::from_str(edited.trim()).expect("accepted text is JSON");
            prop_assert_eq!(v["version"].as_u64(), Some(PROTOCOL_VERSION), "{}", edited);
            prop_assert_eq!(v["command"].as_str(), Some(name_of(c)), "{}", edited);
        }
    }
}

fn name_of(c: Command) -> &'static str {
    match c {
        Command::Status => "status",
        Command::Reload => "reload",
    }
}
