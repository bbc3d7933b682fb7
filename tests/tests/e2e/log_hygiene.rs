//! Hostile requests leave neither their values nor their line breaks in the services' logs.

use anyhow::Result;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contract::error_code::ErrorCode;
use e2e::jwt::forge;
use e2e::{Answer, System, answer, error_code};
use reqwest::StatusCode;
use serde_json::json;

/// A card number: what a client that mistyped `key_data` would have sent.
const CARD: &str = "4111111111111111";
/// Too big for any integer field.
const HUGE: &str = "98765432109876543210";
/// Text an attacker would like to see at the start of a log line of its own.
const FORGED: &str = "FORGED-LOG-LINE";
/// A forged line that looks like the subscriber's own, but from another century.
const SPOOFED: &str = "1999-12-31T23:59:59.999999Z  INFO vault::error: FORGED-LOG-LINE";

async fn post_raw(system: &System, body: String) -> Result<Answer> {
    let request = system
        .http()
        .post(system.manager_url("/api/keys"))
        .header("content-type", "application/json")
        .body(body);
    answer(request.send().await?).await
}

/// Whether `line` starts as the subscriber's lines do: an RFC 3339 timestamp.
fn starts_with_timestamp(line: &str) -> bool {
    let bytes = line.as_bytes();
    bytes.len() > 20
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
}

/// Every line of `log` is one of the subscriber's, and no control character but the
/// newlines that end them made it in (a lone `\r` or an ESC would rewrite a terminal line).
fn assert_one_event_per_line(service: &str, log: &str) {
    for line in log.lines() {
        assert!(
            starts_with_timestamp(line),
            "{service} log has a line of its own: {line:?}"
        );
        assert!(!line.starts_with("1999-"), "{service} log has a forged line: {line:?}");
    }
    let control = log.chars().find(|c| c.is_control() && *c != '\n');
    assert_eq!(control, None, "{service} log carries a raw control character:\n{log}");
}

#[tokio::test]
async fn mistyped_fields_are_named_in_400s_and_logs_without_their_values() -> Result<()> {
    let system = System::start().await?;
    // Field the answer must name, body.
    let cases = [
        ("key_data", format!(r#"{{"user_id": "u", "key_data": {CARD}}}"#)),
        ("key_data", format!(r#"{{"user_id": "u", "key_data": {CARD}.5}}"#)),
        ("key_data", format!(r#"{{"user_id": "u", "key_data": [{CARD}]}}"#)),
        ("key_data", r#"{"user_id": "u", "key_data": true}"#.to_owned()),
        ("user_id", format!(r#"{{"user_id": {CARD}, "key_data": "x"}}"#)),
        (
            "ttl_seconds",
            format!(r#"{{"user_id": "u", "key_data": "x", "ttl_seconds": "{CARD}"}}"#),
        ),
        (
            "ttl_seconds",
            format!(r#"{{"user_id": "u", "key_data": "x", "ttl_seconds": -{CARD}}}"#),
        ),
        (
            "ttl_seconds",
            format!(r#"{{"user_id": "u", "key_data": "x", "ttl_seconds": {HUGE}}}"#),
        ),
        (
            "max_reads",
            format!(r#"{{"user_id": "u", "key_data": "x", "max_reads": {HUGE}}}"#),
        ),
        (
            "max_reads",
            format!(r#"{{"user_id": "u", "key_data": "x", "max_reads": {CARD}}}"#),
        ),
    ];
    for (field, body) in cases {
        let (status, answer) = post_raw(&system, body.clone()).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(error_code(&answer)?, ErrorCode::InvalidRequest, "{body}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{body}: {message:?} should name {field}");
        for value in [CARD, HUGE, &HUGE[..12]] {
            assert!(!message.contains(value), "{body}: {message:?} echoes the value");
        }
    }
    let log = system.manager.log_text();
    assert!(log.contains("wrong type"), "the refusals should be logged:\n{log}");
    for value in [CARD, HUGE, &HUGE[..12]] {
        assert!(!log.contains(value), "manager's log holds {value}:\n{log}");
    }
    assert_one_event_per_line("manager", &log);
    Ok(())
}

#[tokio::test]
async fn control_characters_in_requests_never_start_a_log_line() -> Result<()> {
    let system = System::start().await?;
    let unknown_field = json!({"user_id": "u", "key_data": "x", format!("a\n{FORGED}\u{1b}[31m"): 1});
    let (status, answer) = system.post_keys(&unknown_field).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        !answer.to_string().contains(FORGED),
        "the 400 echoes the field name: {answer}"
    );

    let claims = json!({"sub": "u", "key_id": "k", "exp": 4_000_000_000u64});
    let headers = [
        json!({"alg": "RS256", "typ": "JWT", "kid": format!("a\n{FORGED} kid\u{1b}[31m\r\t")}),
        json!({"alg": format!("RS\n{FORGED} alg\u{1b}]0;title\u{7}"), "typ": "JWT", "kid": "k"}),
        json!({"alg": format!("RS\r\n{SPOOFED}"), "typ": "JWT", "kid": "k"}),
        json!(format!("not a header\n{FORGED}\u{1b}[2J")),
        // Values the parser would quote in its message.
        json!({"alg": "RS256", "typ": "JWT", "kid": 4_111_111_111_111_111u64}),
        json!({"alg": "RS256", "typ": "JWT", "kid": CARD}),
        json!({"alg": CARD, "typ": "JWT", "kid": "k"}),
    ];
    let mut tokens: Vec<String> = headers
        .iter()
        .map(|header| forge(header, &claims, |_| b"signature".to_vec()))
        .collect();
    let raw_header = format!("{{\"alg\":\"RS256\",\n\"kid\":\"k\"}}\n{FORGED} raw\u{1b}[2J");
    tokens.push(format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(raw_header),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    ));
    let key_id = uuid::Uuid::new_v4().to_string();
    for token in &tokens {
        let (status, answer) = system.read(&key_id, token).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}: {answer}");
        assert_eq!(error_code(&answer)?, ErrorCode::InvalidToken, "{token}");
    }

    // Refusals are logged by kind, with nothing of the header's text; the one-line writer
    // stays as a second line of defence for any text that does reach a log.
    let vault = system.vault.log_text();
    assert!(
        vault.contains("malformed token header"),
        "the refusals should be logged:\n{vault}"
    );
    assert!(!vault.contains(FORGED), "header text reached vault's log:\n{vault}");
    assert!(!vault.contains(CARD), "a header value reached vault's log:\n{vault}");
    assert_one_event_per_line("vault", &vault);
    assert_one_event_per_line("manager", &system.manager.log_text());
    Ok(())
}
