//! Creating sockets and files so that no other user can reach them, not even for a moment:
//! a Unix socket is bound inside a fresh private directory, given its final mode there and
//! renamed into place; a file is opened without following a symlink or blocking on a FIFO.
//! Nothing here changes the mode of a path another user could swap. The QMP server uses it,
//! and so can anything else that puts a socket, lock or file where others can look.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// The mode of every socket and file created here.
pub const PRIVATE_MODE: u32 = 0o600;
const STICKY: u32 = 0o1000;

/// Checks that no other user can replace or remove entries of `dir`: it is a directory owned
/// by the caller or root, and if others (or a group that is not the caller's own) may write to it, it has the sticky bit
/// (as `/tmp` does). The error says why a directory is refused.
pub fn check_private_dir(dir: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot use directory {}: {e}", dir.display()),
        )
    })?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a directory", dir.display()),
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing directory {}: it belongs to another user (uid {}), who could replace \
                 or redirect what Cove puts there; use a directory of your own",
                dir.display(),
                meta.uid()
            ),
        ));
    }
    let mode = meta.mode();
    // SAFETY: getegid has no preconditions and cannot fail.
    let own_group = meta.gid() == unsafe { libc::getegid() };
    let others_write = mode & 0o002 != 0 || (mode & 0o020 != 0 && !own_group);
    if others_write && mode & STICKY == 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing directory {} (mode {:04o}): other users can write to it and it lacks \
                 the sticky bit, so they could replace or redirect what Cove puts there; use a \
                 directory only you can write to, or one with the sticky bit such as /tmp",
                dir.display(),
                mode & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Listens on a Unix socket at `path` that is never reachable by other users: its directory
/// passes [`check_private_dir`], and the socket is bound in a fresh 0700 directory beside
/// `path`, given mode 0600 there and renamed into place. A stale socket (nobody listening) at
/// `path` is replaced; a live socket is refused with [`io::ErrorKind::AddrInUse`], and
/// anything else with [`io::ErrorKind::AlreadyExists`].
pub fn bind_unix_listener_private(path: &Path) -> io::Result<UnixListener> {
    bind_private(
        path,
        |p| UnixListener::bind(p),
        |p| UnixStream::connect(p).is_ok(),
    )
}

/// [`bind_unix_listener_private`] for any kind of Unix socket: `bind` binds a listening
/// socket at the path it is given, and `live` says whether something listens at a path.
pub fn bind_private<T>(
    path: &Path,
    bind: impl FnOnce(&Path) -> io::Result<T>,
    live: impl FnOnce(&Path) -> bool,
) -> io::Result<T> {
    let dir = parent_dir(path);
    check_private_dir(&dir)?;
    let replace = match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Ok(_) if live(path) => {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by another process", path.display()),
            ))
        }
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    let private = PrivateDir::create(&dir)?;
    let staged = private.path.join("s");
    let listener = bind(&staged)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display())))?;
    private.set_private_mode(b"s\0")?;
    move_into_place(&staged, path, replace)?;
    Ok(listener)
}

/// Creates `path`, or truncates it if it is an existing regular file, for writing: a new file
/// gets mode 0600; a symlink in the last component is never followed; a FIFO never blocks
/// (it and anything else that is not a regular file is refused).
pub fn create_regular_file(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is a symbolic link; not following it", path.display()),
            ),
            Some(libc::ENXIO) => not_regular(path),
            _ => e,
        })?;
    if !file.metadata()?.file_type().is_file() {
        return Err(not_regular(path));
    }
    Ok(file)
}

fn not_regular(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} exists and is not a regular file", path.display()),
    )
}

/// The directory `path` is in (`.` for a bare name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Renames `from` to `to`. When nothing was at `to`, a file that appeared there meanwhile is
/// not replaced (where the filesystem supports `RENAME_NOREPLACE`).
fn move_into_place(from: &Path, to: &Path, replace: bool) -> io::Result<()> {
    if !replace {
        let from_c = c_path(from)?;
        let to_c = c_path(to)?;
        // SAFETY: both paths are NUL-terminated C strings that outlive the call; AT_FDCWD makes
        // them relative to the working directory as rename(2) would.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from_c.as_ptr(),
                libc::AT_FDCWD,
                to_c.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EEXIST) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} appeared while Cove was creating it", to.display()),
            ));
        }
        // Filesystems without RENAME_NOREPLACE say EINVAL; fall back to a plain rename.
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(e);
        }
    }
    std::fs::rename(from, to)
}

fn c_path(path: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

/// A fresh 0700 directory, removed (with what is left in it) when dropped.
struct PrivateDir {
    path: PathBuf,
    handle: File,
}

impl PrivateDir {
    fn create(parent: &Path) -> io::Result<Self> {
        let mut attempt = 0u32;
        loop {
            let path = parent.join(format!(".cove-{}", unique_suffix(attempt)));
            // mkdir never follows a symlink at its last component: an existing entry of any
            // kind is EEXIST, and then another name is tried.
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    let handle = OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
                        .open(&path)?;
                    let dir = Self { path, handle };
                    let meta = dir.handle.metadata()?;
                    // SAFETY: geteuid has no preconditions and cannot fail.
                    if meta.uid() != unsafe { libc::geteuid() } || meta.mode() & 0o077 != 0 {
                        return Err(io::Error::other(format!(
                            "{} is not private to this user",
                            dir.path.display()
                        )));
                    }
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot create a directory in {}: {e}", parent.display()),
                    ))
                }
            }
        }
    }

    /// Gives the entry `name` (NUL-terminated) of this directory mode 0600. Safe from swaps:
    /// nobody else can enter the directory, and the entry is named relative to its handle.
    fn set_private_mode(&self, name: &[u8]) -> io::Result<()> {
        let name = std::ffi::CStr::from_bytes_with_nul(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a bad entry name"))?;
        // SAFETY: the directory descriptor is open for the life of `self` and `name` is a
        // NUL-terminated C string that outlives the call.
        let rc = unsafe {
            libc::fchmodat(
                self.handle.as_raw_fd(),
                name.as_ptr(),
                PRIVATE_MODE as libc::mode_t,
                0,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A name part unlikely to exist: the process, the time, and the attempt.
fn unique_suffix(attempt: u32) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{nanos:x}-{attempt}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cove-secure-{tag}-{}-{}",
            std::process::id(),
            unique_suffix(0)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_socket_is_created_with_mode_0600_and_nothing_is_left_beside_it() {
        let dir = scratch("bind");
        let path = dir.join("vm.sock");
        let listener = bind_unix_listener_private(&path).unwrap();
        assert_eq!(mode(&path), PRIVATE_MODE);
        let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(entries.len(), 1, "the private directory is gone");
        UnixStream::connect(&path).unwrap();
        // A live socket is refused; once nobody listens it is stale and replaced.
        let err = bind_unix_listener_private(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        drop(listener);
        let _again = bind_unix_listener_private(&path).unwrap();
        assert_eq!(mode(&path), PRIVATE_MODE);
        // Anything that is not a socket is left alone.
        let file = dir.join("file");
        std::fs::write(&file, b"keep").unwrap();
        let err = bind_unix_listener_private(&file).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_others_can_write_to_is_refused_unless_sticky() {
        let dir = scratch("shared");
        let shared = dir.join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = bind_unix_listener_private(&shared.join("vm.sock")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        let message = err.to_string();
        assert!(message.contains("lacks the sticky bit"), "{message}");
        assert_eq!(
            std::fs::read_dir(&shared).unwrap().count(),
            0,
            "nothing made"
        );
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        check_private_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        check_private_dir(&shared).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_another_user_owns_is_refused() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("*** SKIPPED: giving a directory to another user needs root ***");
            return;
        }
        let dir = scratch("foreign");
        let theirs = dir.join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let err = bind_unix_listener_private(&theirs.join("vm.sock")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("belongs to another user"), "{err}");
        assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_are_regular_new_ones_private_and_links_and_fifos_refused() {
        let dir = scratch("files");
        let new = dir.join("new.png");
        std::io::Write::write_all(&mut create_regular_file(&new).unwrap(), b"old data").unwrap();
        assert_eq!(mode(&new), PRIVATE_MODE);
        create_regular_file(&new).unwrap();
        assert_eq!(std::fs::read(&new).unwrap(), b"", "truncated");

        let target = dir.join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = create_regular_file(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");

        let fifo = dir.join("fifo");
        let fifo_c = c_path(&fifo).unwrap();
        // SAFETY: a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o600) }, 0);
        let err = create_regular_file(&fifo).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        // With a reader present the open succeeds, and the type check refuses it.
        let _reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let err = create_regular_file(&fifo).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let err = create_regular_file(&dir).unwrap_err();
        assert!(!err.to_string().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
