//! A real PostgreSQL server for tests: `initdb` into a temp dir and `postgres` listening only on
//! a Unix socket in that dir (no port to collide with), stopped and removed on drop.
//!
//! PostgreSQL refuses to run as root; when the tests run as root (CI does), the server runs as
//! `nobody` and owns only its temp dir. The server binaries come from `PATH` or Debian's
//! `/usr/lib/postgresql/<version>/bin`; without them the test fails saying what to install.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{chown, Pid, User};

const INSTALL: &str = "PostgreSQL server binaries (initdb, postgres, createdb) not found: install them with `apt-get install postgresql`";

/// A running server, stopped (fast shutdown) on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    child: Child,
    databases: AtomicU32,
}

/// The directory holding `initdb`, `postgres` and `createdb` of one PostgreSQL version.
fn server_bin_dir() -> PathBuf {
    let complete = |d: &Path| {
        ["initdb", "postgres", "createdb"]
            .iter()
            .all(|t| d.join(t).is_file())
    };
    // On PATH (possibly a symlink to the real directory, where createdb also lives).
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if let Ok(real) = std::fs::canonicalize(dir.join("initdb")) {
            if let Some(parent) = real.parent().filter(|p| complete(p)) {
                return parent.to_path_buf();
            }
        }
    }
    // Debian's layout, newest version first.
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| complete(bin))
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!("{INSTALL}"),
    }
}

/// Runs `cmd` as `nobody` when we are root.
fn unprivileged(cmd: &mut Command, user: &Option<User>) {
    if let Some(u) = user {
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
    }
}

impl Postgres {
    /// Initialises a cluster in a temp dir and starts a server on it (trust authentication,
    /// superuser `postgres`, no fsync: a test server).
    pub fn start() -> Postgres {
        let bin = server_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("sluice-pg-")
            .tempdir()
            .expect("tempdir");
        let user = if nix::unistd::geteuid().is_root() {
            let nobody = User::from_name("nobody")
                .ok()
                .flatten()
                .expect("user `nobody` (PostgreSQL does not run as root)");
            chown(dir.path(), Some(nobody.uid), Some(nobody.gid)).expect("chown the server dir");
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
                .expect("chmod the server dir");
            Some(nobody)
        } else {
            None
        };
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .current_dir(dir.path());
        unprivileged(&mut initdb, &user);
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).expect("server log");
        if let Some(u) = &user {
            chown(&log_path, Some(u.uid), Some(u.gid)).expect("chown the server log");
        }
        let mut postgres = Command::new(bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        unprivileged(&mut postgres, &user);
        let child = postgres.spawn().expect("start postgres");
        let mut server = Postgres {
            dir,
            bin,
            child,
            databases: AtomicU32::new(0),
        };
        server.wait_ready(&data);
        server
    }

    fn wait_ready(&mut self, data: &Path) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // The last line of postmaster.pid says `ready` once connections are accepted.
            let pid_file = std::fs::read_to_string(data.join("postmaster.pid")).unwrap_or_default();
            if pid_file.lines().last().is_some_and(|l| l.trim() == "ready") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("postgres exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "postgres not ready after 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The URL of database `name` (which may not exist).
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@localhost/{name}?host={}",
            self.dir.path().display()
        )
    }

    /// Creates a new, empty database and returns its URL.
    pub fn create_database(&self) -> String {
        let name = format!("sluice_{}", self.databases.fetch_add(1, Ordering::SeqCst));
        let out = Command::new(self.bin.join("createdb"))
            .arg("-h")
            .arg(self.dir.path())
            .args(["-U", "postgres", &name])
            .output()
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb {name} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        self.url(&name)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: fast shutdown (disconnects clients, no checkpoint wait worth speaking of).
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
