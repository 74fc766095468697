//! A build's directory, laid out as Zuul's (`ansible/`, `trusted/`, `untrusted/`, `home/`,
//! `work/{src,logs,tmp}`, `.ansible/`), and the executor's own lines in `job-output.txt`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Paths of one build directory. Every path is absolute.
#[derive(Debug, Clone)]
pub struct JobDir {
    /// `<work_root>/<uuid>`.
    pub root: PathBuf,
    /// `ansible/`: per-playbook configs and inventories (read-only in the sandbox).
    pub ansible: PathBuf,
    /// `trusted/`: branch-tip checkouts for trusted playbooks and roles.
    pub trusted: PathBuf,
    /// `untrusted/`: speculative checkouts for untrusted playbooks and roles.
    pub untrusted: PathBuf,
    /// `home/`: `$HOME` in the sandbox.
    pub home: PathBuf,
    /// `work/`: the sandbox's working directory.
    pub work: PathBuf,
    /// `work/src/`: the workspace repos.
    pub src: PathBuf,
    /// `work/logs/`.
    pub logs: PathBuf,
    /// `work/tmp/`: Ansible's local tmp.
    pub tmp: PathBuf,
    /// `.ansible/`: fact cache, ssh control paths, unreachable list.
    pub dot_ansible: PathBuf,
}

impl JobDir {
    /// Creates the layout under `work_root/uuid` (mode 0700).
    pub fn create(work_root: &Path, uuid: &str) -> io::Result<Self> {
        let work_root = std::path::absolute(work_root)?;
        let root = work_root.join(uuid);
        let dir = Self {
            ansible: root.join("ansible"),
            trusted: root.join("trusted"),
            untrusted: root.join("untrusted"),
            home: root.join("home"),
            work: root.join("work"),
            src: root.join("work/src"),
            logs: root.join("work/logs"),
            tmp: root.join("work/tmp"),
            dot_ansible: root.join(".ansible"),
            root,
        };
        fs::create_dir_all(&work_root)?;
        fs::DirBuilder::new().mode(0o700).create(&dir.root)?;
        for path in [
            &dir.ansible,
            &dir.trusted,
            &dir.untrusted,
            &dir.home,
            &dir.src,
            &dir.logs,
            &dir.tmp,
        ] {
            fs::create_dir_all(path)?;
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(dir.home.join(".ssh"))?;
        for sub in ["fact-cache", "cp"] {
            fs::create_dir_all(dir.dot_ansible.join(sub))?;
        }
        Ok(dir)
    }

    /// `work/logs/job-output.txt`.
    pub fn job_output(&self) -> PathBuf {
        self.logs.join("job-output.txt")
    }

    /// `work/logs/job-output.json`.
    pub fn job_output_json(&self) -> PathBuf {
        self.logs.join("job-output.json")
    }

    /// `work/results.json`, written by `zuul_return`.
    pub fn results(&self) -> PathBuf {
        self.work.join("results.json")
    }

    /// `.ansible/nodes.unreachable`.
    pub fn unreachable(&self) -> PathBuf {
        self.dot_ansible.join("nodes.unreachable")
    }

    /// Removes what a finished build no longer needs (checkouts, configs, home, caches), keeping
    /// `work/logs` and `work/results.json`.
    pub fn remove_all_but_logs(&self) {
        for path in [
            &self.ansible,
            &self.trusted,
            &self.untrusted,
            &self.home,
            &self.dot_ansible,
            &self.src,
            &self.tmp,
        ] {
            if let Err(e) = fs::remove_dir_all(path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove");
                }
            }
        }
    }

    /// Reads a file the build wrote, refusing it unless its resolved path is the literal one: a
    /// playbook must not make the executor read elsewhere through a symlink.
    pub fn read_build_file(&self, path: &Path) -> io::Result<Option<String>> {
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
            Ok(meta) if !meta.is_file() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a regular file", path.display()),
                ))
            }
            Ok(_) => {}
        }
        if fs::canonicalize(path)? != path {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} resolves elsewhere", path.display()),
            ));
        }
        fs::read_to_string(path).map(Some)
    }
}

/// Zuul's timestamp: local time, microseconds omitted when zero (Python's `str(datetime)`).
pub fn timestamp(now: chrono::DateTime<chrono::Local>) -> String {
    use chrono::Timelike;
    if now.nanosecond() / 1000 == 0 {
        now.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        now.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
    }
}

/// Formats one `job-output.txt` line: `<ts> | <msg>` with the message right-stripped.
pub fn output_line(now: chrono::DateTime<chrono::Local>, msg: &str) -> String {
    format!("{} | {}\n", timestamp(now), msg.trim_end())
}

/// The executor's writer of `job-output.txt` lines (the callbacks append to the same file
/// while a playbook runs; the executor writes only between playbooks).
#[derive(Debug)]
pub struct JobOutput {
    file: Mutex<File>,
}

impl JobOutput {
    /// Creates the file with its first line, `Job console starting`.
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(path)?;
        let out = Self {
            file: Mutex::new(file),
        };
        out.line("Job console starting")?;
        Ok(out)
    }

    /// Appends one line with the current time.
    pub fn line(&self, msg: &str) -> io::Result<()> {
        let line = output_line(chrono::Local::now(), msg);
        let mut file = self
            .file
            .lock()
            .map_err(|_| io::Error::other("job output lock poisoned"))?;
        file.write_all(line.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamps_drop_zero_microseconds_like_python() {
        let t = chrono::Local
            .with_ymd_and_hms(2026, 11, 26, 4, 36, 59)
            .unwrap();
        assert_eq!(timestamp(t), "2026-11-26 04:36:59");
        let t = t + chrono::Duration::microseconds(530238);
        assert_eq!(timestamp(t), "2026-11-26 04:36:59.530238");
        assert_eq!(output_line(t, ""), "2026-11-26 04:36:59.530238 | \n");
        assert_eq!(output_line(t, "x  "), "2026-11-26 04:36:59.530238 | x\n");
    }

    #[test]
    fn symlinked_results_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let jobdir = JobDir::create(dir.path(), "abc").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", jobdir.results()).unwrap();
        assert!(jobdir.read_build_file(&jobdir.results()).is_err());
        fs::remove_file(jobdir.results()).unwrap();
        fs::write(jobdir.results(), "{}").unwrap();
        assert_eq!(
            jobdir
                .read_build_file(&jobdir.results())
                .unwrap()
                .as_deref(),
            Some("{}")
        );
    }
}
