//! Keeping a process that holds a PIN and secrets out of core files and debuggers, and
//! giving it the descriptors its connection limits assume.

use std::fmt;

use rustix::io::Errno;
use rustix::process::{Resource, Rlimit};

/// What [`forbid_core_dumps`] could not switch off; `None` where the step worked.
#[derive(Debug, thiserror::Error)]
pub struct CoreDumpsAllowed {
    /// Why `setrlimit(RLIMIT_CORE, 0, 0)` failed.
    pub core_limit: Option<Errno>,
    /// Why `prctl(PR_SET_DUMPABLE, 0)` failed (`ENOSYS` off Linux, where it does not exist).
    pub dumpable: Option<Errno>,
}

impl fmt::Display for CoreDumpsAllowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut separator = "";
        if let Some(e) = self.core_limit {
            write!(f, "cannot set the core file size limit to 0: {e}")?;
            separator = "; ";
        }
        if let Some(e) = self.dumpable {
            write!(f, "{separator}cannot make the process non-dumpable: {e}")?;
        }
        Ok(())
    }
}

/// Sets the core file size limit to 0, soft and hard, and makes the process non-dumpable.
/// Call it first in `main`, before any secret is in memory; it is process-wide, so the
/// runtime's threads are covered whenever they started.
///
/// Both, because each covers what the other leaves open: the hard limit of 0 stops core
/// files and cannot be raised again without CAP_SYS_RESOURCE (by us, a library or a child),
/// but a `core_pattern` that pipes to a handler (systemd-coredump, apport) is handed the
/// dump whatever the limit. Not dumpable, the kernel writes no core at all, and
/// `/proc/PID/mem`, `environ` and ptrace are closed to other processes of the same user;
/// root with CAP_SYS_PTRACE still reads them (the memory-scan tests rely on that).
///
/// Both steps are always attempted; the error names each that failed. What to do then is
/// [`warn_if_allowed`]'s decision.
pub fn forbid_core_dumps() -> Result<(), CoreDumpsAllowed> {
    let zero = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    let outcome = CoreDumpsAllowed {
        core_limit: rustix::process::setrlimit(Resource::Core, zero).err(),
        dumpable: not_dumpable().err(),
    };
    match outcome {
        CoreDumpsAllowed {
            core_limit: None,
            dumpable: None,
        } => Ok(()),
        allowed => Err(allowed),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn not_dumpable() -> rustix::io::Result<()> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn not_dumpable() -> rustix::io::Result<()> {
    Err(Errno::NOSYS)
}

/// Logs a warning if [`forbid_core_dumps`] failed (it runs before logging is set up), and
/// nothing else: the service starts anyway.
///
/// Why not refuse to start: the calls fail only where a seccomp filter or an unusual
/// kernel refuses them, and the service has no option to opt out, so refusing would leave
/// it unusable there. What stays exposed, the PIN and secrets in flight, never the token's
/// keys, is exposed only to a crash caught by a core handler or to a debugger of the same
/// user, which the operator can also close (`LimitCORE=0`, `kernel.core_pattern`,
/// `kernel.yama.ptrace_scope`). The warning says so once, at start-up, where it is seen.
pub fn warn_if_allowed(outcome: &Result<(), CoreDumpsAllowed>) {
    if let Err(allowed) = outcome {
        tracing::warn!(
            error = %allowed,
            "core dumps are not forbidden: a crash may write this process's memory (token PIN, \
             secrets in flight) to a core file, and other processes of its user may read that \
             memory; starting anyway (set LimitCORE=0 or equivalent)"
        );
    }
}

/// Raises the open-files soft limit to the hard one and returns the soft limit now in
/// force (`None`: unlimited). Many systems start processes at 1,024 with a far higher hard
/// limit; left there, idle connections on one listener could take every descriptor and
/// starve the others (and the database and token connections) before any connection limit
/// applies.
pub fn raise_open_files_limit() -> Option<u64> {
    let limit = rustix::process::getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = rustix::process::setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "cannot raise the open-files limit");
        }
    }
    rustix::process::getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use rustix::process::{DumpableBehavior, dumpable_behavior, getrlimit};

    use super::*;

    /// Set for the child run of [`forbids_core_dumps_in_this_process`].
    const CHILD: &str = "SERVICE_KIT_TEST_FORBID_CORE_DUMPS";

    /// Runs only as a child of the next test, so that the test runner itself keeps its
    /// limits and stays dumpable (a debugger may still attach to it).
    #[test]
    #[ignore = "run by a_process_that_forbade_core_dumps_has_a_zero_core_limit_and_is_not_dumpable"]
    fn forbids_core_dumps_in_this_process() -> Result<(), Box<dyn std::error::Error>> {
        if std::env::var_os(CHILD).is_none() {
            return Ok(());
        }
        assert_eq!(dumpable_behavior()?, DumpableBehavior::Dumpable, "dumpable before");
        forbid_core_dumps()?;
        let limit = getrlimit(Resource::Core);
        assert_eq!((limit.current, limit.maximum), (Some(0), Some(0)));
        assert_eq!(dumpable_behavior()?, DumpableBehavior::NotDumpable);
        Ok(())
    }

    #[test]
    fn a_process_that_forbade_core_dumps_has_a_zero_core_limit_and_is_not_dumpable()
    -> Result<(), Box<dyn std::error::Error>> {
        let output = Command::new(std::env::current_exe()?)
            .args([
                "--exact",
                "process::tests::forbids_core_dumps_in_this_process",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "the child ran no test:\n{stdout}");
        Ok(())
    }
}
