//! SOCKS4/4a/5 requests over an in-memory stream: generated requests parse to exactly
//! the target they encode and leave what follows unread; cut short, they fail at the end
//! of input instead of waiting; no input makes the parser read more than the largest
//! request can take.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};
use tunneld_core::socks::{Request, SocksError, Version, read_request};

use crate::mutate;

/// Fixed part of a SOCKS4 request: version, command, port, IPv4 address.
const V4_HEAD_BYTES: usize = 8;
/// Longest SOCKS4 user id or SOCKS4a host name, as the protocol's servers agree.
const V4_STRING_BYTES: usize = 255;
/// The most a SOCKS4a request can make the parser read: two strings cut off at their
/// 256th byte (or ended there by their NUL).
const MAX_V4_READ_BYTES: usize = V4_HEAD_BYTES + 2 * (V4_STRING_BYTES + 1);
/// The most a SOCKS5 greeting and request can take: 255 methods, a 255-byte name.
const MAX_V5_READ_BYTES: usize = 2 + 255 + 4 + 1 + 255 + 2;
/// A parser that waits for input that never comes fails its case instead of hanging
/// the suite.
const CASE_TIMEOUT: Duration = Duration::from_secs(10);

/// What one run of `read_request` did.
#[derive(Debug)]
struct Outcome {
    result: Result<Request, SocksError>,
    /// Bytes of the input the parser took.
    consumed: usize,
    /// What the parser wrote back to the client.
    replies: Vec<u8>,
}

/// Feeds `input` to `read_request` through a duplex stream. With `eof`, the client's
/// writer is shut after the input, so a parser that needs more sees end of input;
/// without, the writer stays open and a parser that wants more waits (and the case
/// times out).
fn serve(input: &[u8], eof: bool) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        // Room for all of the input and every reply, so no write waits on a reader.
        let (mut client, mut server) = duplex(input.len() + 4096);
        client.write_all(input).await.expect("write the input");
        if eof {
            client.shutdown().await.expect("shut the client's writer");
        }
        let result = tokio::time::timeout(CASE_TIMEOUT, read_request(&mut server))
            .await
            .unwrap_or_else(|_| panic!("read_request still waits after {CASE_TIMEOUT:?}"));
        // What the parser left unread tells how much it took.
        if !eof {
            client.shutdown().await.expect("shut the client's writer");
        }
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.expect("read the rest");
        drop(server);
        let mut replies = Vec::new();
        client
            .read_to_end(&mut replies)
            .await
            .expect("read the replies");
        Outcome {
            result,
            consumed: input.len() - rest.len(),
            replies,
        }
    })
}

/// A SOCKS5 address: type byte, encoded address, and the host the parser should give.
#[derive(Debug, Clone)]
struct Addr5 {
    atyp: u8,
    encoded: Vec<u8>,
    host: String,
}

fn addr5() -> impl Strategy<Value = Addr5> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|ip| Addr5 {
            atyp: 1,
            encoded: ip.to_vec(),
            host: Ipv4Addr::from(ip).to_string(),
        }),
        any::<[u8; 16]>().prop_map(|ip| Addr5 {
            atyp: 4,
            encoded: ip.to_vec(),
            host: Ipv6Addr::from(ip).to_string(),
        }),
        host_name(255).prop_map(|name| {
            let mut encoded = vec![u8::try_from(name.len()).expect("at most 255 bytes")];
            encoded.extend_from_slice(name.as_bytes());
            Addr5 {
                atyp: 3,
                encoded,
                host: name,
            }
        }),
    ]
}

/// A non-empty host name of at most `max_bytes` UTF-8 bytes without NUL: a DNS-style
/// name, or any characters at all (the parser hands names to the server unresolved).
fn host_name(max_bytes: usize) -> impl Strategy<Value = String> {
    let any_chars = vec(any::<char>().prop_filter("no NUL", |c| *c != '\0'), 1..64)
        .prop_map(String::from_iter)
        .prop_filter("fits", move |s| s.len() <= max_bytes);
    let regex = |r: String| proptest::string::string_regex(&r).expect("a valid regex");
    prop_oneof![
        regex(format!("[a-z0-9.-]{{1,{max_bytes}}}")),
        // The longest name the protocol allows.
        regex(format!("[a-z0-9.-]{{{max_bytes}}}")),
        any_chars,
    ]
}

/// SOCKS5 methods offered: any list that includes "no authentication" (0).
fn methods_with_no_auth() -> impl Strategy<Value = Vec<u8>> {
    (vec(any::<u8>(), 0..255), any::<usize>()).prop_map(|(mut m, at)| {
        let at = at % (m.len() + 1);
        m.insert(at, 0);
        m
    })
}

fn socks5_request(methods: &[u8], command: u8, addr: &Addr5, port: u16) -> Vec<u8> {
    let mut req = vec![5, u8::try_from(methods.len()).expect("at most 255 methods")];
    req.extend_from_slice(methods);
    req.extend_from_slice(&[5, command, 0, addr.atyp]);
    req.extend_from_slice(&addr.encoded);
    req.extend_from_slice(&port.to_be_bytes());
    req
}

/// A SOCKS4 or SOCKS4a target: the address field, the name after the user id (4a),
/// and the host the parser should give.
#[derive(Debug, Clone)]
struct Target4 {
    ip: [u8; 4],
    name: Option<String>,
    host: String,
}

fn target4() -> impl Strategy<Value = Target4> {
    prop_oneof![
        any::<[u8; 4]>()
            // 0.0.0.x with x != 0 announces a SOCKS4a name.
            .prop_filter("not a SOCKS4a marker", |ip| ip[..3] != [0, 0, 0]
                || ip[3] == 0)
            .prop_map(|ip| Target4 {
                ip,
                name: None,
                host: Ipv4Addr::from(ip).to_string(),
            }),
        (1..=255u8, host_name(V4_STRING_BYTES)).prop_map(|(x, name)| Target4 {
            ip: [0, 0, 0, x],
            name: Some(name.clone()),
            host: name,
        }),
    ]
}

/// A user id without NUL: any length the protocol allows, the longest one often.
fn user_id() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(1..=255u8, 0..=V4_STRING_BYTES),
        vec(1..=255u8, V4_STRING_BYTES),
    ]
}

fn socks4_request(command: u8, port: u16, target: &Target4, user: &[u8]) -> Vec<u8> {
    let mut req = vec![4, command];
    req.extend_from_slice(&port.to_be_bytes());
    req.extend_from_slice(&target.ip);
    req.extend_from_slice(user);
    req.push(0);
    if let Some(name) = &target.name {
        req.extend_from_slice(name.as_bytes());
        req.push(0);
    }
    req
}

/// Any valid CONNECT request, SOCKS4, 4a or 5.
fn any_valid_request() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (methods_with_no_auth(), addr5(), any::<u16>())
            .prop_map(|(m, a, port)| socks5_request(&m, 1, &a, port)),
        (any::<u16>(), target4(), user_id())
            .prop_map(|(port, t, u)| socks4_request(1, port, &t, &u)),
    ]
}

/// The most bytes a request starting with `first` may make the parser read.
fn read_bound(first: Option<&u8>) -> usize {
    match first {
        Some(4) => MAX_V4_READ_BYTES,
        Some(5) => MAX_V5_READ_BYTES,
        _ => 1,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn socks5_connect_parses_to_the_encoded_target(
        methods in methods_with_no_auth(),
        addr in addr5(),
        port in any::<u16>(),
        after in vec(any::<u8>(), 0..64),
    ) {
        let req = socks5_request(&methods, 1, &addr, port);
        let input = [req.as_slice(), &after].concat();
        // The writer stays open: a parser that read past the request would wait.
        let out = serve(&input, false);
        let want = Request { version: Version::V5, host: addr.host.clone(), port };
        prop_assert_eq!(out.result.expect("a valid request"), want);
        prop_assert_eq!(out.consumed, req.len(), "bytes after the request were read");
        prop_assert_eq!(out.replies, vec![5, 0]);
    }

    #[test]
    fn socks4_and_4a_connect_parse_to_the_encoded_target(
        port in any::<u16>(),
        target in target4(),
        user in user_id(),
        after in vec(any::<u8>(), 0..64),
    ) {
        let req = socks4_request(1, port, &target, &user);
        let input = [req.as_slice(), &after].concat();
        let out = serve(&input, false);
        let want = Request { version: Version::V4, host: target.host.clone(), port };
        prop_assert_eq!(out.result.expect("a valid request"), want);
        prop_assert_eq!(out.consumed, req.len(), "bytes after the request were read");
        prop_assert!(out.replies.is_empty(), "{:?}", out.replies);
    }

    #[test]
    fn truncated_requests_fail_at_end_of_input(req in any_valid_request(), cut in any::<usize>()) {
        let cut = cut % req.len();
        let out = serve(&req[..cut], true);
        match out.result {
            Err(SocksError::Io(e)) => {
                prop_assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
            }
            other => prop_assert!(false, "{} of {} bytes gave {:?}", cut, req.len(), other),
        }
        prop_assert_eq!(out.consumed, cut);
    }

    #[test]
    fn over_long_socks4_strings_are_refused_at_255_bytes(
        target in target4(),
        user in user_id(),
        long in vec(1..=255u8, V4_STRING_BYTES + 1..2000),
        long_name in any::<bool>(),
    ) {
        // Either the user id or the SOCKS4a name runs on without its NUL while the client
        // keeps the connection open: the parser must give up at the limit, not wait.
        let (input, head) = if long_name {
            let ip = [0, 0, 0, 1];
            let mut input = socks4_request(1, 80, &Target4 { ip, name: None, host: String::new() }, &user);
            let head = input.len();
            input.extend_from_slice(&long);
            (input, head)
        } else {
            let mut input = socks4_request(1, 80, &target, &[]);
            input.truncate(V4_HEAD_BYTES);
            input.extend_from_slice(&long);
            (input, V4_HEAD_BYTES)
        };
        let out = serve(&input, false);
        prop_assert!(
            matches!(&out.result, Err(SocksError::Malformed(m)) if m.contains("255")),
            "{:?}", out.result
        );
        prop_assert_eq!(out.consumed, head + V4_STRING_BYTES + 1);
    }

    #[test]
    fn refused_requests_are_answered(
        methods in vec(1..=255u8, 1..255),
        addr in addr5(),
        command in 2..=255u8,
        bad_atyp in any::<u8>().prop_filter("unknown type", |t| ![1, 3, 4].contains(t)),
        target in target4(),
        user in user_id(),
    ) {
        // No "no authentication" method: refused with 0xff after the greeting alone.
        let mut greeting = vec![5, u8::try_from(methods.len()).expect("fits")];
        greeting.extend_from_slice(&methods);
        let out = serve(&greeting, false);
        prop_assert!(matches!(out.result, Err(SocksError::Unsupported(_))), "{:?}", out.result);
        prop_assert_eq!(out.consumed, greeting.len());
        prop_assert_eq!(out.replies, vec![5, 0xff]);

        // A SOCKS5 command other than CONNECT: "command not supported" (7).
        let req = socks5_request(&[0], command, &addr, 80);
        let out = serve(&req, false);
        prop_assert!(matches!(out.result, Err(SocksError::Unsupported(_))), "{:?}", out.result);
        prop_assert_eq!(out.consumed, req.len());
        prop_assert_eq!(out.replies, vec![5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0]);

        // An unknown address type: "address type not supported" (8), read no further.
        let mut req = socks5_request(&[0], 1, &addr, 80);
        req[6] = bad_atyp;
        let out = serve(&req, false);
        prop_assert!(matches!(out.result, Err(SocksError::Unsupported(_))), "{:?}", out.result);
        prop_assert_eq!(out.consumed, 7);
        prop_assert_eq!(out.replies, vec![5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0]);

        // A SOCKS4 command other than CONNECT: "rejected" (0x5b).
        let req = socks4_request(command, 80, &target, &user);
        let out = serve(&req, false);
        prop_assert!(matches!(out.result, Err(SocksError::Unsupported(_))), "{:?}", out.result);
        prop_assert_eq!(out.replies, vec![0, 0x5b, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn any_input_ends_in_an_answer_within_the_read_bound(
        first in prop_oneof![Just(4u8), Just(5u8), any::<u8>()],
        rest in vec(any::<u8>(), 0..1200),
    ) {
        let input = [&[first][..], &rest].concat();
        let out = serve(&input, true);
        prop_assert!(out.consumed <= read_bound(input.first()), "read {} bytes", out.consumed);
        if let Ok(req) = out.result {
            prop_assert!(!req.host.is_empty());
        }
    }

    #[test]
    fn edited_requests_end_in_an_answer_within_the_read_bound(
        req in any_valid_request(),
        edits in mutate::edits(prop_oneof![Just(0u8), Just(1), Just(3), Just(4), Just(5), Just(255), any::<u8>()]),
    ) {
        let input = mutate::apply(&req, &edits);
        let out = serve(&input, true);
        prop_assert!(out.consumed <= read_bound(input.first()), "read {} bytes", out.consumed);
        if let Ok(req) = out.result {
            prop_assert!(!req.host.is_empty());
        }
    }
}
