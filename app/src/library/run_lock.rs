//! A VM's running state as one fact every Cove process sees: the run lock.
//!
//! Whoever runs a library VM (`cove start`, the app), copies its disk, or deletes it holds an
//! open-file-description lock (`F_OFD_SETLK`) on `.cove-run.lock` in the VM's folder, and writes
//! into that file who it is and where its control socket is. The kernel drops the lock when the
//! holder exits, however it exits, so a crash never leaves a VM "running". Others look with
//! `F_OFD_GETLK`, which never takes the lock, so looking cannot make a start fail.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The lock file in each VM folder.
pub const LOCK_FILE: &str = ".cove-run.lock";

/// What the holder is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activity {
    /// The VM runs (under `cove start` or in the app).
    Running,
    /// Its disk is being made (copied in).
    CopyingDisk,
    /// It is being deleted.
    Deleting,
}

/// Who holds a VM's run lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// The program: "cove start", "the Cove app".
    pub program: String,
    pub activity: Activity,
    /// The VM's QMP control socket, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<PathBuf>,
    /// The app's link to a VM process (`cove vm-host`), while it runs: an app that restarts
    /// attaches to the VM again through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<PathBuf>,
}

impl Holder {
    /// "running under cove start (pid 42)".
    pub fn describe(&self) -> String {
        let what = match self.activity {
            Activity::Running => "running",
            Activity::CopyingDisk => "having its disk copied",
            Activity::Deleting => "being deleted",
        };
        format!("{what} in {} (pid {})", self.program, self.pid)
    }
}

/// A held run lock; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    dir: PathBuf,
    holder: Holder,
}

/// Why a run lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else holds it; their description when they wrote one.
    #[error("it is {}", .0.as_ref().map_or("in use by another Cove process".to_string(), Holder::describe))]
    Held(Option<Holder>),
    #[error("cannot use its run lock {path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

fn open_lock_file(dir: &Path) -> Result<File, LockError> {
    let path = dir.join(LOCK_FILE);
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| LockError::Io {
            path,
            reason: crate::limits::describe_io(&e),
        })
}

fn whole_file(kind: libc::c_int) -> libc::flock {
    // SAFETY: flock is plain old data; all-zero is a valid value that the fields below complete.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = 0;
    lock.l_len = 0;
    lock
}

impl RunLock {
    /// Takes the run lock of the VM in `dir` for `activity`, or says who holds it.
    pub fn acquire(dir: &Path, program: &str, activity: Activity) -> Result<Self, LockError> {
        let mut file = open_lock_file(dir)?;
        let mut lock = whole_file(libc::F_WRLCK);
        // SAFETY: F_OFD_SETLK reads the flock struct, which lives across the call; the
        // descriptor is owned by `file`.
        let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
        if ret != 0 {
            let e = std::io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) {
                return Err(LockError::Held(read_holder(&mut file)));
            }
            return Err(LockError::Io {
                path: dir.join(LOCK_FILE),
                reason: crate::limits::describe_io(&e),
            });
        }
        let holder = Holder {
            pid: std::process::id(),
            program: program.to_string(),
            activity,
            control: None,
            link: None,
        };
        let mut held = Self {
            file,
            dir: dir.to_path_buf(),
            holder,
        };
        held.write_holder();
        Ok(held)
    }

    /// Records the control socket (once it is listening) for other processes to find.
    pub fn set_control(&mut self, control: Option<PathBuf>) {
        self.holder.control = control;
        self.write_holder();
    }

    /// Records the link socket of a VM process (once it is listening).
    pub fn set_link(&mut self, link: Option<PathBuf>) {
        self.holder.link = link;
        self.write_holder();
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write_holder(&mut self) {
        let Ok(text) = serde_json::to_vec(&self.holder) else {
            return;
        };
        let written = self
            .file
            .set_len(0)
            .and_then(|()| self.file.rewind())
            .and_then(|()| self.file.write_all(&text));
        if let Err(e) = written {
            log::warn!("cannot record the run lock's holder: {e}");
        }
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = Vec::new();
    file.rewind().ok()?;
    file.take(64 << 10).read_to_end(&mut text).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Watches one VM's run lock without taking it. Keeps the lock file open, so each look is one
/// `fcntl`, not an open.
#[derive(Debug)]
pub struct LockProbe {
    file: Option<File>,
    dir: PathBuf,
}

impl LockProbe {
    pub fn new(dir: &Path) -> Self {
        Self {
            file: None,
            dir: dir.to_path_buf(),
        }
    }

    /// Who holds the lock now (None: nobody, the VM is stopped).
    pub fn holder(&mut self) -> Option<Holder> {
        if self.file.is_none() {
            // A missing lock file means nobody ever ran the VM; don't create one just to look.
            if !self.dir.join(LOCK_FILE).exists() {
                return None;
            }
            self.file = open_lock_file(&self.dir).ok();
        }
        let file = self.file.as_mut()?;
        let mut lock = whole_file(libc::F_WRLCK);
        // SAFETY: F_OFD_GETLK writes into the flock struct, which lives across the call.
        let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
        if ret != 0 || lock.l_type == libc::F_UNLCK as libc::c_short {
            return None;
        }
        Some(read_holder(file).unwrap_or(Holder {
            pid: 0,
            program: "another Cove process".into(),
            activity: Activity::Running,
            control: None,
            link: None,
        }))
    }
}

/// Who holds the run lock of the VM in `dir`, looked at once.
pub fn holder(dir: &Path) -> Option<Holder> {
    LockProbe::new(dir).holder()
}

/// Where the VM in `dir` serves its control socket: in its folder when the path fits in a
/// socket address, else in a private runtime folder of this user.
pub fn control_socket_path(dir: &Path) -> PathBuf {
    socket_path(dir, "control.sock", "sock")
}

/// Where the VM process of the VM in `dir` listens for the app (as [`control_socket_path`]).
pub fn link_socket_path(dir: &Path) -> PathBuf {
    socket_path(dir, "link.sock", "link")
}

fn socket_path(dir: &Path, name: &str, suffix: &str) -> PathBuf {
    let inside = dir.join(name);
    if inside.as_os_str().len() < 100 {
        return inside;
    }
    use std::os::unix::fs::MetadataExt;
    let id = std::fs::metadata(dir)
        .map(|m| format!("{:x}-{:x}", m.dev(), m.ino()))
        .unwrap_or_else(|_| "vm".into());
    runtime_dir().join(format!("{id}.{suffix}"))
}

/// `$XDG_RUNTIME_DIR/cove`, or `/tmp/cove-UID`, made 0700.
fn runtime_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(base) if !base.is_empty() => PathBuf::from(base).join("cove"),
        _ => PathBuf::from(format!("/tmp/cove-{uid}")),
    };
    use std::os::unix::fs::DirBuilderExt;
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    dir
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    #[test]
    fn one_holder_at_a_time_and_others_see_it() {
        let tmp = TempDir::new("run-lock");
        assert_eq!(holder(&tmp.0), None);
        let mut held = RunLock::acquire(&tmp.0, "cove start", Activity::Running).unwrap();
        held.set_control(Some("/x/control.sock".into()));
        let seen = holder(&tmp.0).unwrap();
        assert_eq!(seen.pid, std::process::id());
        assert_eq!(seen.control.as_deref(), Some(Path::new("/x/control.sock")));
        // OFD locks conflict between open files even within one process.
        match RunLock::acquire(&tmp.0, "the Cove app", Activity::Deleting) {
            Err(LockError::Held(Some(h))) => {
                assert!(h.describe().contains("running in cove start"), "{h:?}")
            }
            other => panic!("{other:?}"),
        }
        let mut probe = LockProbe::new(&tmp.0);
        assert!(probe.holder().is_some());
        drop(held);
        assert_eq!(probe.holder(), None);
        RunLock::acquire(&tmp.0, "cove start", Activity::Running).unwrap();
    }
}
