//! Linux specifics behind a small internal API: pipes, handing file descriptors down to exactly
//! one child, and signalling process groups.
//!
//! Why the `pre_exec` dance: every fd this crate creates is `O_CLOEXEC`, so a child spawned
//! concurrently by another task (another build) never inherits a build's secrets pipe or output
//! pipe. The one child that must inherit a pipe clears `FD_CLOEXEC` on it between `fork` and
//! `exec`, in its own copy of the fd table, so the parent's fds stay close-on-exec.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    path::PathBuf,
};

use nix::{
    errno::Errno,
    sys::signal::{killpg, Signal},
    unistd::Pid,
};

/// A close-on-exec pipe as `(read end, write end)`.
pub(crate) fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (reader, writer) = io::pipe()?;
    Ok((OwnedFd::from(reader), OwnedFd::from(writer)))
}

/// A close-on-exec pipe whose read end is numbered 3 or above, so that it can be handed to a
/// child by number: a child's fds 0–2 are overwritten with its stdio before `exec`, which
/// would clobber a pipe that got one of those numbers (Sluice started with stdin closed).
pub(crate) fn cloexec_pipe_above_stdio() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = cloexec_pipe()?;
    if read.as_raw_fd() > 2 {
        return Ok((read, write));
    }
    // SAFETY: F_DUPFD_CLOEXEC on a valid fd returns a new fd that we then own exclusively.
    let duplicate = unsafe { libc::fcntl(read.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if duplicate == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `duplicate` is a fresh, open fd owned by nobody else.
    Ok((unsafe { OwnedFd::from_raw_fd(duplicate) }, write))
}

/// Arranges for `fds` to survive `exec` in the child spawned from `command`, and only there.
pub(crate) fn inherit_in_child(command: &mut tokio::process::Command, fds: Vec<RawFd>) {
    if fds.is_empty() {
        return;
    }
    // SAFETY: the closure only calls fcntl(2), which is async-signal-safe, and touches no
    // memory that another thread could be holding a lock on; `fds` is moved in and only read.
    unsafe {
        command.pre_exec(move || {
            for &fd in &fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Makes the child spawned from `command` receive SIGTERM when the spawning thread exits
/// (`PR_SET_PDEATHSIG`), so a helper such as the ssh-agent does not outlive an executor that
/// was killed without running its destructors. The signal follows the spawning *thread*:
/// spawn from a runtime worker, never from a thread that exits early (`spawn_blocking`).
pub(crate) fn die_with_parent_in_child(command: &mut tokio::process::Command) {
    let parent = std::process::id();
    // SAFETY: prctl(2), getppid(2) and _exit(2) are async-signal-safe; `parent` is a plain
    // integer copied in before the fork.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The parent died between fork and prctl: the signal will never come.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Makes the child spawned from `command` write `value` to its `/proc/self/oom_score_adj`
/// before `exec`. Raising the value needs no privilege; a failure is ignored (the build then
/// runs with Sluice's own score).
pub(crate) fn set_oom_score_adj_in_child(command: &mut tokio::process::Command, value: i32) {
    let text = value.to_string().into_bytes();
    // SAFETY: open(2), write(2) and close(2) are async-signal-safe; the path is a static C
    // string and `text` was formatted before the fork.
    unsafe {
        command.pre_exec(move || {
            let fd = libc::open(
                c"/proc/self/oom_score_adj".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if fd >= 0 {
                libc::write(fd, text.as_ptr().cast(), text.len());
                libc::close(fd);
            }
            Ok(())
        });
    }
}

/// Makes the child spawned from `command` write `0` (itself) to each `cgroup.procs` file
/// before `exec`; a failure fails the spawn, so a child never runs outside its limits.
pub(crate) fn join_cgroups_in_child(command: &mut tokio::process::Command, files: &[PathBuf]) {
    let paths: Vec<std::ffi::CString> = files
        .iter()
        .filter_map(|p| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok())
        .collect();
    let wanted = files.len();
    // SAFETY: open(2), write(2) and close(2) are async-signal-safe; the C strings were built
    // before the fork and are only read.
    unsafe {
        command.pre_exec(move || {
            if paths.len() != wanted {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cgroup path with NUL",
                ));
            }
            for path in &paths {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let written = libc::write(fd, c"0".as_ptr().cast(), 1);
                let err = io::Error::last_os_error();
                libc::close(fd);
                if written != 1 {
                    return Err(err);
                }
            }
            Ok(())
        });
    }
}

/// Sends `signal` to every process of group `pgid`.
///
/// Returns `false` when the group no longer exists (ESRCH), which is not an error: the group
/// may have exited between our decision and the signal.
pub(crate) fn signal_group(pgid: i32, signal: Signal) -> bool {
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(errno) => {
            // EPERM would mean the pgid was reused by someone else's group; nothing to do.
            tracing::warn!(pgid, ?signal, %errno, "error signalling process group");
            false
        }
    }
}
