//! What the `infuse` command's tests share: running the binary and reading its answers.

use std::ffi::OsStr;
use std::process::{Command, Output};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_infuse");

/// Runs `infuse <args…>` to completion, without the environment's `REDIS_URL`.
pub fn infuse<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(BIN)
        .args(args)
        .env_remove("REDIS_URL")
        .output()
        .expect("run the infuse binary")
}

/// The standard output of a command that succeeded.
pub fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "infuse failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The one line a failed command writes on stderr.
#[allow(dead_code)] // not every test binary checks failures
pub fn failure(output: &Output) -> String {
    assert!(!output.status.success(), "expected a failure");
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    text
}

/// `status --json`'s array.
#[allow(dead_code)] // not every test binary reads JSON
pub fn json_array(output: &Output) -> Vec<Value> {
    match serde_json::from_str(&stdout(output)).expect("status --json prints JSON") {
        Value::Array(items) => items,
        other => panic!("not an array: {other}"),
    }
}
