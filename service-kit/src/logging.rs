//! Logging: stderr, filtered by `RUST_LOG`, each event one line (text or a JSON object)
//! whatever text it carries.

use std::io::{self, Write};

/// How each event is written (the services' `log_format` option).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `<timestamp>  INFO <target>: <message> key=value …`, for people.
    #[default]
    Text,
    /// One JSON object a line (`timestamp`, `level`, `fields`, `target`), for log
    /// collectors. The same fields as the text lines: no PIN, token or secret in either.
    Json,
}

/// Sends logs to stderr in `format`, filtered by `RUST_LOG` (default `info`), one line per
/// event. Stdout is kept for the `listening` lines that scripts and tests read.
///
/// Log fields carry text from requests (serde's and jsonwebtoken's messages, an unknown
/// field's name, a token header's `alg`), and the fmt layer writes field values as they
/// are: a newline in one would start a forged line, an ESC would drive the terminal. So
/// every event goes through `OneLine`, and without colours: their ESCs could not be told
/// from a request's. The JSON formatter escapes C0 controls itself; `OneLine` escapes the
/// rest (DEL, C1, the Unicode line separators) as JSON `\uXXXX` escapes, which is still
/// valid JSON since those can only stand inside a string.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false);
    match format {
        LogFormat::Text => builder.with_writer(|| OneLine::new(io::stderr(), Escape::Text)).init(),
        LogFormat::Json => builder
            .json()
            .with_writer(|| OneLine::new(io::stderr(), Escape::Json))
            .init(),
    }
}

/// How [`OneLine`] writes the control characters of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// `\n`, `\r`, `\t`, others as `\u{..}`.
    Text,
    /// As JSON string escapes: `\n`, `\r`, `\t`, others as `\u00XX`.
    Json,
}

/// One event's output as exactly one line. The fmt layer asks for a writer per event and
/// writes the formatted event into it (one `write_all` today); this collects whatever it is
/// given and, when dropped, writes it with every control character escaped (`\n`, `\r`,
/// `\t`, others as `\u{..}`) and a single newline at the end, added if missing. One write
/// of a whole line also keeps concurrent events from interleaving.
struct OneLine<W: Write> {
    inner: W,
    escape: Escape,
    event: Vec<u8>,
}

impl<W: Write> OneLine<W> {
    fn new(inner: W, escape: Escape) -> Self {
        Self {
            inner,
            escape,
            event: Vec::new(),
        }
    }
}

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.event.extend_from_slice(buf);
        Ok(buf.len())
    }

    /// Writes nothing: a line written before the event ends would let the rest of the
    /// event start a line of its own.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for OneLine<W> {
    fn drop(&mut self) {
        if self.event.is_empty() {
            return;
        }
        let line = escape_line(&String::from_utf8_lossy(&self.event), self.escape);
        // Like the fmt layer's own writes: a log that cannot be written is not worth a panic.
        let _ = self.inner.write_all(line.as_bytes());
        let _ = self.inner.flush();
    }
}

/// `event` with its one trailing newline, if any, as the line's end and every other
/// control character, C0, DEL and C1 (and the Unicode line and paragraph separators, which
/// some viewers break lines at) written out as text, the way `escape` says.
fn escape_line(event: &str, escape: Escape) -> String {
    use std::fmt::Write as _;
    let text = event.strip_suffix('\n').unwrap_or(event);
    let mut line = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        match c {
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = match escape {
                    Escape::Text => write!(line, "\\u{{{:x}}}", u32::from(c)),
                    Escape::Json => write!(line, "\\u{:04x}", u32::from(c)),
                };
            }
            c => line.push(c),
        }
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A log sink the tests read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What `writes` come out as, written by one [`OneLine`].
    fn one_event(writes: &[&str]) -> String {
        let mut out = Vec::new();
        {
            let mut writer = OneLine::new(&mut out, Escape::Text);
            for text in writes {
                writer.write_all(text.as_bytes()).expect("write");
                writer.flush().expect("flush");
            }
        }
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn a_plain_event_passes_unchanged() {
        let event = "2026-01-01T00:00:00.000000Z  INFO vault::error: request refused error=é ok\n";
        assert_eq!(one_event(&[event]), event);
    }

    #[test]
    fn control_characters_inside_an_event_are_escaped() {
        let event = "refused kid=a\nFORGED\r\tb\u{1b}[31m\u{7}\u{0}\u{7f}\u{9b}\u{85}\u{2028}c\n";
        assert_eq!(
            one_event(&[event]),
            "refused kid=a\\nFORGED\\r\\tb\\u{1b}[31m\\u{7}\\u{0}\\u{7f}\\u{9b}\\u{85}\\u{2028}c\n"
        );
    }

    #[test]
    fn an_event_in_pieces_or_without_a_newline_is_still_one_line() {
        assert_eq!(
            one_event(&["refused", " kid=a\n", "FORGED\n"]),
            "refused kid=a\\nFORGED\n"
        );
        assert_eq!(one_event(&["no newline"]), "no newline\n");
        assert_eq!(one_event(&["two\n\n"]), "two\\n\n");
        assert_eq!(one_event(&[]), "");
    }

    #[test]
    fn the_fmt_layer_writes_each_event_as_one_escaped_line() {
        let out = Shared::default();
        let make = {
            let out = out.clone();
            move || OneLine::new(out.clone(), Escape::Text)
        };
        let subscriber = tracing_subscriber::fmt().with_writer(make).with_ansi(false).finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(error = %"unknown variant `RS\nFORGED\u{1b}[2J`", "request refused");
            tracing::info!(kid = ?"a\nb", "second");
        });
        let log = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "{log}");
        assert!(
            lines[0].ends_with(r"error=unknown variant `RS\nFORGED\u{1b}[2J`"),
            "{log}"
        );
        assert!(lines[1].ends_with(r#"kid="a\nb""#), "{log}");
        assert!(!log.chars().any(|c| c.is_control() && c != '\n'), "{log}");
    }

    #[test]
    fn the_json_layer_writes_each_event_as_one_json_object_per_line() {
        let out = Shared::default();
        let make = {
            let out = out.clone();
            move || OneLine::new(out.clone(), Escape::Json)
        };
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(make)
            .with_ansi(false)
            .finish();
        let hostile = "RS\nFORGED\u{1b}[2J\u{7f}\u{9b}\u{2028}end";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(error = %hostile, "request refused");
            tracing::warn!(kid = ?"a\nb", "second");
        });
        let log = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "{log}");
        assert!(!log.chars().any(|c| c.is_control() && c != '\n'), "{log}");
        assert!(!log.contains('\u{2028}'), "{log}");
        let first: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON object");
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["fields"]["message"], "request refused");
        assert_eq!(
            first["fields"]["error"], hostile,
            "escaped, yet the same text once parsed"
        );
        let second: serde_json::Value = serde_json::from_str(lines[1]).expect("a JSON object");
        assert_eq!(second["fields"]["kid"], "\"a\\nb\"");
    }
}
