//! Start-up failures end the process quickly with one line that names the problem.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::Result;
use e2e::Launch;

/// Runs a service that must fail (with a database of its own: tests run in parallel and
/// must never share, or race to migrate, the development database); returns its stderr.
async fn fails_with(name: &str, args: &[&str]) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let launch = match name {
        "vault" => Launch::vault(dir.path()),
        // No vault: every failure here comes first.
        _ => Launch::manager(dir.path(), "127.0.0.1:9".parse()?),
    };
    let mut command = launch.args(args).command()?;
    command.kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(30), command.output()).await??;
    assert!(!output.status.success(), "{name} {args:?} should have failed");
    Ok(String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn an_unknown_token_label_stops_start_up_with_a_clear_message() -> Result<()> {
    for name in ["vault", "manager"] {
        let stderr = fails_with(name, &["--token-label", "no-such-token"]).await?;
        assert!(
            stderr.contains("no token labelled \"no-such-token\""),
            "{name}: {stderr}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_wrong_pin_stops_start_up_without_printing_the_pin() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pin_file = dir.path().join("wrong.pin");
    std::fs::write(&pin_file, "definitely-not-the-pin\n")?;
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600))?;
    let pin_arg = pin_file.to_string_lossy().into_owned();
    for name in ["vault", "manager"] {
        let stderr = fails_with(name, &["--pin-file", &pin_arg]).await?;
        assert!(stderr.contains("refused the PIN"), "{name}: {stderr}");
        assert!(!stderr.contains("definitely-not-the-pin"));
    }
    Ok(())
}

#[tokio::test]
async fn a_pin_file_others_can_read_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pin_file = dir.path().join("open.pin");
    std::fs::write(&pin_file, "1234\n")?;
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o644))?;
    let stderr = fails_with("vault", &["--pin-file", &pin_file.to_string_lossy()]).await?;
    assert!(stderr.contains("chmod 600"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn a_missing_pkcs11_module_stops_start_up_with_a_clear_message() -> Result<()> {
    let stderr = fails_with("manager", &["--pkcs11-module", "/nonexistent/libpkcs11.so"]).await?;
    assert!(
        stderr.contains("could not load PKCS#11 module /nonexistent/libpkcs11.so"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn a_missing_tls_key_label_stops_start_up_naming_the_key() -> Result<()> {
    let stderr = fails_with("vault", &["--tls-key-label", "no-such-tls-key"]).await?;
    assert!(
        stderr.contains("cannot use TLS key \"no-such-tls-key\" in token \"vault\""),
        "{stderr}"
    );
    let stderr = fails_with("manager", &["--client-key-label", "no-such-client-key"]).await?;
    assert!(
        stderr.contains("cannot use TLS key \"no-such-client-key\" in token \"manager\""),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn a_certificate_of_another_key_stops_start_up_naming_the_file() -> Result<()> {
    // manager's certificate, valid and from the same CA, but not for vault's token key.
    let foreign = e2e::dev_dir()?.join("tls/manager-server.pem");
    let foreign = foreign.to_string_lossy();
    let stderr = fails_with("vault", &["--tls-cert", &foreign]).await?;
    assert!(
        stderr.contains(&format!("{foreign} is not the certificate of this key")),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn an_unsupported_token_algorithm_stops_start_up_naming_the_option() -> Result<()> {
    for (name, option) in [("vault", "--token-algorithms"), ("manager", "--signing-algorithm")] {
        let stderr = fails_with(name, &[option, "HS256"]).await?;
        assert!(
            stderr.contains(option) && stderr.contains("unsupported token algorithm \"HS256\""),
            "{name}: {stderr}"
        );
    }
    Ok(())
}
