//! Provisioning that was interrupted finishes when run again: the container image's token
//! server, `setup.sh` and operators all re-run `hsm-admin init-token` and the key commands.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use anyhow::{Result, ensure};
use e2e::{Implementation, binary, stdout_of};

/// A token initialised (C_InitToken) but killed before its user PIN was set (C_InitPIN) took
/// every later step down with it; `init-token` now sets the missing PIN.
#[test]
fn init_token_completes_a_token_left_without_a_user_pin() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (variable, conf) = Implementation::SoftHsm.private_copy(dir.path())?;
    let module = Implementation::SoftHsm.module()?;
    let (so_pin, pin) = (dir.path().join("so.pin"), dir.path().join("user.pin"));
    for (path, value) in [(&so_pin, "half-so-pin-1234"), (&pin, "half-user-pin-5678")] {
        std::fs::write(path, value)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    // What an interrupted init leaves: OpenSC initialises the token in SoftHSM's free slot
    // and sets no user PIN.
    let pkcs11_tool = |args: &[&str]| {
        Command::new("pkcs11-tool")
            .env(variable, &conf)
            .arg("--module")
            .arg(&module)
            .args(args)
            .output()
    };
    let slots = String::from_utf8_lossy(&pkcs11_tool(&["--list-slots"])?.stdout).into_owned();
    let free = slots
        .split("\nSlot ")
        .find(|slot| slot.contains("uninitialized"))
        .and_then(|slot| slot.split_once("(0x"))
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(id, _)| format!("0x{id}"))
        .ok_or_else(|| anyhow::anyhow!("no free slot in {slots}"))?;
    let half = pkcs11_tool(&[
        "--slot",
        &free,
        "--init-token",
        "--label",
        "half",
        "--so-pin",
        "half-so-pin-1234",
    ])?;
    ensure!(
        half.status.success(),
        "pkcs11-tool: {}",
        String::from_utf8_lossy(&half.stderr)
    );

    let admin = |args: &[&str]| -> Result<String> {
        stdout_of(
            Command::new(binary("hsm-admin")?)
                .env(variable, &conf)
                .arg("--module")
                .arg(&module)
                .args(["--token", "half", "--pin-file"])
                .arg(&pin)
                .args(args),
            &format!("hsm-admin {args:?}"),
        )
    };
    let so = so_pin.display().to_string();
    let first = admin(&["init-token", "--so-pin-file", &so])?;
    ensure!(first.contains("had no user PIN"), "init-token said: {first}");
    // The user PIN works: a key is made with it, and a second run changes nothing.
    admin(&["generate-rsa", "--label", "k", "--id", "09", "--usage", "sign"])?;
    let again = admin(&["init-token", "--so-pin-file", &so])?;
    ensure!(!again.contains("had no user PIN"), "init-token said: {again}");
    Ok(())
}
