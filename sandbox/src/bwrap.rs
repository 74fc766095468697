//! The bubblewrap command line: [`SandboxSpec`] says what a build may see, [`Bwrap`] (a probed
//! `bwrap` executable plus the host's filesystem layout) turns it into a [`ChildCommand`].
//!
//! The layout follows the Zuul executor's (reference executor.md §4): an empty tmpfs root with
//! `/usr` (and `/lib`, `/bin`, `/sbin`, `/lib64`) read-only, a handful of `/etc` files, the
//! build's work and home directories read-write, fresh `/proc`, `/dev` and `/tmp`, all
//! namespaces unshared, and a generated `/etc/passwd` and `/etc/group` passed through pipes.
//! Nothing else of the host exists inside: no `/root`, no `/home`, no `/etc/shadow`, no state
//! directory, no other build.
//!
//! Deviations from Zuul, each on purpose:
//! - `/lib`, `/bin`, `/sbin` and `/lib64` are recreated as symlinks when they are symlinks on
//!   the host (merged-/usr systems); bind-mounting them would follow the link and hide that
//!   they are the same directory.
//! - Zuul gives the whole bwrap process a new session from outside; Sluice keeps it in a new
//!   process group instead (so that `-pgid` reaches it, see [`run`](crate::run)) and passes
//!   `--new-session` so that the sandboxed processes cannot push input into a controlling
//!   terminal with the `TIOCSTI` ioctl.
//! - `--cap-drop ALL` is always passed. Zuul runs as an unprivileged user, so its sandbox holds
//!   no capabilities; Sluice may run as root, and bwrap keeps every capability (inside the new
//!   user namespace) for a sandbox uid of 0 unless told otherwise.
//! - `choom` is replaced by writing `oom_score_adj` (Sluice's own plus 200, at most 1000)
//!   between `fork` and `exec`, and `setpriv --ambient-caps -all` by `--cap-drop ALL`.
//! - Zuul's `/etc/*-release` binds are left out: its pattern matches almost nothing.
//! - In-memory files get `--perms` (0644 for passwd/group, the caller's mode for secrets)
//!   instead of bwrap's default 0666.
//!
//! `--unshare-user --disable-userns` (no nested user namespaces) is added only when a trial
//! run at probe time succeeds. The option needs bwrap ≥ 0.8.0 and a kernel with user
//! namespaces enabled (`/proc/sys/user/max_user_namespaces` > 0). Running as root is not an
//! obstacle in itself: measured on Linux 6.18 with bwrap 0.8.0 as uid 0, `--unshare-user`
//! creates a user namespace mapping 0→0 and `--disable-userns` makes a nested `unshare -U`
//! fail with ENOSPC (bwrap sets `max_user_namespaces` to 0 in an intermediate namespace, so
//! the value read inside looks unchanged). It does fail where bwrap is installed setuid
//! or where the kernel or a seccomp policy (containers) forbids user namespaces; the trial run
//! detects exactly those cases and Sluice then falls back to Zuul's behaviour without them.

use std::{
    collections::BTreeMap,
    ffi::{OsStr, OsString},
    fmt,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
};

use nix::unistd::{Gid, Group, Uid, User};

use crate::{
    command::{require_absolute, ChildCommand, FileFeed},
    errors::{Result, SandboxError},
};

/// The files of `/etc` bound read-only right after the library directories, when they exist.
const ETC_EARLY: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/localtime",
];

/// Host paths bound read-only after the namespace options, when they exist.
const ETC_LATE: &[&str] = &[
    "/etc/nsswitch.conf",
    "/etc/lsb-release.d",
    "/etc/alternatives",
    "/etc/ssl/certs",
    "/etc/subuid",
    "/etc/containers",
];

/// Top-level library and binary directories: symlinks into `/usr` on merged-/usr hosts.
const LIB_DIRS: &[&str] = &["/lib", "/bin", "/sbin"];

/// A file that exists only inside the sandbox, fed through a pipe (`bwrap --file FD PATH`).
///
/// Its parent directory must exist inside the sandbox; for secrets, put a
/// [`SandboxSpec::tmpfs`] over the directory first so the file lives in memory and nothing
/// of the host directory shows through.
#[derive(Clone)]
pub struct InMemoryFile {
    /// Absolute path inside the sandbox.
    pub path: PathBuf,
    /// The full content.
    pub content: Vec<u8>,
    /// Permission bits inside the sandbox (bwrap ≥ 0.5; ignored by older versions).
    pub mode: u32,
}

impl InMemoryFile {
    /// A file readable by its owner only (mode 0600), the right default for secrets.
    pub fn new(path: PathBuf, content: Vec<u8>) -> Self {
        InMemoryFile {
            path,
            content,
            mode: 0o600,
        }
    }
}

impl fmt::Debug for InMemoryFile {
    // Hand-written so that secret content never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryFile")
            .field("path", &self.path)
            .field("len", &self.content.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// What one sandboxed command may see and do. All paths are absolute and mounted at the same
/// path inside as outside.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// Bound read-write, the working directory inside, with a private tmpfs over `work_dir/tmp`.
    pub work_dir: PathBuf,
    /// Bound read-write; `/etc/passwd` inside names it as the user's home.
    pub home_dir: PathBuf,
    /// Extra host paths bound read-only (venv, its base interpreter, playbook dirs, ...). They
    /// must exist.
    pub ro_paths: Vec<PathBuf>,
    /// Extra host paths bound read-write. They must exist.
    pub rw_paths: Vec<PathBuf>,
    /// Directories replaced by an empty tmpfs, mounted after the binds (secrets directories).
    pub tmpfs: Vec<PathBuf>,
    /// Files that exist only inside, mounted after `tmpfs`.
    pub files: Vec<InMemoryFile>,
    /// Keep the host's network namespace (Zuul's default; its utility context omits it).
    pub share_net: bool,
    /// The build's ssh-agent socket, bound read-only at the same path.
    pub ssh_auth_sock: Option<PathBuf>,
    /// The uid inside the sandbox; its host passwd entry (if any) fills `/etc/passwd`.
    pub uid: u32,
    /// The gid inside the sandbox; its host group entry (if any) fills `/etc/group`.
    pub gid: u32,
}

impl SandboxSpec {
    /// A sandbox for the current user with the given work and home directories, the network
    /// shared, and nothing else.
    pub fn new(work_dir: PathBuf, home_dir: PathBuf) -> Self {
        SandboxSpec {
            work_dir,
            home_dir,
            ro_paths: Vec::new(),
            rw_paths: Vec::new(),
            tmpfs: Vec::new(),
            files: Vec::new(),
            share_net: true,
            ssh_auth_sock: None,
            uid: Uid::current().as_raw(),
            gid: Gid::current().as_raw(),
        }
    }

    fn validate(&self) -> Result<()> {
        let fixed = [&self.work_dir, &self.home_dir];
        let optional = self.ssh_auth_sock.iter();
        let lists = self
            .ro_paths
            .iter()
            .chain(&self.rw_paths)
            .chain(&self.tmpfs)
            .chain(self.files.iter().map(|file| &file.path));
        for path in fixed.into_iter().chain(optional).chain(lists) {
            require_absolute(path)?;
        }
        let home = self.home_dir.as_os_str().as_bytes();
        if home.contains(&b':') || home.contains(&b'\n') {
            return Err(SandboxError::InvalidPath {
                path: self.home_dir.clone(),
                reason: "a home directory in /etc/passwd cannot contain ':' or a newline",
            });
        }
        Ok(())
    }
}

/// How a host path is recreated inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostEntry {
    /// A symlink with this target: `--symlink TARGET PATH`.
    Symlink(PathBuf),
    /// A directory or file: `--ro-bind PATH PATH`.
    Bind,
}

/// The host paths the fixed part of the command line depends on, probed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostLayout {
    /// `/lib`, `/bin`, `/sbin`, in that order, when they exist.
    pub(crate) lib_dirs: Vec<(PathBuf, HostEntry)>,
    /// The existing entries of [`ETC_EARLY`].
    pub(crate) etc_early: Vec<PathBuf>,
    /// `/lib64` then the existing entries of [`ETC_LATE`].
    pub(crate) late: Vec<(PathBuf, HostEntry)>,
}

impl HostLayout {
    pub(crate) fn probe() -> Self {
        let entry = |path: &str| -> Option<(PathBuf, HostEntry)> {
            let path = PathBuf::from(path);
            let metadata = std::fs::symlink_metadata(&path).ok()?;
            if metadata.file_type().is_symlink() {
                let target = std::fs::read_link(&path).ok()?;
                Some((path, HostEntry::Symlink(target)))
            } else {
                Some((path, HostEntry::Bind))
            }
        };
        let lib_dirs = LIB_DIRS.iter().filter_map(|path| entry(path)).collect();
        // `/etc/localtime` is usually a symlink; a bind follows it, which is what we want.
        let etc_early = ETC_EARLY
            .iter()
            .map(PathBuf::from)
            .filter(|path| path.exists())
            .collect();
        let late = std::iter::once("/lib64")
            .filter_map(entry)
            .chain(
                ETC_LATE
                    .iter()
                    .map(PathBuf::from)
                    .filter(|path| path.exists())
                    .map(|path| (path, HostEntry::Bind)),
            )
            .collect();
        HostLayout {
            lib_dirs,
            etc_early,
            late,
        }
    }
}

/// A probed bubblewrap: its path, version, whether it can isolate user namespaces, and the
/// host layout. Probe once at startup with [`Bwrap::detect`] and share it.
#[derive(Debug, Clone)]
pub struct Bwrap {
    path: PathBuf,
    version: String,
    version_triple: (u32, u32, u32),
    isolate_userns: bool,
    host: Arc<HostLayout>,
}

impl Bwrap {
    /// Finds `bwrap` on Sluice's `PATH` and probes it.
    pub async fn detect() -> Result<Self> {
        let path =
            find_on_path(OsStr::new("bwrap")).ok_or_else(|| SandboxError::BwrapNotFound {
                path: PathBuf::from("bwrap"),
            })?;
        Self::detect_at(path).await
    }

    /// Probes the bwrap executable at `path`: runs `--version`, then a trial sandbox with
    /// `--unshare-user --disable-userns` (see the module doc).
    pub async fn detect_at(path: PathBuf) -> Result<Self> {
        if !path.is_file() {
            return Err(SandboxError::BwrapNotFound { path });
        }
        let output = tokio::process::Command::new(&path)
            .arg("--version")
            .env_clear()
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    SandboxError::BwrapNotFound { path: path.clone() }
                } else {
                    SandboxError::Spawn {
                        argv0: path.clone().into_os_string(),
                        source: Arc::new(source),
                    }
                }
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let version = stdout.trim().trim_start_matches("bubblewrap").trim();
        let version_triple = parse_version(version).ok_or_else(|| SandboxError::BwrapUnusable {
            path: path.clone(),
            detail: format!(
                "`--version` printed {:?} ({})",
                stdout.trim(),
                output.status
            ),
        })?;
        let isolate_userns = version_triple >= (0, 8, 0)
            && user_namespaces_enabled()
            && trial_run(&path, &["--unshare-user", "--disable-userns"]).await;
        if !isolate_userns {
            tracing::warn!(
                bwrap = %path.display(),
                version,
                "bubblewrap cannot disable nested user namespaces here; sandboxes run without \
                 --unshare-user --disable-userns"
            );
        }
        Ok(Bwrap {
            version: version.to_owned(),
            path,
            version_triple,
            isolate_userns,
            host: Arc::new(HostLayout::probe()),
        })
    }

    /// The bwrap executable.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version it reported, e.g. `0.8.0`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether sandboxes get `--unshare-user --disable-userns`.
    pub fn isolates_user_namespaces(&self) -> bool {
        self.isolate_userns
    }

    /// The sandboxed form of `argv`: bwrap's command line for `spec`, then `--`, then `argv`.
    ///
    /// `env` becomes the complete environment inside (bwrap passes its own on). The pipes for
    /// `/etc/passwd`, `/etc/group` and `spec.files` are created here and fed by
    /// [`run`](crate::run) once bwrap is spawned.
    pub fn command(
        &self,
        spec: &SandboxSpec,
        argv: Vec<OsString>,
        env: BTreeMap<OsString, OsString>,
    ) -> Result<ChildCommand> {
        if argv.is_empty() {
            return Err(SandboxError::EmptyArgv);
        }
        spec.validate()?;
        let (passwd, group) = identity_files(spec.uid, spec.gid, &spec.home_dir);
        let passwd = FileFeed::new(PathBuf::from("/etc/passwd"), passwd)?;
        let group = FileFeed::new(PathBuf::from("/etc/group"), group)?;
        let mut file_feeds = Vec::with_capacity(spec.files.len());
        for file in &spec.files {
            file_feeds.push(FileFeed::new(file.path.clone(), file.content.clone())?);
        }
        let fds = Fds {
            passwd: passwd.child_fd(),
            group: group.child_fd(),
            files: file_feeds.iter().map(FileFeed::child_fd).collect(),
        };
        let mut full_argv = self.args(spec, &fds);
        full_argv.push("--".into());
        full_argv.extend(argv);
        let feeds = [passwd, group].into_iter().chain(file_feeds).collect();
        let mut command = ChildCommand::new(full_argv, env, spec.work_dir.clone())?;
        command.feeds = feeds;
        command.oom_score_adj = Some(raised_oom_score_adj());
        Ok(command)
    }

    /// bwrap's argv (program included, `--` and the inner command excluded) for `spec`, with
    /// the in-memory files read from `fds`.
    pub(crate) fn args(&self, spec: &SandboxSpec, fds: &Fds) -> Vec<OsString> {
        let mut args = Args(vec![self.path.clone().into_os_string()]);
        let uid = spec.uid.to_string();
        let gid = spec.gid.to_string();
        args.push(["--tmpfs", "/tmp", "--dir", "/var", "--dir", "/var/tmp"]);
        args.push(["--dir".into(), format!("/run/user/{uid}")]);
        args.ro_bind("/usr");
        for (path, entry) in &self.host.lib_dirs {
            args.host_entry(path, entry);
        }
        for path in &self.host.etc_early {
            args.ro_bind(path);
        }
        args.bind(&spec.work_dir);
        args.push([OsStr::new("--tmpfs"), spec.work_dir.join("tmp").as_os_str()]);
        args.bind(&spec.home_dir);
        args.push(["--proc", "/proc", "--dev", "/dev"]);
        args.push([OsStr::new("--chdir"), spec.work_dir.as_os_str()]);
        args.push(["--unshare-all", "--new-session", "--die-with-parent"]);
        args.push(["--uid", &uid, "--gid", &gid]);
        self.file(&mut args, 0o644, fds.passwd, Path::new("/etc/passwd"));
        self.file(&mut args, 0o644, fds.group, Path::new("/etc/group"));
        if self.isolate_userns {
            args.push(["--unshare-user", "--disable-userns"]);
        }
        for (path, entry) in &self.host.late {
            args.host_entry(path, entry);
        }
        args.push(["--cap-drop", "ALL"]);
        for path in &spec.ro_paths {
            args.ro_bind(path);
        }
        for path in &spec.rw_paths {
            args.bind(path);
        }
        for path in &spec.tmpfs {
            args.push([OsStr::new("--tmpfs"), path.as_os_str()]);
        }
        for (file, &fd) in spec.files.iter().zip(&fds.files) {
            self.file(&mut args, file.mode, fd, &file.path);
        }
        if spec.share_net {
            args.push(["--share-net"]);
        }
        if let Some(sock) = &spec.ssh_auth_sock {
            args.ro_bind(sock);
        }
        args.0
    }

    fn file(&self, args: &mut Args, mode: u32, fd: i32, path: &Path) {
        if self.version_triple >= (0, 5, 0) {
            args.push(["--perms".into(), format!("{mode:04o}")]);
        }
        args.push([
            OsStr::new("--file"),
            OsStr::new(&fd.to_string()),
            path.as_os_str(),
        ]);
    }
}

/// The fd numbers bwrap reads the in-memory files from.
pub(crate) struct Fds {
    pub(crate) passwd: i32,
    pub(crate) group: i32,
    /// One per [`SandboxSpec::files`] entry, in order.
    pub(crate) files: Vec<i32>,
}

struct Args(Vec<OsString>);

impl Args {
    fn push<I: IntoIterator<Item = S>, S: Into<OsString>>(&mut self, items: I) {
        self.0.extend(items.into_iter().map(Into::into));
    }

    fn ro_bind(&mut self, path: impl AsRef<Path>) {
        let path = path.as_ref().as_os_str();
        self.push([OsStr::new("--ro-bind"), path, path]);
    }

    fn bind(&mut self, path: &Path) {
        self.push([OsStr::new("--bind"), path.as_os_str(), path.as_os_str()]);
    }

    fn host_entry(&mut self, path: &Path, entry: &HostEntry) {
        match entry {
            HostEntry::Symlink(target) => self.push([
                OsStr::new("--symlink"),
                target.as_os_str(),
                path.as_os_str(),
            ]),
            HostEntry::Bind => self.ro_bind(path),
        }
    }
}

/// `/etc/passwd` (the entry of `uid`, home replaced by `home`) and `/etc/group` (the entry of
/// `gid`). Ids without a host entry get the name `sluice` so that tools calling `getpwuid`
/// still work.
pub(crate) fn identity_files(uid: u32, gid: u32, home: &Path) -> (Vec<u8>, Vec<u8>) {
    let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
    let (name, gecos, shell) = match &user {
        Some(user) => (
            user.name.clone(),
            user.gecos.to_string_lossy().into_owned(),
            user.shell.clone(),
        ),
        None => ("sluice".to_owned(), String::new(), PathBuf::from("/bin/sh")),
    };
    let mut passwd = format!("{name}:x:{uid}:{gid}:{gecos}:").into_bytes();
    passwd.extend_from_slice(home.as_os_str().as_bytes());
    passwd.push(b':');
    passwd.extend_from_slice(shell.as_os_str().as_bytes());
    passwd.push(b'\n');
    let group_name = Group::from_gid(Gid::from_raw(gid))
        .ok()
        .flatten()
        .map_or_else(|| "sluice".to_owned(), |group| group.name);
    let group = format!("{group_name}:x:{gid}:\n").into_bytes();
    (passwd, group)
}

/// Sluice's own `oom_score_adj` plus 200, at most 1000: under memory pressure the kernel kills a
/// build before the executor (Zuul does the same with `choom`).
fn raised_oom_score_adj() -> i32 {
    let current = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .unwrap_or(0);
    current.saturating_add(200).min(1000)
}

fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split('.').map(|part| part.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().unwrap_or(Some(0))?;
    Some((major, minor, patch))
}

fn user_namespaces_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .is_some_and(|max| max > 0)
}

/// Whether bwrap accepts `extra` in a minimal sandbox (the whole host read-only, bwrap itself
/// as the inner command so that no other program is assumed).
async fn trial_run(bwrap: &Path, extra: &[&str]) -> bool {
    let status = tokio::process::Command::new(bwrap)
        .args(extra)
        .args(["--ro-bind", "/", "/", "--"])
        .arg(bwrap)
        .arg("--version")
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    matches!(status, Ok(status) if status.success())
}

pub(crate) fn find_on_path(name: &OsStr) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bwrap(isolate_userns: bool) -> Bwrap {
        Bwrap {
            path: PathBuf::from("/usr/bin/bwrap"),
            version: "0.8.0".to_owned(),
            version_triple: (0, 8, 0),
            isolate_userns,
            host: Arc::new(HostLayout {
                lib_dirs: vec![
                    (PathBuf::from("/lib"), HostEntry::Symlink("usr/lib".into())),
                    (PathBuf::from("/bin"), HostEntry::Bind),
                ],
                etc_early: vec![PathBuf::from("/etc/hosts")],
                late: vec![
                    (
                        PathBuf::from("/lib64"),
                        HostEntry::Symlink("usr/lib64".into()),
                    ),
                    (PathBuf::from("/etc/ssl/certs"), HostEntry::Bind),
                ],
            }),
        }
    }

    fn spec() -> SandboxSpec {
        let mut spec = SandboxSpec::new("/b/work".into(), "/b/home".into());
        spec.uid = 1000;
        spec.gid = 1001;
        spec.ro_paths = vec!["/venv".into(), "/root/.pyenv".into()];
        spec.rw_paths = vec!["/b/.ansible".into()];
        spec.tmpfs = vec!["/b/ansible/pb/group_vars".into()];
        spec.files = vec![InMemoryFile::new(
            "/b/ansible/pb/group_vars/all.yaml".into(),
            b"secret".to_vec(),
        )];
        spec.ssh_auth_sock = Some("/run/agent/sock".into());
        spec
    }

    fn joined(args: &[OsString]) -> String {
        args.iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn argv_follows_the_reference_order() {
        let fds = Fds {
            passwd: 10,
            group: 11,
            files: vec![12],
        };
        let args = fake_bwrap(true).args(&spec(), &fds);
        let expected =
            "/usr/bin/bwrap --tmpfs /tmp --dir /var --dir /var/tmp --dir /run/user/1000 \
             --ro-bind /usr /usr --symlink usr/lib /lib --ro-bind /bin /bin \
             --ro-bind /etc/hosts /etc/hosts \
             --bind /b/work /b/work --tmpfs /b/work/tmp --bind /b/home /b/home \
             --proc /proc --dev /dev --chdir /b/work \
             --unshare-all --new-session --die-with-parent --uid 1000 --gid 1001 \
             --perms 0644 --file 10 /etc/passwd --perms 0644 --file 11 /etc/group \
             --unshare-user --disable-userns \
             --symlink usr/lib64 /lib64 --ro-bind /etc/ssl/certs /etc/ssl/certs \
             --cap-drop ALL \
             --ro-bind /venv /venv --ro-bind /root/.pyenv /root/.pyenv \
             --bind /b/.ansible /b/.ansible \
             --tmpfs /b/ansible/pb/group_vars \
             --perms 0600 --file 12 /b/ansible/pb/group_vars/all.yaml \
             --share-net --ro-bind /run/agent/sock /run/agent/sock";
        assert_eq!(
            joined(&args),
            expected.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }

    #[test]
    fn argv_without_userns_isolation_or_network() {
        let mut spec = spec();
        spec.share_net = false;
        spec.ssh_auth_sock = None;
        let fds = Fds {
            passwd: 10,
            group: 11,
            files: vec![12],
        };
        let args = joined(&fake_bwrap(false).args(&spec, &fds));
        assert!(!args.contains("--unshare-user"), "{args}");
        assert!(!args.contains("--disable-userns"), "{args}");
        assert!(!args.contains("--share-net"), "{args}");
        assert!(args.contains("--unshare-all"), "{args}");
    }

    #[test]
    fn command_wraps_inner_argv_and_creates_pipes() {
        let command = fake_bwrap(true)
            .command(&spec(), vec!["id".into(), "-u".into()], BTreeMap::new())
            .expect("valid spec");
        let argv = command.argv();
        assert_eq!(argv[argv.len() - 3..], ["--", "id", "-u"]);
        assert_eq!(command.cwd(), Path::new("/b/work"));
        // Each --file names a distinct fd.
        let fds: Vec<&OsString> = argv
            .windows(2)
            .filter(|pair| pair[0] == "--file")
            .map(|pair| &pair[1])
            .collect();
        assert_eq!(fds.len(), 3);
        assert!(fds[0] != fds[1] && fds[1] != fds[2] && fds[0] != fds[2]);
    }

    #[test]
    fn relative_paths_and_bad_homes_are_rejected() {
        let mut relative = spec();
        relative.ro_paths.push("venv".into());
        let err = fake_bwrap(true)
            .command(&relative, vec!["id".into()], BTreeMap::new())
            .expect_err("relative path");
        assert!(matches!(err, SandboxError::InvalidPath { .. }), "{err}");

        let mut colon = spec();
        colon.home_dir = "/b/ho:me".into();
        let err = fake_bwrap(true)
            .command(&colon, vec!["id".into()], BTreeMap::new())
            .expect_err("colon in home");
        assert!(err.to_string().contains("cannot contain ':'"), "{err}");

        let err = fake_bwrap(true)
            .command(&spec(), vec![], BTreeMap::new())
            .expect_err("empty argv");
        assert!(matches!(err, SandboxError::EmptyArgv));
    }

    #[test]
    fn identity_files_use_the_sandbox_home() {
        let (passwd, group) = identity_files(0, 0, Path::new("/b/home"));
        let passwd = String::from_utf8(passwd).expect("utf-8");
        assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
        assert!(passwd.contains(":/b/home:"), "{passwd}");
        assert_eq!(String::from_utf8(group).expect("utf-8"), "root:x:0:\n");

        let (passwd, group) = identity_files(4_000_000, 4_000_001, Path::new("/h"));
        assert_eq!(passwd, b"sluice:x:4000000:4000001::/h:/bin/sh\n");
        assert_eq!(group, b"sluice:x:4000001:\n");
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("0.8.0"), Some((0, 8, 0)));
        assert_eq!(parse_version("0.11"), Some((0, 11, 0)));
        assert_eq!(parse_version("x"), None);
    }

    #[test]
    fn secret_contents_stay_out_of_debug_output() {
        let file = InMemoryFile::new("/s".into(), b"hunter2".to_vec());
        assert!(!format!("{file:?}").contains("hunter2"));
    }
}
