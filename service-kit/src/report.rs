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

/// Ends the process now with [`exit_status`]'s code. A service calls this rather than
/// returning from `main`: returning drops the runtime, which waits for every blocking
/// task, and a PKCS#11 call stuck on a vanished token server would never return.
pub fn exit(program: &str, result: anyhow::Result<()>) -> ! {
    let failed = result.is_err();
    let _ = exit_status(program, result);
    std::process::exit(i32::from(failed))
}
