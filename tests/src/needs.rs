//! Suites that need something the machine may lack (the SDK virtualenv,
//! headless Chromium, Prometheus) and say so where a plain `cargo test`
//! shows it.
//!
//! The standard test harness has no run-time skip: a test that returns
//! early reads `... ok`, and its note stays in captured output. So these
//! suites are `harness = false` binaries whose tests are [`libtest_mimic`]
//! trials: one whose need is missing is *ignored*, which `cargo test`
//! prints on the test's own line and counts in its summary, with a
//! `note:` line saying what to install. Under CI (`$CI` set) a missing
//! need fails the test instead: CI must run it.

use libtest_mimic::{Arguments, Failed, Trial};
use std::path::PathBuf;
use std::process::ExitCode;

/// Something a suite needs that is not there, and how to get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// What is missing, e.g. "chromium and chromedriver on PATH".
    pub what: String,
    /// How to get it, e.g. "apt-get install chromium chromium-driver".
    pub how: String,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "needs {} ({})", self.what, self.how)
    }
}

/// Whether this is a CI run, where nothing may be skipped.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// `name` in a directory of `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// The workspace root (`tests/` lives in it).
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

/// The Python interpreter of the SDK virtualenv (`$SLUICE_SDK_PYTHON`,
/// else `target/sdk-venv/bin/python` in the workspace), or what is missing.
pub fn sdk_python() -> Result<PathBuf, Missing> {
    let python = match std::env::var_os("SLUICE_SDK_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => workspace().join("target/sdk-venv/bin/python"),
    };
    if python.is_file() {
        return Ok(python);
    }
    Err(Missing {
        what: format!("the SDK venv's {}", python.display()),
        how: "from the workspace root: python3 -m venv target/sdk-venv && \
              target/sdk-venv/bin/pip install -r tests/sdk/requirements.txt; \
              or set SLUICE_SDK_PYTHON; see README"
            .to_owned(),
    })
}

/// A suite's tests, each with what it needs.
#[derive(Default)]
pub struct Suite {
    trials: Vec<Trial>,
    /// Name and reason of each trial ignored for a missing need.
    ignored: Vec<(String, Missing)>,
}

impl Suite {
    pub fn new() -> Self {
        Self::default()
    }

    /// A test that needs nothing.
    pub fn test(mut self, name: &str, body: impl FnOnce() + Send + 'static) -> Self {
        self.trials.push(Trial::test(name, move || {
            body();
            Ok(())
        }));
        self
    }

    /// A test that runs `body` with what `need` found. When it is missing
    /// the test is ignored (run anyway with `--include-ignored`, it fails
    /// saying what is missing), and under CI it fails.
    pub fn needing<T: Send + 'static>(
        self,
        name: &str,
        need: Result<T, Missing>,
        body: impl FnOnce(T) + Send + 'static,
    ) -> Self {
        self.needing_under(under_ci(), name, need, body)
    }

    /// [`Suite::needing`], with whether this is a CI run given.
    fn needing_under<T: Send + 'static>(
        mut self,
        ci: bool,
        name: &str,
        need: Result<T, Missing>,
        body: impl FnOnce(T) + Send + 'static,
    ) -> Self {
        match need {
            Ok(found) => {
                self.trials.push(Trial::test(name, move || {
                    body(found);
                    Ok(())
                }));
            }
            Err(missing) => {
                let failure = if ci {
                    format!("CI is set but this test {missing}; .ci/run installs it")
                } else {
                    format!("this test {missing}")
                };
                let trial = Trial::test(name, move || Err(Failed::from(failure)));
                if ci {
                    self.trials.push(trial);
                } else {
                    self.trials.push(trial.with_ignored_flag(true));
                    self.ignored.push((name.to_owned(), missing));
                }
            }
        }
        self
    }

    /// Runs the tests as `cargo test` asked (filters, `--list`,
    /// `--include-ignored` …), first noting each test ignored for a
    /// missing need.
    pub fn run(self) -> ExitCode {
        let args = &Arguments::from_args();
        if !args.list && !args.ignored && !args.include_ignored {
            for (name, missing) in &self.ignored {
                if selected(args, name) {
                    println!("note: {name} is ignored: it {missing}");
                }
            }
        }
        libtest_mimic::run(args, self.trials).exit_code()
    }
}

/// Whether the command line's filter keeps `name`.
fn selected(args: &Arguments, name: &str) -> bool {
    match &args.filter {
        None => true,
        Some(filter) if args.exact => name == filter,
        Some(filter) => name.contains(filter.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing() -> Result<(), Missing> {
        Err(Missing {
            what: "a thing".to_owned(),
            how: "get it".to_owned(),
        })
    }

    /// One test needing `need`, as it would be run. (Not run here: the
    /// trial harness prints to the real stdout, and a nested 'FAILED'
    /// line in `cargo test` output would mislead.)
    fn suite(ci: bool, need: Result<(), Missing>) -> Suite {
        Suite::new().needing_under(ci, "needs_a_thing", need, |()| {})
    }

    #[test]
    fn a_missing_need_is_ignored_outside_ci_and_fails_under_it() {
        let outside = suite(false, missing());
        assert!(outside.trials[0].has_ignored_flag());
        assert_eq!(outside.ignored.len(), 1, "and noted");
        let under = suite(true, missing());
        assert!(
            !under.trials[0].has_ignored_flag(),
            "under CI it runs, and its body is the failure"
        );
        assert!(under.ignored.is_empty());
    }

    #[test]
    fn a_present_need_runs_the_test() {
        let present = suite(false, Ok(()));
        assert!(!present.trials[0].has_ignored_flag());
        assert!(present.ignored.is_empty());
    }
}
