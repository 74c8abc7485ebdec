//! The CPython side of the `shmkit bench` groups that run CPython rows (`cells`, `list`,
//! `throughput`): one `--python PATH` option, one way to find and run the interpreter, and one
//! behaviour when it is missing or lacks what a group needs.
//!
//! Without `--python`, `python3` is used, and if it cannot run the CPython rows (not found, a
//! module missing, a script failing) one line on stderr says what is missing and that the
//! CPython rows are skipped, and the JSON's `cpython.skipped` says why. With `--python PATH`
//! the user asked for those rows: the same failure is an error (exit 1).

use std::io::Write;
use std::process::Command;

/// The `--python` option of every group with CPython rows.
#[derive(clap::Args)]
pub(crate) struct PythonArg {
    /// The Python interpreter for the CPython rows (default `python3`, whose absence skips
    /// those rows with a notice; a PATH given here that cannot run them is an error).
    #[arg(long, value_name = "PATH")]
    python: Option<String>,
}

impl PythonArg {
    /// Whether `--python` was given.
    pub(crate) fn is_given(&self) -> bool {
        self.python.is_some()
    }
}

/// What the JSON output says of the CPython side (the `cpython` field).
#[derive(serde::Serialize)]
pub(crate) struct Report {
    /// The interpreter (`--python`, or `python3`).
    python: String,
    /// Its version (`3.11.7`), if it ran.
    version: Option<String>,
    /// Why the CPython rows were skipped (some or all), if they were.
    skipped: Option<String>,
}

/// The interpreter of one bench group's CPython rows.
pub(crate) struct CPython {
    group: &'static str,
    path: String,
    explicit: bool,
    version: Option<String>,
    skipped: Option<String>,
}

impl CPython {
    /// Find the interpreter of `arg` and check that it imports `modules` (what the group's
    /// scripts need). If it cannot, the rows are skipped (with the notice), or, if `--python`
    /// was given, this is the error.
    pub(crate) fn find(
        group: &'static str,
        arg: &PythonArg,
        modules: &[&str],
    ) -> Result<CPython, String> {
        let mut py = CPython {
            group,
            path: arg.python.clone().unwrap_or_else(|| "python3".into()),
            explicit: arg.python.is_some(),
            version: None,
            skipped: None,
        };
        let probe = format!(
            "import sys\n{}\nprint(sys.version.split()[0])",
            modules
                .iter()
                .map(|m| format!("import {m}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let version = match Command::new(&py.path).args(["-c", &probe]).output() {
            Err(e) => Err(not_run(&py.path, &e)),
            Ok(out) if !out.status.success() => {
                let err = String::from_utf8_lossy(&out.stderr);
                let last = err.lines().last().unwrap_or("").trim();
                Err(match last.strip_prefix("ModuleNotFoundError: ") {
                    Some(m) => format!("{} lacks a module the CPython rows need ({m})", py.path),
                    None => format!(
                        "{} failed to import {} ({last})",
                        py.path,
                        modules.join(", ")
                    ),
                })
            }
            Ok(out) => Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
        };
        match version {
            Ok(v) => py.version = Some(v),
            Err(why) => py.skip(why)?,
        }
        Ok(py)
    }

    /// The interpreter (`--python`, or `python3`).
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The interpreter's version, if the CPython rows run.
    pub(crate) fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Run `script` with `args` and parse its standard output: `None` if the CPython rows are
    /// skipped (now, with the notice, if this run fails; or already). An error only if
    /// `--python` was given.
    pub(crate) fn run<T>(
        &mut self,
        what: &str,
        script: &str,
        args: &[String],
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, String> {
        if self.skipped.is_some() {
            return Ok(None);
        }
        let got = match Command::new(&self.path)
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
        {
            Err(e) => Err(not_run(&self.path, &e)),
            Ok(out) if !out.status.success() => {
                let err = String::from_utf8_lossy(&out.stderr);
                Err(format!(
                    "{what} failed under {} ({})",
                    self.path,
                    err.lines().last().unwrap_or("").trim()
                ))
            }
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stdout);
                parse(&text)
                    .ok_or_else(|| format!("{what} under {} printed {:?}", self.path, text.trim()))
            }
        };
        match got {
            Ok(v) => Ok(Some(v)),
            Err(why) => self.skip(why).map(|()| None),
        }
    }

    /// The CPython rows cannot run, because of `why`: an error if `--python` was given, else
    /// the one-line notice on stderr, and every later CPython row of the group skipped.
    fn skip(&mut self, why: String) -> Result<(), String> {
        if self.explicit {
            return Err(format!("{why}: cannot run the CPython rows"));
        }
        // As `main` writes its error line: a failed write to stderr is not the bench's error.
        let _ = writeln!(
            std::io::stderr(),
            "shmkit bench {}: {why}: the CPython rows are skipped",
            self.group
        );
        self.skipped = Some(why);
        Ok(())
    }

    /// The JSON's `cpython` field.
    pub(crate) fn report(&self) -> Report {
        Report {
            python: self.path.clone(),
            version: self.version.clone(),
            skipped: self.skipped.clone(),
        }
    }
}

/// Why `path` did not start: "python3 not found", or the error.
fn not_run(path: &str, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        format!("{path} not found")
    } else {
        format!("{path} cannot be run ({e})")
    }
}
