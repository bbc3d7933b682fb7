//! Errors as one line: for log fields and for start-up failures.

use std::process::ExitCode;

/// "outer: inner: innermost". For logs and stderr only; clients get generic messages.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// The process exit for a service's `main`: success, or one line on stderr naming the
/// problem and its causes (`vault: cannot open token "x" …: no token labelled "x" …`).
pub fn exit_status(program: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{program}: {}", error_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}
